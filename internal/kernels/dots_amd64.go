//go:build amd64 && gc && !purego

package kernels

func multiDot64(c, a, b []float64, ldb int) {
	if level < levelAVX512 {
		multiDot64Go(c, a, b, ldb)
		return
	}
	dotsF64AVX512(&c[0], &a[0], &b[0], ldb, len(a), len(c))
}
