//go:build !linux

package exact

// threadCPU is not available here.
func threadCPU() (float64, bool) { return 0, false }
