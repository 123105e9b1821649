//go:build !amd64 || !gc || purego

package kernels

// withTNModes runs f once: the portable TN product has one mode.
func withTNModes(f func(mode string)) { f("portable") }
