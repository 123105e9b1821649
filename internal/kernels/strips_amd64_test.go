//go:build amd64 && gc && !purego

package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestStripsSameResult checks that the GEMM driver gives the same products,
// bit for bit, with gemmStripsF32AVX512 as with one microkernel call per
// strip, for packed and unpacked Q K^T shapes and P V (stored or added,
// B in place with 64 columns or a stride of 130), with
// and without a prefetch region, on rows that leave a partial strip.
func TestStripsSameResult(t *testing.T) {
	if maxLevel < levelAVX512 {
		t.Skip("no AVX-512")
	}
	defer func() { useStrips = true }()
	r := rand.New(rand.NewPCG(41, 42))
	fill := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		return x
	}
	for _, sh := range [][3]int{{288, 512, 64}, {50, 130, 128}, {7, 64, 33}, {100, 256, 300}} {
		m, n, k := sh[0], sh[1], sh[2]
		a, b, next := fill(m*k), fill(n*k), fill(999)
		var pk PackedNT[float32]
		pk.Reset(n, k, b, k)
		pk.Pack(0, n)
		bn := fill(k * 130)
		var got [2][4][]float32
		for v, on := range []bool{false, true} {
			useStrips = on
			got[v][0] = make([]float32, m*n)
			pk.GemmNTNext(m, 0, n, a, k, got[v][0], n, next)
			got[v][1] = make([]float32, m*n)
			GemmNT32(m, n, k, a, k, b, k, got[v][1], n)
			got[v][2] = make([]float32, m*64)
			GemmNNSet32(m, 64, k, a, k, bn, 64, got[v][2], 64, next)
			got[v][3] = make([]float32, m*130)
			GemmNNNext32(m, 128, k, a, k, bn, 130, got[v][3], 130, next) // B in place, two panels, stride 130
		}
		for p := range 4 {
			for i := range got[0][p] {
				if math.Float32bits(got[0][p][i]) != math.Float32bits(got[1][p][i]) {
					t.Fatalf("m=%d n=%d k=%d product %d: entry %d is %g per strip, %g in strips", m, n, k, p, i, got[0][p][i], got[1][p][i])
				}
			}
		}
	}
}
