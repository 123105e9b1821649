//go:build !linux

package timing

// threadCPU reports that the thread's CPU time is not available here.
func threadCPU() (float64, bool) { return 0, false }
