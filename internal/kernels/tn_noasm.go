//go:build !amd64 || !gc || purego

package kernels

func gemmTN32(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	gemmTNGo(m, n, k, a, lda, b, ldb, c, ldc)
}

func gemmTN64(m, n, k int, a []float64, lda int, b []float64, ldb int, c []float64, ldc int) {
	gemmTNGo(m, n, k, a, lda, b, ldb, c, ldc)
}
