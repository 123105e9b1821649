package timing

import (
	"testing"
	"time"
)

// TestBest checks the warm-up run, the count of timed runs and that the
// least time is returned.
func TestBest(t *testing.T) {
	calls := 0
	// Sleeps far apart, so that a loaded machine (tests of several
	// packages at once) does not stretch the shortest past the next: with
	// 1, 3 and 5 ms, a 1 ms sleep once measured 3.2 ms.
	sleeps := []time.Duration{0, 30 * time.Millisecond, 10 * time.Millisecond, 50 * time.Millisecond}
	got := Best(3, func() {
		time.Sleep(sleeps[calls])
		calls++
	})
	if calls != 4 {
		t.Fatalf("%d calls, want 4 (one warm-up, three timed)", calls)
	}
	if got < 0.010 || got >= 0.030 {
		t.Errorf("best %g s, want the 10 ms run's time", got)
	}
}

// TestBestOnThread checks that a busy loop's time is measured (close to its
// wall time when the machine is not overloaded: within a factor of 20 of
// it either way) and that sleeping, which takes no CPU, counts as much
// less than its wall time where thread CPU time is available.
func TestBestOnThread(t *testing.T) {
	spin := func() {
		end := time.Now().Add(2 * time.Millisecond)
		for time.Now().Before(end) {
		}
	}
	got := BestOnThread(3, spin)
	if got <= 0 || got > 0.04 {
		t.Errorf("2 ms busy loop: %g s", got)
	}
	if _, ok := threadCPU(); !ok {
		t.Skip("no thread CPU time on this system: BestOnThread is Best")
	}
	if s := BestOnThread(2, func() { time.Sleep(20 * time.Millisecond) }); s > 0.01 {
		t.Errorf("20 ms sleep counted %g s of thread CPU time", s)
	}
}
