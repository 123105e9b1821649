package kernels

import "math"

// This file holds the portable implementations. They are the whole
// implementation on architectures without assembly kernels and under the
// purego build tag, the fallback for arguments the assembly does not
// handle, and the reference the assembly is tested against.

// gemmNTGo is the portable C = A B^T: every entry is a dot product of two
// contiguous rows. Four rows of B are taken at once so each load of A
// feeds four products.
func gemmNTGo[T float32 | float64](m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int) {
	for i := range m {
		ar := a[i*lda : i*lda+k]
		cr := c[i*ldc : i*ldc+n]
		j := 0
		for ; j+4 <= n; j += 4 {
			cr[j], cr[j+1], cr[j+2], cr[j+3] = dot4(ar,
				b[j*ldb:j*ldb+k], b[(j+1)*ldb:(j+1)*ldb+k],
				b[(j+2)*ldb:(j+2)*ldb+k], b[(j+3)*ldb:(j+3)*ldb+k])
		}
		for ; j < n; j++ {
			cr[j] = dot(ar, b[j*ldb:j*ldb+k])
		}
	}
}

// dot4 returns the dot products of x with y0..y3, each with two
// accumulators.
func dot4[T float32 | float64](x, y0, y1, y2, y3 []T) (T, T, T, T) {
	y0, y1, y2, y3 = y0[:len(x)], y1[:len(x)], y2[:len(x)], y3[:len(x)]
	var s0, s1, s2, s3, t0, t1, t2, t3 T
	i := 0
	for ; i+2 <= len(x); i += 2 {
		u, v := x[i], x[i+1]
		s0 += u * y0[i]
		t0 += v * y0[i+1]
		s1 += u * y1[i]
		t1 += v * y1[i+1]
		s2 += u * y2[i]
		t2 += v * y2[i+1]
		s3 += u * y3[i]
		t3 += v * y3[i+1]
	}
	if i < len(x) {
		u := x[i]
		s0 += u * y0[i]
		s1 += u * y1[i]
		s2 += u * y2[i]
		s3 += u * y3[i]
	}
	return s0 + t0, s1 + t1, s2 + t2, s3 + t3
}

func dot[T float32 | float64](x, y []T) T {
	y = y[:len(x)]
	var s0, s1, s2, s3 T
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// gemmNNGo is the portable C += A B as rank-four updates of C's rows, which
// streams B's rows contiguously and loads and stores each C entry once per
// four rows of B. Groups of four zero entries of A (masked probabilities)
// are skipped.
func gemmNNGo[T float32 | float64](m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int) {
	for i := range m {
		cr := c[i*ldc : i*ldc+n]
		ar := a[i*lda : i*lda+k]
		p := 0
		for ; p+4 <= k; p += 4 {
			a0, a1, a2, a3 := ar[p], ar[p+1], ar[p+2], ar[p+3]
			if a0 == 0 && a1 == 0 && a2 == 0 && a3 == 0 {
				continue
			}
			b0 := b[p*ldb : p*ldb+n]
			b1 := b[(p+1)*ldb : (p+1)*ldb+n]
			b2 := b[(p+2)*ldb : (p+2)*ldb+n]
			b3 := b[(p+3)*ldb : (p+3)*ldb+n]
			for j := range cr {
				cr[j] += a0*b0[j] + a1*b1[j] + a2*b2[j] + a3*b3[j]
			}
		}
		for ; p < k; p++ {
			av := ar[p]
			if av == 0 {
				continue
			}
			br := b[p*ldb : p*ldb+n]
			for j := range cr {
				cr[j] += av * br[j]
			}
		}
	}
}

// expShiftSum32Go computes each float32 exponential in float64 arithmetic:
// x = k ln2 + r with |r| <= ln2/2, e^r by its degree-8 Taylor polynomial
// (relative error below 3e-10), then 2^k through the exponent bits; the
// final rounding to float32 makes the result faithful (within 1 ulp).
func expShiftSum32Go(x []float32, scale, shift float32) float32 {
	var sum float32
	for j, v := range x {
		e := exp32(scale*v - shift)
		x[j] = e
		sum += e
	}
	return sum
}

func exp32(v float32) float32 {
	x := float64(v)
	if !(x > -110) { // also -Inf
		if x != x {
			return v
		}
		return 0
	}
	if x > 89 {
		return float32(math.Inf(1))
	}
	const magic = 0x1.8p52 // adding it rounds to an integer
	kd := x*math.Log2E + magic
	k := kd - magic
	r := x - k*math.Ln2
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+r*(1.0/5040+r*(1.0/40320))))))))
	return float32(p * math.Float64frombits(uint64(int64(k)+1023)<<52))
}

// expShiftSum64Go uses math.Exp.
func expShiftSum64Go(x []float64, scale, shift float64) float64 {
	var sum float64
	for j, v := range x {
		e := math.Exp(scale*v - shift)
		x[j] = e
		sum += e
	}
	return sum
}

func maxGo[T float32 | float64](x []T) T {
	m := T(math.Inf(-1))
	for _, v := range x {
		m = max(m, v)
	}
	return m
}
