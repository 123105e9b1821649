package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestColumnScansLevels checks the column scans at every dispatch level
// against plain loops: widths around the vector and register blocks,
// row counts around the row block, negative values, Inf and NaN.
func TestColumnScansLevels(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, l := range levels() {
		for _, d := range []int{1, 15, 16, 17, 32, 48, 64, 100, 128, 130, 144, 300} {
			for _, rows := range []int{1, 2, 255, 256, 257, 600} {
				x := make([]float32, rows*d)
				for i := range x {
					x[i] = float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(8)-4)))
				}
				x[r.IntN(len(x))] = float32(math.Inf(1 - 2*r.IntN(2)))
				nan := r.IntN(len(x))
				x[nan] = float32(math.NaN())
				lo, hi, m := make([]float32, d), make([]float32, d), make([]uint32, d)
				wlo, whi, wm := make([]float32, d), make([]float32, d), make([]uint32, d)
				for c := range d {
					lo[c], hi[c] = float32(math.Inf(1)), float32(math.Inf(-1))
					wlo[c], whi[c] = lo[c], hi[c]
				}
				for i, v := range x {
					c := i % d
					if b := math.Float32bits(v) &^ (1 << 31); b > wm[c] {
						wm[c] = b
					}
					if v < wlo[c] {
						wlo[c] = v
					}
					if v > whi[c] {
						whi[c] = v
					}
				}
				atLevel(t, l, func() {
					ColumnRange32(x, d, lo, hi)
					ColumnMaxAbsBits32(x, d, m)
				})
				for c := range d {
					if lo[c] != wlo[c] || hi[c] != whi[c] || m[c] != wm[c] {
						t.Fatalf("%s d=%d rows=%d column %d: range [%g, %g] max bits %#x, want [%g, %g] %#x",
							levelName(l), d, rows, c, lo[c], hi[c], m[c], wlo[c], whi[c], wm[c])
					}
				}
			}
		}
	}
}

// BenchmarkColumnScans times the scans at every level on 4096 rows of 128
// float32 columns (2 MiB, a decoding step's chunk of keys).
func BenchmarkColumnScans(b *testing.B) {
	const rows, d = 4096, 128
	x := make([]float32, rows*d)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	lo, hi, m := make([]float32, d), make([]float32, d), make([]uint32, d)
	for _, l := range levels() {
		b.Run("range/"+levelName(l), func(b *testing.B) {
			b.SetBytes(int64(4 * len(x)))
			atLevel(b, l, func() {
				for b.Loop() {
					ColumnRange32(x, d, lo, hi)
				}
			})
		})
		b.Run("maxabs/"+levelName(l), func(b *testing.B) {
			b.SetBytes(int64(4 * len(x)))
			atLevel(b, l, func() {
				for b.Loop() {
					ColumnMaxAbsBits32(x, d, m)
				}
			})
		})
	}
}
