package hardness

import (
	"fmt"
	"math"
	"math/bits"
)

// Vectors is a set of N vectors of dimension Dim, one per row of Data
// (row-major, N*Dim entries). Binary vectors hold 0 and 1.
type Vectors struct {
	N, Dim int
	Data   []float64
}

// NewVectors wraps data as n vectors of dimension dim, checking the sizes
// and that every entry is finite.
func NewVectors(data []float64, n, dim int) (Vectors, error) {
	if n < 1 || dim < 1 {
		return Vectors{}, fmt.Errorf("hardness: need at least one vector of dimension >= 1, got %d x %d", n, dim)
	}
	if len(data) != n*dim {
		return Vectors{}, fmt.Errorf("hardness: %d values for %d vectors of dimension %d", len(data), n, dim)
	}
	for i, x := range data {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return Vectors{}, fmt.Errorf("hardness: vector %d has a non-finite entry %v", i/dim, x)
		}
	}
	return Vectors{N: n, Dim: dim, Data: data}, nil
}

// Row returns vector i (not a copy).
func (v Vectors) Row(i int) []float64 { return v.Data[i*v.Dim : (i+1)*v.Dim] }

// CheckBinary returns an error naming the first entry that is neither 0 nor 1.
func (v Vectors) CheckBinary() error {
	for i, x := range v.Data {
		if x != 0 && x != 1 {
			return fmt.Errorf("hardness: vector %d, coordinate %d is %v; binary vectors hold 0 and 1 only", i/v.Dim, i%v.Dim, x)
		}
	}
	return nil
}

// Dot returns the inner product of x and y.
func Dot(x, y []float64) float64 {
	var s float64
	for i, a := range x {
		s += a * y[i]
	}
	return s
}

// packed holds binary vectors as bit sets, 64 coordinates per word, for
// brute-force Hamming distances and inner products by popcount.
type packed struct {
	words int
	bits  []uint64
}

func pack(v Vectors) packed {
	w := (v.Dim + 63) / 64
	p := packed{words: w, bits: make([]uint64, v.N*w)}
	for i := range v.N {
		row := v.Row(i)
		for c, x := range row {
			if x != 0 {
				p.bits[i*w+c/64] |= 1 << (c % 64)
			}
		}
	}
	return p
}

func (p packed) row(i int) []uint64 { return p.bits[i*p.words : (i+1)*p.words] }

func hamming(x, y []uint64) int {
	h := 0
	for i, a := range x {
		h += bits.OnesCount64(a ^ y[i])
	}
	return h
}

func andCount(x, y []uint64) int {
	h := 0
	for i, a := range x {
		h += bits.OnesCount64(a & y[i])
	}
	return h
}

// Hamming returns the number of coordinates where the binary vectors x and
// y differ.
func Hamming(x, y []float64) int {
	h := 0
	for i, a := range x {
		if a != y[i] {
			h++
		}
	}
	return h
}
