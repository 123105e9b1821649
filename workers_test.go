package fastattn

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestSetWorkerPoll checks that SetWorkerPoll returns the previous
// setting, takes a negative duration as 0, and changes no result: a
// decoding step with workers that sleep at once and with workers that
// poll for 20 ms gives the same bits.
func TestSetWorkerPoll(t *testing.T) {
	def := SetWorkerPoll(5 * time.Millisecond)
	defer SetWorkerPoll(def)
	if def != 100*time.Microsecond {
		t.Errorf("default poll %v, want 100us", def)
	}
	if prev := SetWorkerPoll(-time.Second); prev != 5*time.Millisecond {
		t.Errorf("SetWorkerPoll returned %v, want the 5ms set before", prev)
	}
	if prev := SetWorkerPoll(20 * time.Millisecond); prev != 0 {
		t.Errorf("a negative poll was kept as %v, want 0", prev)
	}
	r := rand.New(rand.NewPCG(5, 6))
	tensor := func(heads, rows, d int) Tensor[float32] {
		x := make([]float32, heads*rows*d)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		t, _ := NewTensor(x, 1, heads, rows, d)
		return t
	}
	q, k, v := tensor(8, 1, 64), tensor(2, 5000, 64), tensor(2, 5000, 64)
	var outs [2][]float32
	for i, poll := range []time.Duration{20 * time.Millisecond, 0} {
		SetWorkerPoll(poll)
		out := tensor(8, 1, 64)
		for range 3 {
			if err := AttendInto(context.Background(), NewWorkspace(), out, nil, q, k, v, Options{}); err != nil {
				t.Fatal(err)
			}
		}
		outs[i] = out.Data
	}
	if !slices.Equal(outs[0], outs[1]) {
		t.Error("the output depends on the poll")
	}
}
