//go:build unix

package main

import (
	"math"
	"syscall"
	"time"
)

// cpuSeconds is the process's user plus system CPU time: on a shared
// machine, a measure of the work done that does not depend on the load.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return math.NaN()
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
