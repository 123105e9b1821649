//go:build !amd64 || !gc || purego

package kernels

func multiDot64(c, a, b []float64, ldb int) { multiDot64Go(c, a, b, ldb) }
