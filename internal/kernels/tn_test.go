package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestGemmTNLevels checks C += A^T B at every dispatch level against a
// float64 reference on the GEMM shapes (A k x m), with padded strides,
// operands that end at an unmapped page and entries outside C untouched.
func TestGemmTNLevels(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	shapes := append(gemmShapes(), [3]int{256, 64, 96}, [3]int{256, 128, 96}, [3]int{128, 128, 48}, [3]int{250, 70, 300}, [3]int{70, 130, 700})
	defer releaseGuarded()
	for _, sz := range shapes {
		m, n, k := sz[0], sz[1], sz[2]
		for _, pad := range [][3]int{{0, 0, 0}, {3, 1, 2}, {37, 129, 64}} {
			lda, ldb, ldc := m+pad[0], n+pad[1], n+pad[2]
			a := randSlice(r, (k-1)*lda+m)
			b := randSlice(r, (k-1)*ldb+n)
			c0 := randSlice(r, (m-1)*ldc+n)
			want := append([]float64(nil), c0...)
			for i := range m {
				for j := range n {
					var s float64
					for p := range k {
						s += a[p*lda+i] * b[p*ldb+j]
					}
					want[i*ldc+j] += s
				}
			}
			for _, l := range levels() {
				withTNModes(func(mode string) {
					name := fmt.Sprintf("TN %s (%s) %v ld=%d,%d,%d", levelName(l), mode, sz, lda, ldb, ldc)
					atLevel(t, l, func() {
						got, got32 := guarded(c0), guarded(to32(c0))
						GemmTN64(m, n, k, guarded(a), lda, guarded(b), ldb, got, ldc)
						GemmTN32(m, n, k, guarded(to32(a)), lda, guarded(to32(b)), ldb, got32, ldc)
						checkClose2(t, name, c0, want, got, got32, ldc, n, k)
					})
				})
			}
		}
	}
}

// TestGemmTNAsmVsGo compares each assembly level with the portable code on
// the backward pass's tile shapes (dK += dS^T Q: 256 keys, d columns, 96
// query rows), where both must agree to rounding.
func TestGemmTNAsmVsGo(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, d := range []int{64, 128} {
		m, k, lda := 256, 96, 272
		a, b := randSlice(r, k*lda), randSlice(r, k*d)
		a32, b32 := to32(a), to32(b)
		ref, ref64 := make([]float32, m*d), make([]float64, m*d)
		atLevel(t, levelGo, func() {
			GemmTN32(m, d, k, a32, lda, b32, d, ref, d)
			GemmTN64(m, d, k, a, lda, b, d, ref64, d)
		})
		for _, l := range levels()[1:] {
			withTNModes(func(mode string) {
				got, got64 := make([]float32, m*d), make([]float64, m*d)
				atLevel(t, l, func() {
					GemmTN32(m, d, k, a32, lda, b32, d, got, d)
					GemmTN64(m, d, k, a, lda, b, d, got64, d)
				})
				for i := range got {
					if math.Abs(float64(got[i]-ref[i])) > 2e-6*float64(k) {
						t.Fatalf("%s (%s) float32 d=%d: %d: %g vs go %g", levelName(l), mode, d, i, got[i], ref[i])
					}
					if math.Abs(got64[i]-ref64[i]) > 1e-14*float64(k) {
						t.Fatalf("%s (%s) float64 d=%d: %d: %g vs go %g", levelName(l), mode, d, i, got64[i], ref64[i])
					}
				}
			})
		}
	}
}
