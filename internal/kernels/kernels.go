// Package kernels holds fastattn's hot loops: the two matrix-product shapes
// inside attention and the exponential step of the softmax. Every attention
// method calls these and nothing else for its inner loops, so that faster
// implementations (SIMD assembly) replace them in one place.
//
// Matrices are row-major with explicit leading dimensions (row strides), so
// tiles of larger matrices can be passed without copying.
package kernels

import "math"

// GemmNT32 sets C = A B^T, with A m x k, B n x k and C m x n.
func GemmNT32(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	gemmNT(m, n, k, a, lda, b, ldb, c, ldc)
}

// GemmNT64 sets C = A B^T, with A m x k, B n x k and C m x n.
func GemmNT64(m, n, k int, a []float64, lda int, b []float64, ldb int, c []float64, ldc int) {
	gemmNT(m, n, k, a, lda, b, ldb, c, ldc)
}

// GemmNN32 adds A B to C, with A m x k, B k x n and C m x n.
func GemmNN32(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	gemmNN(m, n, k, a, lda, b, ldb, c, ldc)
}

// GemmNN64 adds A B to C, with A m x k, B k x n and C m x n.
func GemmNN64(m, n, k int, a []float64, lda int, b []float64, ldb int, c []float64, ldc int) {
	gemmNN(m, n, k, a, lda, b, ldb, c, ldc)
}

// ExpShiftSum32 replaces every x_j by exp(scale*x_j - shift) and returns
// the sum of the new values. Callers keep scale*x_j - shift <= 0 so nothing
// overflows.
func ExpShiftSum32(x []float32, scale, shift float32) float32 {
	var sum float32
	for j, v := range x {
		e := float32(math.Exp(float64(scale*v - shift)))
		x[j] = e
		sum += e
	}
	return sum
}

// ExpShiftSum64 replaces every x_j by exp(scale*x_j - shift) and returns
// the sum of the new values.
func ExpShiftSum64(x []float64, scale, shift float64) float64 {
	var sum float64
	for j, v := range x {
		e := math.Exp(scale*v - shift)
		x[j] = e
		sum += e
	}
	return sum
}

// Max32 returns the largest element of x, or -Inf for an empty x.
func Max32(x []float32) float32 { return maxOf(x) }

// Max64 returns the largest element of x, or -Inf for an empty x.
func Max64(x []float64) float64 { return maxOf(x) }

func maxOf[T float32 | float64](x []T) T {
	m := T(math.Inf(-1))
	for _, v := range x {
		m = max(m, v)
	}
	return m
}

// gemmNT is the portable C = A B^T: each entry is a dot product of two
// contiguous rows, computed with four independent accumulators.
func gemmNT[T float32 | float64](m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int) {
	for i := range m {
		ar := a[i*lda : i*lda+k]
		cr := c[i*ldc : i*ldc+n]
		for j := range n {
			cr[j] = dot(ar, b[j*ldb:j*ldb+k])
		}
	}
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

// gemmNN is the portable C += A B as rank-one updates of C's rows, which
// streams B's rows contiguously.
func gemmNN[T float32 | float64](m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int) {
	for i := range m {
		cr := c[i*ldc : i*ldc+n]
		for p, av := range a[i*lda : i*lda+k] {
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
