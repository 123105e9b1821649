// Package timing holds the timing rules the planners' start-up
// calibrations share.
package timing

import (
	"math"
	"runtime"
	"time"
)

// Best returns the least wall time in seconds of reps runs of f, after one
// untimed run that warms the caches and faults the pages in: on a shared
// machine the fastest run is the one least disturbed. Use it for f that
// spreads its work over several goroutines.
func Best(reps int, f func()) float64 {
	f()
	t := math.Inf(1)
	for range reps {
		start := time.Now()
		f()
		t = min(t, time.Since(start).Seconds())
	}
	return t
}

// BestOnThread is Best for f that runs on the calling goroutine alone: it
// times the runs in the thread's CPU time where the system reports it
// (Linux), so that other jobs taking the core away do not count. A
// calibration run while other processes keep the cores busy (tests of
// several packages at once) then measures the code, not the contention;
// the least wall time of a few runs can be several times the idle time
// there. Elsewhere it is Best.
func BestOnThread(reps int, f func()) float64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if _, ok := threadCPU(); !ok {
		return Best(reps, f)
	}
	f()
	t := math.Inf(1)
	for range reps {
		c0, _ := threadCPU()
		f()
		c1, _ := threadCPU()
		t = min(t, c1-c0)
	}
	return t
}
