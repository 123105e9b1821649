// Package timing holds the one timing rule the planners' start-up
// calibrations share.
package timing

import (
	"math"
	"time"
)

// Best returns the least wall time in seconds of reps runs of f, after one
// untimed run that warms the caches and faults the pages in: on a shared
// machine the fastest run is the one least disturbed.
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
