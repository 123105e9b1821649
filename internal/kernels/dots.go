package kernels

// MultiDot64 sets c[j] to the dot product of a with row j of B (row stride
// ldb: b[j*ldb : j*ldb+len(a)]) for every j < len(c), each summed in an
// order of the implementation's choosing. It panics if B is too short.
func MultiDot64(c, a, b []float64, ldb int) {
	if len(c) == 0 {
		return
	}
	if len(a) == 0 {
		clear(c)
		return
	}
	if ldb < len(a) || len(b) < (len(c)-1)*ldb+len(a) {
		panic("kernels: MultiDot64: b is too short")
	}
	multiDot64(c, a, b, ldb)
}

func multiDot64Go(c, a, b []float64, ldb int) {
	for j := range c {
		c[j] = dot(a, b[j*ldb:j*ldb+len(a)])
	}
}
