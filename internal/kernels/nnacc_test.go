package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestGemmNNAccumulate32 checks GemmNNAccumulate32 bit for bit against
// its definition, GemmNNSet32 into the scratch tile then Accumulate32 on
// each row, at every level: whole 6-row strips and whole 64-column panels
// (added in the AVX-512 microkernel), partial ones (stored, then added),
// an inner dimension over the GEMM's k block (two passes, the first
// through scratch), padded strides, and rescalings of 1, 0 and others.
func TestGemmNNAccumulate32(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	fill := func(n int) []float32 { return normals[float32](r, n) }
	shapes := [][3]int{{288, 64, 512}, {288, 128, 256}, {48, 64, 256}, {50, 130, 77}, {7, 70, 300}, {1, 64, 1}, {13, 200, 600}}
	for _, l := range levels() {
		for _, sh := range shapes {
			m, n, k := sh[0], sh[1], sh[2]
			lda, ldb, ldc, ldd := k+3, n+5, n+2, n+7
			a, b, next := fill((m-1)*lda+k), fill((k-1)*ldb+n), fill(500)
			alphas := make([]float64, m)
			for i := range alphas {
				switch i % 4 {
				case 0, 1:
					alphas[i] = 1
				case 2:
					alphas[i] = 0
				default:
					alphas[i] = math.Exp(-3 * r.Float64())
				}
			}
			dst0 := make([]float64, (m-1)*ldd+n)
			for i := range dst0 {
				dst0[i] = r.NormFloat64()
			}
			want, got := append([]float64(nil), dst0...), append([]float64(nil), dst0...)
			atLevel(t, l, func() {
				gemmNNAccumulate32Split(m, n, k, a, lda, b, ldb, fill((m-1)*ldc+n), ldc, want, ldd, alphas, next)
				GemmNNAccumulate32(m, n, k, a, lda, b, ldb, fill((m-1)*ldc+n), ldc, got, ldd, alphas, next)
			})
			for i := range want {
				if math.Float64bits(want[i]) != math.Float64bits(got[i]) {
					t.Fatalf("%s m=%d n=%d k=%d: dst[%d] = %v, want %v", levelName(l), m, n, k, i, got[i], want[i])
				}
			}
			// The padding between rows is left alone.
			for i := range m - 1 {
				for j := n; j < ldd; j++ {
					if x := i*ldd + j; got[x] != dst0[x] {
						t.Fatalf("%s m=%d n=%d k=%d: padding dst[%d] changed", levelName(l), m, n, k, x)
					}
				}
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("GemmNNAccumulate32 with too few alphas did not panic")
		}
	}()
	GemmNNAccumulate32(2, 4, 1, make([]float32, 2), 1, make([]float32, 4), 4, make([]float32, 8), 4, make([]float64, 8), 4, []float64{1}, nil)
}
