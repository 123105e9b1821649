package kernels

import "math"

// GemmNT32F16 sets C = A B^T for float32 A (m x k) and float16 B (n x k,
// IEEE binary16 bits, one row per key), C m x n float32: B is widened as
// it is read, with float32 products and sums, so the result is a float32
// product of the widened B. A stateless decoding step scores its few
// query rows against row-major 16-bit keys this way, reading each key
// once and writing no widened copy.
func GemmNT32F16(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int) {
	gemmNT32Half(false, m, n, k, a, lda, b, ldb, c, ldc)
}

// GemmNT32BF16 is GemmNT32F16 for bfloat16 B.
func GemmNT32BF16(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int) {
	gemmNT32Half(true, m, n, k, a, lda, b, ldb, c, ldc)
}

// gemmNT32HalfGo is the portable product: a float32 dot product of each
// row of A with each widened row of B.
func gemmNT32HalfGo(bf bool, m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int) {
	for i := range m {
		ai := a[i*lda : i*lda+k]
		for j := range n {
			bj := b[j*ldb : j*ldb+k]
			var s float32
			if bf {
				for p, h := range bj {
					s += ai[p] * math.Float32frombits(uint32(h)<<16)
				}
			} else {
				for p, h := range bj {
					s += ai[p] * f16ToFloat32(h)
				}
			}
			c[i*ldc+j] = s
		}
	}
}
