package kernels

import (
	"math"
	"testing"
)

// TestFiniteLevels puts one NaN, +Inf or -Inf at every position of slices
// of every length up to 70 (and finite extremes elsewhere) on every level.
func TestFiniteLevels(t *testing.T) {
	for _, l := range levels() {
		atLevel(t, l, func() {
			for n := 0; n <= 70; n++ {
				x := make([]float64, n)
				for i := range x {
					x[i] = []float64{math.MaxFloat32, -math.MaxFloat32, 0x1p-140, -1.5, 0}[i%5]
				}
				x32 := to32(x)
				if !Finite32(x32) || !Finite64(x) {
					t.Fatalf("%s: n = %d: finite values reported non-finite", levelName(l), n)
				}
				checkMaxFinite(t, levelName(l), x)
				for i := range n {
					for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
						y := append([]float64(nil), x...)
						y[i] = bad
						if Finite32(to32(y)) || Finite64(y) {
							t.Fatalf("%s: n = %d: %g at %d not found", levelName(l), n, bad, i)
						}
						checkMaxFinite(t, levelName(l), y)
					}
				}
			}
			big := []float64{math.MaxFloat64, -math.MaxFloat64, 1, 2}
			if !Finite64(big) {
				t.Fatalf("%s: largest float64 reported non-finite", levelName(l))
			}
		})
	}
}

// TestMaxEveryPosition puts the largest element, then a NaN, at every
// position of slices up to 70 long on every level, covering how the
// AVX-512 body and the overlapping tail divide a row.
func TestMaxEveryPosition(t *testing.T) {
	for _, l := range levels() {
		atLevel(t, l, func() {
			for n := 1; n <= 70; n++ {
				for i := range n {
					x := make([]float32, n)
					for j := range x {
						x[j] = -float32(j%7) - 1
					}
					x[i] = 3
					x64 := make([]float64, n)
					for j, v := range x {
						x64[j] = float64(v)
					}
					if got := Max32(x); got != 3 {
						t.Fatalf("%s: n = %d, largest at %d: Max32 = %g", levelName(l), n, i, got)
					}
					if got := Max64(x64); got != 3 {
						t.Fatalf("%s: n = %d, largest at %d: Max64 = %g", levelName(l), n, i, got)
					}
					x[i] = float32(math.NaN())
					x64[i] = math.NaN()
					if got := Max32(x); got == got {
						t.Fatalf("%s: n = %d, NaN at %d: Max32 = %g", levelName(l), n, i, got)
					}
					if got := Max64(x64); got == got {
						t.Fatalf("%s: n = %d, NaN at %d: Max64 = %g", levelName(l), n, i, got)
					}
				}
			}
		})
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// checkMaxFinite requires MaxFinite to agree with Max and Finite.
func checkMaxFinite(t *testing.T, level string, x []float64) {
	t.Helper()
	same := func(a, b float64) bool { return a == b && math.Signbit(a) == math.Signbit(b) || a != a && b != b }
	x32 := to32(x)
	if m, f := MaxFinite32(x32); !same(float64(m), float64(Max32(x32))) || f != Finite32(x32) {
		t.Fatalf("%s: MaxFinite32(%v) = %g, %v; Max32 %g, Finite32 %v", level, x32, m, f, Max32(x32), Finite32(x32))
	}
	if m, f := MaxFinite64(x); !same(m, Max64(x)) || f != Finite64(x) {
		t.Fatalf("%s: MaxFinite64(%v) = %g, %v; Max64 %g, Finite64 %v", level, x, m, f, Max64(x), Finite64(x))
	}
}
