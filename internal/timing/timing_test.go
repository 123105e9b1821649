package timing

import (
	"testing"
	"time"
)

// TestBest checks the warm-up run, the count of timed runs and that the
// least time is returned.
func TestBest(t *testing.T) {
	calls := 0
	sleeps := []time.Duration{0, 3 * time.Millisecond, time.Millisecond, 5 * time.Millisecond}
	got := Best(3, func() {
		time.Sleep(sleeps[calls])
		calls++
	})
	if calls != 4 {
		t.Fatalf("%d calls, want 4 (one warm-up, three timed)", calls)
	}
	if got < 0.001 || got >= 0.003 {
		t.Errorf("best %g s, want the 1 ms run's time", got)
	}
}
