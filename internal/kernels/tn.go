package kernels

// GemmTN32 adds A^T B to C, with A k x m (row stride lda), B k x n and C
// m x n: A is read as it is stored, so a product with a transposed
// operand (the backward pass's dK += dS^T Q) needs no transposed copy.
func GemmTN32(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	gemmTN32(m, n, k, a, lda, b, ldb, c, ldc)
}

// GemmTN64 is GemmTN32 for float64.
func GemmTN64(m, n, k int, a []float64, lda int, b []float64, ldb int, c []float64, ldc int) {
	gemmTN64(m, n, k, a, lda, b, ldb, c, ldc)
}

// tnOK reports whether the assembly may run: a non-empty product whose
// operands lie inside their slices (else the portable code runs, and
// panics where it always would).
func tnOK(m, n, k, la, lda, lb, ldb, lc, ldc int) bool {
	return m > 0 && n > 0 && k > 0 && lda >= m && ldb >= n && ldc >= n &&
		la >= (k-1)*lda+m && lb >= (k-1)*ldb+n && lc >= (m-1)*ldc+n
}

// gemmTNGo is the portable C += A^T B: each row p of A and B adds the
// outer product of its two rows, in order of p.
func gemmTNGo[T float32 | float64](m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int) {
	for p := range k {
		ar, br := a[p*lda:p*lda+m], b[p*ldb:p*ldb+n]
		for i, x := range ar {
			cr := c[i*ldc : i*ldc+n]
			for j, y := range br {
				cr[j] += x * y
			}
		}
	}
}
