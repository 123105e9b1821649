//go:build unix

package exact

import "syscall"

// cpu returns the process's CPU time (user + system, all threads) in
// seconds.
func cpu() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
