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
		row := b[j*ldb : j*ldb+len(a)]
		var s0, s1, s2, s3 float64
		t := 0
		for ; t+4 <= len(a); t += 4 {
			s0 += a[t] * row[t]
			s1 += a[t+1] * row[t+1]
			s2 += a[t+2] * row[t+2]
			s3 += a[t+3] * row[t+3]
		}
		for ; t < len(a); t++ {
			s0 += a[t] * row[t]
		}
		c[j] = (s0 + s1) + (s2 + s3)
	}
}
