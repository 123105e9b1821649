//go:build !amd64 || !gc || purego

package kernels

func mul64(dst, a, b []float64) { mul64Go(dst, a, b) }

func mulSum64(dst, a, b []float64) float64 { return mulSum64Go(dst, a, b) }
