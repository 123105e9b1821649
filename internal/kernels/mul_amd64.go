//go:build amd64 && gc && !purego

package kernels

func mul64(dst, a, b []float64) {
	if level < levelAVX512 || len(dst) == 0 {
		mul64Go(dst, a, b)
		return
	}
	mulF64AVX512(&dst[0], &a[0], &b[0], len(dst))
}

func mulSum64(dst, a, b []float64) float64 {
	if level < levelAVX512 || len(dst) == 0 {
		return mulSum64Go(dst, a, b)
	}
	return mulSumF64AVX512(&dst[0], &a[0], &b[0], len(dst))
}
