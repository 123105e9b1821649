//go:build linux

package kernels

import (
	"math"
	"testing"
)

// TestExp2Guarded runs Exp2ShiftSum32 at every level on rows of every
// length up to 40 that end right before an unmapped page: a read or write
// past the end faults.
func TestExp2Guarded(t *testing.T) {
	defer releaseGuarded()
	for _, l := range levels() {
		for n := 1; n <= 40; n++ {
			src := make([]float32, n)
			for i := range src {
				src[i] = -float32(i) / 3
			}
			x := guarded(src)
			var sum float32
			atLevel(t, l, func() { sum = Exp2ShiftSum32(x, 1, 0) })
			var want float64
			for i, v := range src {
				e := math.Exp2(float64(v))
				want += e
				if ulp32(x[i], float32(e)) > 2 {
					t.Fatalf("%s n=%d: 2^%g = %g", levelName(l), n, v, x[i])
				}
			}
			if math.Abs(float64(sum)-want) > 1e-6*want {
				t.Fatalf("%s n=%d: sum %g, want %g", levelName(l), n, sum, want)
			}
		}
	}
}

// TestRowsGuarded runs MaxRows32 and Exp2Rows32 at every level on blocks
// whose last row ends right before an unmapped page.
func TestRowsGuarded(t *testing.T) {
	defer releaseGuarded()
	for _, l := range levels() {
		for _, cols := range []int{16, 48, 64, 80, 512} {
			const rows, pad = 3, 8
			ld := cols + pad
			src := make([]float32, (rows-1)*ld+cols)
			for i := range src {
				src[i] = -float32(i%50) / 7
			}
			s := guarded(src)
			out := make([]float32, rows)
			sums := make([]float32, rows)
			atLevel(t, l, func() {
				if !MaxRows32(s, ld, rows, cols, out) {
					t.Fatalf("%s: finite rows reported non-finite", levelName(l))
				}
				Exp2Rows32(s, ld, rows, cols, 1, out, sums)
			})
			for i := range rows {
				if !(sums[i] >= 1) {
					t.Fatalf("%s cols=%d row %d: sum %g, want at least 1", levelName(l), cols, i, sums[i])
				}
			}
		}
	}
}
