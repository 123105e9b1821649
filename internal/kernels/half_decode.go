package kernels

import "math"

// GemmNN32F16 adds A B to C for float32 A (m x k) and float16 B (k x n,
// IEEE binary16 bits), C m x n float32: B is widened as it is read, with
// float32 products and sums, so the result is a float32 product of the
// widened B. A decoding step reads its 16-bit keys and values this way,
// half the bytes of float32 ones.
func GemmNN32F16(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int) {
	gemmNN32Half(false, m, n, k, a, lda, b, ldb, c, ldc)
}

// GemmNN32BF16 is GemmNN32F16 for bfloat16 B.
func GemmNN32BF16(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int) {
	gemmNN32Half(true, m, n, k, a, lda, b, ldb, c, ldc)
}

// gemmNN32HalfGo is the portable product: for each row of A, each k step
// adds a_ip times B's widened row p, in the order of the kernels.
func gemmNN32HalfGo(bf bool, m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int) {
	for i := range m {
		ci := c[i*ldc : i*ldc+n]
		for p := range k {
			ap := a[i*lda+p]
			bp := b[p*ldb : p*ldb+n]
			if bf {
				for j, h := range bp {
					ci[j] += ap * math.Float32frombits(uint32(h)<<16)
				}
				continue
			}
			for j, h := range bp {
				ci[j] += ap * f16ToFloat32(h)
			}
		}
	}
}
