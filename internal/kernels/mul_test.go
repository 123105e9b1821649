package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestMul64Levels checks Mul64 and MulSum64 at every dispatch level on lengths around
// the vector and unrolled-step widths, with canaries past the end, and in
// place.
func TestMul64Levels(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, l := range levels() {
		atLevel(t, l, func() {
			for n := 0; n <= 70; n++ {
				a, b := make([]float64, n+3), make([]float64, n+3)
				for i := range a {
					a[i], b[i] = r.NormFloat64(), r.NormFloat64()
				}
				dst := make([]float64, n+3)
				for i := range dst {
					dst[i] = 42
				}
				Mul64(dst[:n], a[:n], b[:n])
				for i := range dst {
					want := a[i] * b[i]
					if i >= n {
						want = 42
					}
					if dst[i] != want {
						t.Fatalf("level %s, n %d: dst[%d] = %g, want %g", levelName(l), n, i, dst[i], want)
					}
				}
				want := 0.0
				for i := range n {
					want += a[i] * b[i]
				}
				dst2 := make([]float64, n+1)
				dst2[n] = 42
				got := MulSum64(dst2[:n], a[:n], b[:n])
				if math.Abs(got-want) > 1e-13*float64(n+1)*8 || dst2[n] != 42 {
					t.Fatalf("level %s, n %d: MulSum64 = %g, want %g (canary %g)", levelName(l), n, got, want, dst2[n])
				}
				for i := range n {
					if dst2[i] != dst[i] {
						t.Fatalf("level %s, n %d: MulSum64 dst[%d] = %g, want %g", levelName(l), n, i, dst2[i], dst[i])
					}
				}
				Mul64(a[:n], a[:n], b[:n])
				for i := range n {
					if a[i] != dst[i] {
						t.Fatalf("level %s, n %d, in place: a[%d] = %g, want %g", levelName(l), n, i, a[i], dst[i])
					}
				}
			}
		})
	}
}
