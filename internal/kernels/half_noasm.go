//go:build !amd64 || !gc || purego

package kernels

func bf16ToF32(dst []float32, src []uint16) { bf16ToF32Go(dst, src) }
func f16ToF32(dst []float32, src []uint16)  { f16ToF32Go(dst, src) }
func f32ToBF16(dst []uint16, src []float32) { f32ToBF16Go(dst, src) }
func bf16Dot() bool                         { return false }

func gemmBF16(nt bool, m, n, k int, a []uint16, lda int, b []uint16, ldb int, c []float32, ldc int) {
	gemmBF16Go(nt, m, n, k, a, lda, b, ldb, c, ldc)
}

// Without assembly there is no AVX512_BF16 path; tests toggle useBF16 on
// every architecture.
var (
	hasBF16, useBF16 = false, false
	bf16Calibrated   *bool
)
