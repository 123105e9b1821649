//go:build !amd64 || !gc || purego

package kernels

func gemmNT32Half(bf bool, m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int) {
	gemmNT32HalfGo(bf, m, n, k, a, lda, b, ldb, c, ldc)
}
