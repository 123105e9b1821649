//go:build !amd64 || !gc || purego

package kernels

// Without assembly there is no AMX path; tests toggle amxOff everywhere.
var amxOff bool

func amxAvailable() bool { return false }

func packedBF16Fast() bool { return false }

func gemmPackedBF16(m, n, k, kPacked int, a []uint16, lda int, bp []uint16, c []float32, ldc int, accumulate bool) {
	gemmPackedBF16Go(m, n, k, kPacked, a, lda, bp, c, ldc, accumulate)
}

// packBF16NTPanels and packBF16NNPanels leave the packing to PackBF16NT's
// and PackBF16NN's loops.
func packBF16NTPanels(dst []uint16, n, k int, b []uint16, ldb int) int { return 0 }
func packBF16NNPanels(dst []uint16, k, n int, b []uint16, ldb int) int { return 0 }

func splitBF16(hi, lo []uint16, src []float32) { splitBF16Go(hi, lo, src) }
