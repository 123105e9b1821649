package kernels

// Mul64 sets dst[i] = a[i] * b[i] for every i; the three slices have the
// same length. dst may be a or b but must not otherwise overlap them.
func Mul64(dst, a, b []float64) {
	if len(a) != len(dst) || len(b) != len(dst) {
		panic("kernels: Mul64: lengths differ")
	}
	mul64(dst, a, b)
}

func mul64Go(dst, a, b []float64) {
	b = b[:len(dst)]
	a = a[:len(dst)]
	for i := range dst {
		dst[i] = a[i] * b[i]
	}
}
