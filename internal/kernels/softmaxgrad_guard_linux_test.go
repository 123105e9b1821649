//go:build linux

package kernels

import "testing"

// TestSoftmaxGradRowsGuarded runs SoftmaxGradRows32 at every level on
// blocks whose last row of s and of ds ends right before an unmapped page
// (a read or write past the end faults), with every width up to 40, and
// compares with the same block in ordinary memory.
func TestSoftmaxGradRowsGuarded(t *testing.T) {
	defer releaseGuarded()
	for _, l := range levels() {
		for cols := 1; cols <= 40; cols++ {
			const rows = 3
			ld := cols + 3
			n := (rows-1)*ld + cols
			src, dsrc := make([]float32, n), make([]float32, n)
			for i := range src {
				src[i], dsrc[i] = float32(i%11)-5, float32(i%5)
			}
			lse, delta := []float64{6, 7, 2e6}, []float64{0.5, -1, 2}
			s, ds := guarded(src), guarded(dsrc)
			ws, wds := append([]float32(nil), src...), append([]float32(nil), dsrc...)
			atLevel(t, l, func() {
				SoftmaxGradRows32(s, ds, ld, rows, cols, 0.3, lse, delta)
				SoftmaxGradRows32(ws, wds, ld, rows, cols, 0.3, lse, delta)
			})
			for i := range n {
				if !sameBits32(s[i], ws[i]) || !sameBits32(ds[i], wds[i]) {
					t.Fatalf("%s cols=%d: entry %d is (%g, %g), want (%g, %g)", levelName(l), cols, i, s[i], ds[i], ws[i], wds[i])
				}
			}
		}
	}
}
