package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestMultiDot64Levels checks MultiDot64 at every dispatch level against
// plain dot products for lengths around the vector width and column
// counts around the eight-column block, with NaN between and after the
// rows of B (a term past a row would poison a result) and canaries past c.
func TestMultiDot64Levels(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, l := range levels() {
		atLevel(t, l, func() {
			for k := 1; k <= 37; k++ {
				for n := 1; n <= 19; n++ {
					ldb := k + r.IntN(3)
					a := make([]float64, k)
					for i := range a {
						a[i] = r.NormFloat64()
					}
					b := make([]float64, (n-1)*ldb+k+5)
					for i := range b {
						b[i] = math.NaN()
					}
					for j := range n {
						for i := range k {
							b[j*ldb+i] = r.NormFloat64()
						}
					}
					c := make([]float64, n+2)
					c[n], c[n+1] = 42, 43
					MultiDot64(c[:n], a, b, ldb)
					for j := range n {
						var want, mag float64
						for i := range k {
							want += a[i] * b[j*ldb+i]
							mag += math.Abs(a[i] * b[j*ldb+i])
						}
						if !(math.Abs(c[j]-want) <= 4*float64(k)*0x1p-53*mag) {
							t.Fatalf("level %s, k %d, n %d, ldb %d: c[%d] = %g, want %g", levelName(l), k, n, ldb, j, c[j], want)
						}
					}
					if c[n] != 42 || c[n+1] != 43 {
						t.Fatalf("level %s, k %d, n %d: canaries %g %g", levelName(l), k, n, c[n], c[n+1])
					}
				}
			}
		})
	}
}
