package exact

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestMaxWeightedAbs checks the parallel logit bound's sum against one
// loop over the rows, bit for bit, with row counts on and off the task
// size, and that a NaN anywhere comes out.
func TestMaxWeightedAbs(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, d := range []int{1, 3, 64} {
		w := make([]float64, d)
		for i := range w {
			w[i] = r.Float64() * 4
		}
		for _, n := range []int{0, 1, 5, weightedAbsRows, 3*weightedAbsRows + 17} {
			q := make([]float32, n*d)
			for i := range q {
				q[i] = float32(r.NormFloat64() * 3)
			}
			var want float64
			for i := range n {
				var s float64
				for c, x := range q[i*d : (i+1)*d] {
					s += math.Abs(float64(x)) * w[c]
				}
				want = max(want, s)
			}
			for _, workers := range []int{1, 2, 5} {
				if got := maxWeightedAbs(q, d, w, workers); got != want {
					t.Errorf("d = %d, n = %d, %d workers: %v, want %v", d, n, workers, got, want)
				}
			}
			if n == 0 {
				continue
			}
			q[len(q)-1] = float32(math.NaN())
			if got := maxWeightedAbs(q, d, w, 2); !math.IsNaN(got) {
				t.Errorf("d = %d, n = %d with a NaN in the last row: %v, want NaN", d, n, got)
			}
		}
	}
	if got := maxWeightedAbs([]float32(nil), 0, nil, 2); got != 0 {
		t.Errorf("d = 0: %v, want 0", got)
	}
}
