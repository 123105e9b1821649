package timing

import "golang.org/x/sys/unix"

// threadCPU returns the calling thread's CPU time in seconds, and whether
// the system reports it.
func threadCPU() (float64, bool) {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0, false
	}
	return float64(ts.Nano()) / 1e9, true
}
