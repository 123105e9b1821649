//go:build !linux && amd64 && gc && !purego

package kernels

// l1DataBytes: the size is read from Linux's sysfs only; elsewhere it is
// unknown (0), and the kernels assume the smaller L1 of the two they tell
// apart.
func l1DataBytes() int { return 0 }
