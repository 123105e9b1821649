// Package polltest times calls that hand work to the parallel pool's
// helpers, with the helpers polling for different lengths of time between
// calls (parallel.SetPoll): the benchmarks of internal/parallel, exact and
// the root package share it.
package polltest

import (
	"slices"
	"testing"
	"time"

	"github.com/fastattn/fastattn/internal/parallel"
)

// Medians runs call in runs of calls calls, one run per poll setting in
// turn, for every iteration of b.Loop, each call after spinning for gap on
// the calling goroutine (a model's own work between two calls, say), and
// returns the median time of each setting's calls, leaving out the first
// untimed of every run. Settings take turns run by run, not call by call:
// a call that wakes a sleeping helper leaves it queued on the caller's
// thread, where short calls that follow keep finding it (see
// parallel.Poll), so alternating call by call would time one setting's
// calls in the state the other leaves. The poll in force before is set
// again on return.
func Medians(b *testing.B, polls []time.Duration, gap time.Duration, calls, untimed int, call func()) []float64 {
	defer parallel.SetPoll(parallel.Poll())
	times := make([][]float64, len(polls))
	for b.Loop() {
		for i, d := range polls {
			parallel.SetPoll(d)
			for c := range calls {
				for t := time.Now(); time.Since(t) < gap; {
				}
				start := time.Now()
				call()
				if c >= untimed {
					times[i] = append(times[i], time.Since(start).Seconds())
				}
			}
		}
	}
	medians := make([]float64, len(polls))
	for i, x := range times {
		slices.Sort(x)
		medians[i] = x[len(x)/2]
	}
	return medians
}
