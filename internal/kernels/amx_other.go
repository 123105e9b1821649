//go:build !linux && amd64 && gc && !purego

package kernels

// amxPermit: the AMX path is only enabled on Linux, where the process asks
// the kernel for the tile state; elsewhere the portable path runs.
func amxPermit() bool { return false }
