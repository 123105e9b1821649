package exact

import "golang.org/x/sys/unix"

// threadCPU returns the calling thread's CPU time in seconds (lock the
// goroutine to its thread first), and whether it is available. On a
// machine shared with other jobs it counts only this thread's time.
func threadCPU() (float64, bool) {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts) != nil {
		return 0, false
	}
	return float64(ts.Nano()) / 1e9, true
}
