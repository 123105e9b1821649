package attn

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestScans checks the fast scans against plain loops, on odd widths, with
// negative values, an Inf and (for MaxAbsRows) a NaN.
func TestScans(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, e := range []int{1, 3, 16, 17, 128} {
		rows := 1 + r.IntN(50)
		x := make([]float64, rows*e)
		for i := range x {
			x[i] = r.NormFloat64() * math.Pow(10, float64(r.IntN(6)-3))
		}
		x[r.IntN(len(x))] = math.Inf(-1)
		want := make([]float64, e)
		wlo, whi := make([]float64, e), make([]float64, e)
		for c := range e {
			wlo[c], whi[c] = math.Inf(1), math.Inf(-1)
		}
		for l := range rows {
			for c := range e {
				v := x[l*e+c]
				want[c] = max(want[c], math.Abs(v))
				wlo[c], whi[c] = min(wlo[c], v), max(whi[c], v)
			}
		}
		x32 := make([]float32, len(x))
		for i, v := range x {
			x32[i] = float32(v)
		}
		got, got32 := make([]float64, e), make([]float64, e)
		MaxAbsRows(x, got)
		MaxAbsRows(x32, got32)
		lo, hi := slicesOf(e, math.Inf(1)), slicesOf(e, math.Inf(-1))
		lo32, hi32 := slicesOf(e, math.Inf(1)), slicesOf(e, math.Inf(-1))
		RowRange(x, lo, hi)
		RowRange(x32, lo32, hi32)
		for c := range e {
			if got[c] != want[c] || got32[c] != float64(float32(want[c])) {
				t.Fatalf("e=%d column %d: max |x| %g (float32 %g), want %g", e, c, got[c], got32[c], want[c])
			}
			if lo[c] != wlo[c] || hi[c] != whi[c] || lo32[c] != float64(float32(wlo[c])) || hi32[c] != float64(float32(whi[c])) {
				t.Fatalf("e=%d column %d: range [%g, %g] (float32 [%g, %g]), want [%g, %g]", e, c, lo[c], hi[c], lo32[c], hi32[c], wlo[c], whi[c])
			}
		}
		x[r.IntN(len(x))] = math.NaN()
		clear(got)
		MaxAbsRows(x, got)
		nan := false
		for _, v := range got {
			nan = nan || math.IsNaN(v)
		}
		if !nan {
			t.Fatalf("e=%d: a NaN value left no NaN column maximum: %v", e, got)
		}
	}
}

func slicesOf(n int, v float64) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = v
	}
	return s
}
