package kernels

import "math"

// GemmNT32F16 sets C = A B^T for float32 A (m x k) and float16 B (n x k,
// IEEE binary16 bits, one row per key), C m x n float32: B is widened as
// it is read, with float32 products and sums, so the result is a float32
// product of the widened B. A stateless decoding step scores its few
// query rows against row-major 16-bit keys this way, reading each key
// once and writing no widened copy.
func GemmNT32F16(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int) {
	gemmNT32Half(false, m, n, k, a, lda, b, ldb, c, ldc, nil)
}

// GemmNT32BF16 is GemmNT32F16 for bfloat16 B.
func GemmNT32BF16(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int) {
	gemmNT32Half(true, m, n, k, a, lda, b, ldb, c, ldc, nil)
}

// GemmNT32F16Next is GemmNT32F16 that also brings next, memory the caller
// reads soon after, from L3 into L2 while it computes, a few cache lines
// before each block of 4 keys (so the loads overlap the arithmetic, as in
// GemmNNNext32). next does not change the
// result; the portable code ignores it.
func GemmNT32F16Next(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, next []uint16) {
	gemmNT32Half(false, m, n, k, a, lda, b, ldb, c, ldc, next)
}

// GemmNT32BF16Next is GemmNT32F16Next for bfloat16 B.
func GemmNT32BF16Next(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, next []uint16) {
	gemmNT32Half(true, m, n, k, a, lda, b, ldb, c, ldc, next)
}

// GemmNN32F16Next is GemmNN32F16 that also prefetches next into L2 as
// GemmNT32F16Next does. It adds to C a group of 32 rows of B at a time
// (the steps of the prefetch), so its sums may round differently from
// GemmNN32F16's.
func GemmNN32F16Next(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, next []uint16) {
	gemmNN32HalfNext(false, m, n, k, a, lda, b, ldb, c, ldc, next)
}

// GemmNN32BF16Next is GemmNN32F16Next for bfloat16 B.
func GemmNN32BF16Next(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, next []uint16) {
	gemmNN32HalfNext(true, m, n, k, a, lda, b, ldb, c, ldc, next)
}

// HalfNTVector reports whether GemmNT32F16 (bf false) or GemmNT32BF16
// (bf true) runs on vector kernels on this CPU, rather than the portable
// code: callers with another way to their products (widening B first)
// prefer it otherwise.
func HalfNTVector(bf bool) bool { return halfNTVector(bf) }

// gemmNT32HalfGo is the portable product: a float32 dot product of each
// row of A with each widened row of B.
func gemmNT32HalfGo(bf bool, m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int) {
	for i := range m {
		for j := range n {
			c[i*ldc+j] = dotHalf(bf, a[i*lda:i*lda+k], b[j*ldb:j*ldb+k])
		}
	}
}

// dotHalf is the float32 dot product of a and the widened b.
func dotHalf(bf bool, a []float32, b []uint16) float32 {
	var s float32
	if bf {
		for p, h := range b {
			s += a[p] * math.Float32frombits(uint32(h)<<16)
		}
		return s
	}
	for p, h := range b {
		s += a[p] * f16ToFloat32(h)
	}
	return s
}

// halfNextKeys is how many rows of B (values, along k) the prefetching
// 16-bit P V takes between two steps of its prefetch.
const halfNextKeys = 32

// gemmNN32HalfNext is gemmNN32Half a group of halfNextKeys rows of B (k)
// at a time, with a step of next's prefetch before each group.
func gemmNN32HalfNext(bf bool, m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, next []uint16) {
	pf := newHalfPrefetch(next, (k+halfNextKeys-1)/halfNextKeys)
	for p := 0; p < k; p += halfNextKeys {
		pf.step()
		gemmNN32Half(bf, m, n, min(halfNextKeys, k-p), a[p:], lda, b[p*ldb:], ldb, c, ldc)
	}
}
