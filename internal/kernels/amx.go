package kernels

import "math"

// Packed bfloat16 GEMM for Intel AMX (Advanced Matrix Extensions).
//
// TDPBF16PS multiplies a 16 x 32 bfloat16 tile of A by a 32 x 16 tile of B
// into a 16 x 16 float32 tile: 16384 flops per instruction, about ten
// times the AVX-512 FMA's rate on the cores that have it. It needs B in
// "pairs" layout: each 64-byte row of a B tile holds, for 16 columns, the
// two consecutive-k values of that column. PackBF16NT and PackBF16NN lay
// out B (given as B^T, the keys of attention, or as B, the values) in that
// layout once; GemmPackedBF16 then runs any number of products against it.
//
// Rounding: the products of two bfloat16 values are exact in float32 and
// the sums are float32 (to nearest even) in an order of the hardware's
// choosing. On AMX, bfloat16 subnormal inputs count as zero and subnormal
// float32 results (partial sums included) are flushed to zero; the
// portable path keeps them. Callers that bound the error (exact attention)
// keep subnormals out of the inputs.

// Packed layout: panels of 16 columns of C, each ks = ceil(k/32) tiles of
// 16 rows x 32 values (1 KiB), row r of tile s holding the pairs
// (B[32s+2r][col], B[32s+2r+1][col]) for the panel's 16 columns. Entries
// beyond n or k are zero.
const (
	amxCols  = 16 // columns of C per panel, rows of C per tile
	amxDepth = 32 // k values per tile
	amxTile  = amxCols * amxDepth
)

// PackedBF16Len returns how many uint16 values PackBF16NT and PackBF16NN
// write for a product with n columns and depth k: n rounded up to a
// multiple of 16 times k rounded up to a multiple of 32.
func PackedBF16Len(n, k int) int {
	return roundUp(n, amxCols) * roundUp(k, amxDepth)
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

// PackBF16NT packs the bfloat16 matrix B (n x k, row stride ldb) for
// C = A B^T: B's rows become C's columns (in attention, B is the keys).
// dst must hold PackedBF16Len(n, k) values.
func PackBF16NT(dst []uint16, n, k int, b []uint16, ldb int) {
	ks := roundUp(k, amxDepth) / amxDepth
	dst = dst[:PackedBF16Len(n, k)]
	clear(dst)
	for j := range n {
		// Row j of B is column j of C: pair x/2 of tile x/32, at 2(j%16).
		panel := dst[j/amxCols*ks*amxTile+2*(j%amxCols):]
		for x, v := range b[j*ldb : j*ldb+k] {
			panel[x/amxDepth*amxTile+x%amxDepth/2*amxDepth+x%2] = v
		}
	}
}

// PackBF16NN packs the bfloat16 matrix B (k x n, row stride ldb) for
// C = A B (in attention, B is the values). dst must hold
// PackedBF16Len(n, k) values.
func PackBF16NN(dst []uint16, k, n int, b []uint16, ldb int) {
	ks := roundUp(k, amxDepth) / amxDepth
	dst = dst[:PackedBF16Len(n, k)]
	clear(dst)
	for x := range k {
		// Row x of B: pair x/2 of tile x/32 in every panel.
		off := x/amxDepth*amxTile + x%amxDepth/2*amxDepth + x%2
		for j, v := range b[x*ldb : x*ldb+n] {
			dst[j/amxCols*ks*amxTile+off+2*(j%amxCols)] = v
		}
	}
}

// GemmPackedBF16 computes C = A B (accumulate false) or C += A B
// (accumulate true) for bfloat16 A (m x k, row stride lda) and B packed by
// PackBF16NT or PackBF16NN for the same n and k, into float32 C (m x n,
// row stride ldc), with float32 sums. It runs on AMX when AMX() is true.
func GemmPackedBF16(m, n, k int, a []uint16, lda int, bp []uint16, c []float32, ldc int, accumulate bool) {
	GemmPackedBF16Prefix(m, n, k, k, a, lda, bp, c, ldc, accumulate)
}

// GemmPackedBF16Prefix is GemmPackedBF16 with B packed for a depth kPacked
// >= k, of which only the first k rows are used: a tile of attention's
// values packed once for a full tile of keys serves a shorter one (the
// causal diagonal) without repacking. B's rows k to k rounded up to 32
// are multiplied by zeros, so they must be finite.
func GemmPackedBF16Prefix(m, n, k, kPacked int, a []uint16, lda int, bp []uint16, c []float32, ldc int, accumulate bool) {
	if m <= 0 || n <= 0 {
		return
	}
	if k > kPacked {
		panic("kernels: GemmPackedBF16Prefix: k beyond the packed depth")
	}
	if len(bp) < PackedBF16Len(n, kPacked) {
		panic("kernels: GemmPackedBF16: packed B shorter than PackedBF16Len(n, k)")
	}
	if k <= 0 {
		if !accumulate {
			for i := range m {
				clear(c[i*ldc : i*ldc+n])
			}
		}
		return
	}
	_ = a[(m-1)*lda+k-1]
	_ = c[(m-1)*ldc+n-1]
	gemmPackedBF16(m, n, k, kPacked, a, lda, bp, c, ldc, accumulate)
}

// AMX reports whether GemmPackedBF16 runs on AMX tiles (TDPBF16PS) here:
// the CPU has AMX-TILE and AMX-BF16 and the OS lets this process use them.
// Elsewhere it runs in portable Go (correct, but slow).
func AMX() bool { return amxAvailable() }

// gemmPackedBF16Go is the portable product: float32 sums in k order.
func gemmPackedBF16Go(m, n, k, kPacked int, a []uint16, lda int, bp []uint16, c []float32, ldc int, accumulate bool) {
	ks := roundUp(kPacked, amxDepth) / amxDepth
	for i := range m {
		arow := a[i*lda : i*lda+k]
		crow := c[i*ldc : i*ldc+n]
		for j := range n {
			panel := bp[j/amxCols*ks*amxTile:]
			col := 2 * (j % amxCols)
			var sum float32
			if accumulate {
				sum = crow[j]
			}
			for x, av := range arow {
				bv := panel[x/amxDepth*amxTile+x%amxDepth/2*amxDepth+col+x%2]
				sum += bf16Value(av) * bf16Value(bv)
			}
			crow[j] = sum
		}
	}
}

func bf16Value(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// SplitBF16 writes each src[i] as the sum of two bfloat16 values: hi[i] =
// src[i] rounded to bfloat16 and lo[i] = src[i] - hi[i] (exact in float32)
// rounded to bfloat16, both as Float32ToBF16 rounds (subnormals to zero).
// For a normal x, |x - hi - lo| <= 2^-16 |x| (plus the flushed lo below
// 2^-126): two AMX products, with hi and with lo, then multiply by x about
// as accurately as float32. len(hi) and len(lo) must be at least len(src).
func SplitBF16(hi, lo []uint16, src []float32) {
	if len(hi) < len(src) || len(lo) < len(src) {
		panic("kernels: SplitBF16: hi or lo shorter than src")
	}
	splitBF16(hi[:len(src)], lo[:len(src)], src)
}

func splitBF16Go(hi, lo []uint16, src []float32) {
	for i, x := range src {
		h := bf16FromFloat32(x)
		hi[i] = h
		lo[i] = bf16FromFloat32(x - bf16Value(h))
	}
}
