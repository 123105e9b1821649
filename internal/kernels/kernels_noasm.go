//go:build !amd64 || !gc || purego

package kernels

import "unsafe"

func prefetch(unsafe.Pointer, int) {}

func gemmNT32(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, _ []float32) {
	gemmNTGo(m, n, k, a, lda, b, ldb, c, ldc)
}

func gemmNT64(m, n, k int, a []float64, lda int, b []float64, ldb int, c []float64, ldc int, _ []float64) {
	gemmNTGo(m, n, k, a, lda, b, ldb, c, ldc)
}

// gemmNT32Packed and gemmNT64Packed are the products PackedNT's must match
// bit for bit: here the same portable code.
func gemmNT32Packed(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	gemmNTGo(m, n, k, a, lda, b, ldb, c, ldc)
}

func gemmNT64Packed(m, n, k int, a []float64, lda int, b []float64, ldb int, c []float64, ldc int) {
	gemmNTGo(m, n, k, a, lda, b, ldb, c, ldc)
}

func gemmNN32(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	gemmNNNext32(m, n, k, a, lda, b, ldb, c, ldc, nil, false)
}

func gemmNNNext32(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, _ []float32, set bool) {
	if set {
		clearRows(m, n, c, ldc)
	}
	gemmNNGo(m, n, k, a, lda, b, ldb, c, ldc)
}

func gemmNNAccumulate32(m, n, k int, a []float32, lda int, b []float32, ldb int, scratch []float32, ldc int, dst []float64, ldd int, alphas []float64, next []float32) {
	gemmNNAccumulate32Split(m, n, k, a, lda, b, ldb, scratch, ldc, dst, ldd, alphas, next)
}

func gemmNN64(m, n, k int, a []float64, lda int, b []float64, ldb int, c []float64, ldc int) {
	gemmNNNext64(m, n, k, a, lda, b, ldb, c, ldc, nil)
}

func gemmNNNext64(m, n, k int, a []float64, lda int, b []float64, ldb int, c []float64, ldc int, _ []float64) {
	gemmNNGo(m, n, k, a, lda, b, ldb, c, ldc)
}

func expShiftSum32(x []float32, scale, shift float32) float32 {
	return expShiftSum32Go(x, scale, shift)
}

func exp2ShiftSum32(x []float32, scale, shift float32) float32 {
	return exp2ShiftSum32Go(x, scale, shift)
}

func maxRows32(s []float32, ld, rows, cols int, out []float32) bool {
	return maxRows32Go(s, ld, rows, cols, out)
}

func exp2Rows32(s []float32, ld, rows, cols int, scale float32, shifts, sums []float32) {
	exp2Rows32Go(s, ld, rows, cols, scale, shifts, sums)
}

func expShiftSum64(x []float64, scale, shift float64) float64 {
	return expShiftSum64Go(x, scale, shift)
}

func accumulate32(dst []float64, alpha float64, src []float32) {
	accumulate32Go(dst, alpha, src)
}

func drainScaled32(dst []float32, add bool, scale float64, sum []float64, part []float32) {
	drainScaled32Go(dst, add, scale, sum, part)
}

func max32(x []float32) float32 { return maxGo(x) }
func finite32(x []float32) bool { return finiteGo(x) }
func finite64(x []float64) bool { return finiteGo(x) }
func max64(x []float64) float64 { return maxGo(x) }

// Dispatch levels; only levelGo exists without assembly.
const (
	levelGo = iota
	levelAVX2
	levelAVX512
)

// maxLevel and level mirror the amd64 dispatch so tests are portable.
var maxLevel, level = levelGo, levelGo

func levelName(l int) string { return "go" }

// Without assembly a PackedNT uses B in place.
func packedSetup[T float32 | float64](p *PackedNT[T])            {}
func packedPack[T float32 | float64](p *PackedNT[T], j0, j1 int) {}
func packedGemm[T float32 | float64](p *PackedNT[T], m, j0, nb int, a []T, lda int, c []T, ldc int, _ []T) bool {
	return false
}

func softmaxGrad64(s, ds []float64, scale, lse, delta float64) {
	softmaxGrad64Go(s, ds, scale, lse, delta)
}

func softmaxGradRows32(s, ds []float32, ld, rows, cols int, scale float64, lse, delta []float64) {
	softmaxGradRows32Go(s, ds, ld, rows, cols, scale, lse, delta)
}

func maxFinite32(x []float32) (float32, bool) { return maxGo(x), finiteGo(x) }
func maxFinite64(x []float64) (float64, bool) { return maxGo(x), finiteGo(x) }

func exp2RowsBF16(s []float32, ld, rows, cols int, scale float32, shifts, sums []float32, hi, lo []uint16) {
	exp2RowsBF16Go(s, ld, rows, cols, scale, shifts, sums, hi, lo)
}

func exp2RowsMaxBF16(s []float32, ld, rows, cols int, scale float32, shifts, sums []float32, hi, lo []uint16) {
	exp2RowsMaxBF16Go(s, ld, rows, cols, scale, shifts, sums, hi, lo)
}
