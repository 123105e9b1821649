//go:build amd64 && gc && !purego

package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestStripsSameResult checks that the GEMM driver gives the same products,
// bit for bit, with the strips kernels (gemmStripsF32AVX512,
// gemmStripsF64AVX512) as with one microkernel call per strip, for packed
// and unpacked Q K^T shapes and P V (stored or added, B in place with one
// panel's columns or a stride of 130), with and without a prefetch
// region, on rows that leave a partial strip.
func TestStripsSameResult(t *testing.T) {
	if maxLevel < levelAVX512 {
		t.Skip("no AVX-512")
	}
	defer func() { useStrips = true }()
	t.Run("float32", func(t *testing.T) {
		stripsSameResult(t, GemmNT32, func(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, next []float32) {
			GemmNNSet32(m, n, k, a, lda, b, ldb, c, ldc, next)
		}, GemmNNNext32, 64)
	})
	t.Run("float64", func(t *testing.T) {
		// float64 has no storing P V; a cleared C takes its place.
		stripsSameResult(t, GemmNT64, func(m, n, k int, a []float64, lda int, b []float64, ldb int, c []float64, ldc int, next []float64) {
			clear(c)
			GemmNNNext64(m, n, k, a, lda, b, ldb, c, ldc, next)
		}, GemmNNNext64, 32)
	})
}

type nnFunc[T float32 | float64] func(m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int, next []T)

func stripsSameResult[T float32 | float64](t *testing.T, nt func(m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int), nnSet, nnAdd nnFunc[T], panel int) {
	r := rand.New(rand.NewPCG(41, 42))
	fill := func(n int) []T { return normals[T](r, n) }
	for _, sh := range [][3]int{{288, 512, 64}, {50, 130, 128}, {7, 64, 33}, {100, 256, 300}} {
		m, n, k := sh[0], sh[1], sh[2]
		a, b, next := fill(m*k), fill(n*k), fill(999)
		var pk PackedNT[T]
		pk.Reset(n, k, b, k)
		pk.Pack(0, n)
		bn := fill(k * 130)
		var got [2][4][]T
		for v, on := range []bool{false, true} {
			useStrips = on
			got[v][0] = make([]T, m*n)
			pk.GemmNTNext(m, 0, n, a, k, got[v][0], n, next)
			got[v][1] = make([]T, m*n)
			nt(m, n, k, a, k, b, k, got[v][1], n)
			got[v][2] = make([]T, m*panel)
			nnSet(m, panel, k, a, k, bn, panel, got[v][2], panel, next)
			got[v][3] = make([]T, m*130)
			for i := range got[v][3] {
				got[v][3][i] = T(i % 7) // added to
			}
			nnAdd(m, 128, k, a, k, bn, 130, got[v][3], 130, next) // B in place, several panels, stride 130
		}
		for p := range 4 {
			for i := range got[0][p] {
				// Widened to float64, so that the bits of either type compare (-0 against 0 too).
				if math.Float64bits(float64(got[0][p][i])) != math.Float64bits(float64(got[1][p][i])) {
					t.Fatalf("m=%d n=%d k=%d product %d: entry %d is %g per strip, %g in strips", m, n, k, p, i, got[0][p][i], got[1][p][i])
				}
			}
		}
	}
}
