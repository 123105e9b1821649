//go:build !amd64 || !gc || purego

package kernels

func gemmNT32Half(bf bool, m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, _ []uint16) {
	gemmNT32HalfGo(bf, m, n, k, a, lda, b, ldb, c, ldc)
}

func halfNTVector(bool) bool { return false }

// noPrefetch stands for the prefetch the portable code does without.
type noPrefetch struct{}

func (noPrefetch) step() {}

func newHalfPrefetch([]uint16, int) noPrefetch { return noPrefetch{} }
