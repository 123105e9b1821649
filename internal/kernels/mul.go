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

// MulSum64 is Mul64 returning the sum of the products, added in an order
// of the implementation's choosing.
func MulSum64(dst, a, b []float64) float64 {
	if len(a) != len(dst) || len(b) != len(dst) {
		panic("kernels: MulSum64: lengths differ")
	}
	return mulSum64(dst, a, b)
}

func mulSum64Go(dst, a, b []float64) float64 {
	b = b[:len(dst)]
	a = a[:len(dst)]
	var s float64
	for i := range dst {
		dst[i] = a[i] * b[i]
		s += dst[i]
	}
	return s
}
