package kernels

import "math"

// This file holds the portable implementations. They are the whole
// implementation on architectures without assembly kernels and under the
// purego build tag, the fallback for arguments the assembly does not
// handle, and the reference the assembly is tested against.

// gemmNTGo is the portable C = A B^T: every entry is a dot product of two
// contiguous rows. Blocks of two rows of A by four rows of B are computed
// together, so each load feeds two to four products.
func gemmNTGo[T float32 | float64](m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int) {
	i := 0
	for ; i+2 <= m; i += 2 {
		x0 := a[i*lda : i*lda+k]
		x1 := a[(i+1)*lda : (i+1)*lda+k]
		c0 := c[i*ldc : i*ldc+n]
		c1 := c[(i+1)*ldc : (i+1)*ldc+n]
		j := 0
		for ; j+4 <= n; j += 4 {
			y0 := b[j*ldb : j*ldb+k]
			y1 := b[(j+1)*ldb : (j+1)*ldb+k]
			y2 := b[(j+2)*ldb : (j+2)*ldb+k]
			y3 := b[(j+3)*ldb : (j+3)*ldb+k]
			var s00, s01, s02, s03, s10, s11, s12, s13 T
			x1 := x1[:len(x0)]
			y0, y1, y2, y3 = y0[:len(x0)], y1[:len(x0)], y2[:len(x0)], y3[:len(x0)]
			for p, u := range x0 {
				v := x1[p]
				w0, w1, w2, w3 := y0[p], y1[p], y2[p], y3[p]
				s00 += u * w0
				s01 += u * w1
				s02 += u * w2
				s03 += u * w3
				s10 += v * w0
				s11 += v * w1
				s12 += v * w2
				s13 += v * w3
			}
			c0[j], c0[j+1], c0[j+2], c0[j+3] = s00, s01, s02, s03
			c1[j], c1[j+1], c1[j+2], c1[j+3] = s10, s11, s12, s13
		}
		for ; j < n; j++ {
			y := b[j*ldb : j*ldb+k]
			c0[j] = dotInOrder(x0, y)
			c1[j] = dotInOrder(x1, y)
		}
	}
	if i < m {
		ar := a[i*lda : i*lda+k]
		cr := c[i*ldc : i*ldc+n]
		for j := range n {
			cr[j] = dotInOrder(ar, b[j*ldb:j*ldb+k])
		}
	}
}

// dotInOrder is the dot product of x and y summed in order, as gemmNTGo's
// blocks sum each entry: so an entry's bits do not depend on where it lies
// in a call (exact's forward and backward compute the same scores in
// calls of different shapes and must round them alike).
func dotInOrder[T float32 | float64](x, y []T) T {
	y = y[:len(x)]
	var s T
	for i, u := range x {
		s += u * y[i]
	}
	return s
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

// gemmNNGo is the portable C += A B as rank-four updates of pairs of C's
// rows: B's rows stream contiguously, and each load of B feeds two rows of
// C while each load and store of C covers four rows of B. Groups of zero
// entries of A (masked probabilities) are skipped.
func gemmNNGo[T float32 | float64](m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int) {
	i := 0
	for ; i+2 <= m; i += 2 {
		c0 := c[i*ldc : i*ldc+n]
		c1 := c[(i+1)*ldc : (i+1)*ldc+n]
		r0 := a[i*lda : i*lda+k]
		r1 := a[(i+1)*lda : (i+1)*lda+k]
		p := 0
		for ; p+4 <= k; p += 4 {
			a00, a01, a02, a03 := r0[p], r0[p+1], r0[p+2], r0[p+3]
			a10, a11, a12, a13 := r1[p], r1[p+1], r1[p+2], r1[p+3]
			if a00 == 0 && a01 == 0 && a02 == 0 && a03 == 0 && a10 == 0 && a11 == 0 && a12 == 0 && a13 == 0 {
				continue
			}
			b0 := b[p*ldb : p*ldb+n]
			b1 := b[(p+1)*ldb : (p+1)*ldb+n]
			b2 := b[(p+2)*ldb : (p+2)*ldb+n]
			b3 := b[(p+3)*ldb : (p+3)*ldb+n]
			c1 := c1[:len(c0)]
			for j := range c0 {
				v0, v1, v2, v3 := b0[j], b1[j], b2[j], b3[j]
				c0[j] += a00*v0 + a01*v1 + a02*v2 + a03*v3
				c1[j] += a10*v0 + a11*v1 + a12*v2 + a13*v3
			}
		}
		for ; p < k; p++ {
			a0, a1 := r0[p], r1[p]
			br := b[p*ldb : p*ldb+n]
			for j := range c0 {
				c0[j] += a0 * br[j]
				c1[j] += a1 * br[j]
			}
		}
	}
	if i < m {
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
			br := b[p*ldb : p*ldb+n]
			for j := range cr {
				cr[j] += av * br[j]
			}
		}
	}
}

// expShiftSum32Go computes each float32 exponential in float64 arithmetic:
// x = (32k + j) ln2/32 + r with |r| <= ln2/64, so e^x = 2^k 2^(j/32) e^r,
// with 2^(j/32) from a table and e^r from its degree-4 Taylor polynomial
// (relative error below 2e-12); the final rounding to float32 makes the
// result faithful (within 1 ulp).
func expShiftSum32Go(x []float32, scale, shift float32) float32 {
	var sum float32
	for j, v := range x {
		e := exp32(scale*v - shift)
		x[j] = e
		sum += e
	}
	return sum
}

// exp2Tab[j] = 2^(j/32).
var exp2Tab = func() (t [32]float64) {
	for j := range t {
		t[j] = math.Exp2(float64(j) / 32)
	}
	return t
}()

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
	const (
		magic = 0x1.8p52 // adding it rounds to an integer
		inv   = 32 / math.Ln2
		ln2   = math.Ln2 / 32
	)
	kf := x*inv + magic - magic
	k := int64(kf)
	r := x - kf*ln2
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24))))
	return float32(p * exp2Tab[k&31] * math.Float64frombits(uint64((k>>5)+1023)<<52))
}

// exp2ShiftSum32Go computes each float32 power of two as exp32 does its
// exponentials, in float64: y = (32k + j)/32 + r with |r| <= 1/64 (no
// rounding: y is a float32), so 2^y = 2^k 2^(j/32) e^(r ln2), the middle
// factor from the table and the last from its degree-4 Taylor polynomial;
// the result rounded to float32 is within 1 ulp.
func exp2ShiftSum32Go(x []float32, scale, shift float32) float32 {
	var sum float32
	for j, v := range x {
		e := exp2f(float32(scale*v) - shift)
		x[j] = e
		sum += e
	}
	return sum
}

func exp2f(v float32) float32 { return exp2d(float64(v)) }

// exp2d is exp2f for a float64 argument (y - k/32 is still exact), 2^y
// rounded once to float32.
func exp2d(y float64) float32 {
	if !(y > -160) { // also -Inf
		if y != y {
			return float32(y)
		}
		return 0
	}
	if y >= 128 {
		return float32(math.Inf(1))
	}
	const magic = 0x1.8p52 // adding it rounds to an integer
	kf := y*32 + magic - magic
	k := int64(kf)
	r := (y - kf/32) * math.Ln2
	p := 1 + r*(1+r*(1.0/2+r*(1.0/6+r*(1.0/24))))
	return float32(p * exp2Tab[k&31] * math.Float64frombits(uint64((k>>5)+1023)<<52))
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

// drainScaled32Go is DrainScaled32. The conversions to float64 of the
// products keep the compiler from fusing them with the additions (as it
// may where FMA is available), which the assembly does not do either.
func drainScaled32Go(dst []float32, add bool, scale float64, sum []float64, part []float32) {
	sum, part = sum[:len(dst)], part[:len(dst)]
	if add {
		for i, v := range sum {
			dst[i] = float32(float64(dst[i]) + float64(scale*(v+float64(part[i]))))
		}
	} else {
		for i, v := range sum {
			dst[i] = float32(scale * (v + float64(part[i])))
		}
	}
	clear(sum)
	clear(part)
}

func accumulate32Go(dst []float64, alpha float64, src []float32) {
	src = src[:len(dst)]
	if alpha == 1 {
		for i, v := range src {
			dst[i] += float64(v)
		}
		return
	}
	for i, v := range src {
		dst[i] = alpha*dst[i] + float64(v)
	}
}

// finiteGo reports whether every element is finite: x*0 is 0 for finite x
// and NaN otherwise; two sums so the adds overlap.
func finiteGo[T float32 | float64](x []T) bool {
	var z0, z1 T
	i := 0
	for ; i+2 <= len(x); i += 2 {
		z0 += x[i] * 0
		z1 += x[i+1] * 0
	}
	if i < len(x) {
		z0 += x[i] * 0
	}
	return z0+z1 == 0
}
