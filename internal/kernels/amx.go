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
	// The assembly, where it runs, writes the whole pairs of the panels
	// of 16 rows; the loop below writes the rest.
	done := packBF16NTPanels(dst, n, k, b, ldb)
	// Every entry is written once, zeros beyond n and k included: each
	// row of B fills one pair column of its panel's tiles, whose pair rows
	// are amxDepth values apart.
	for j := range roundUp(n, amxCols) {
		var row []uint16
		if j < n {
			row = b[j*ldb : j*ldb+k]
		}
		panel := dst[j/amxCols*ks*amxTile+2*(j%amxCols):]
		from := 0
		if j < done {
			from = k / 2
		}
		for pp := from; pp < ks*amxDepth/2; pp++ {
			x := 2 * pp
			if x+1 < len(row) {
				panel[pp*amxDepth], panel[pp*amxDepth+1] = row[x], row[x+1]
				continue
			}
			panel[pp*amxDepth], panel[pp*amxDepth+1] = at(row, x), at(row, x+1)
		}
	}
}

// PackBF16NN packs the bfloat16 matrix B (k x n, row stride ldb) for
// C = A B (in attention, B is the values). dst must hold
// PackedBF16Len(n, k) values.
func PackBF16NN(dst []uint16, k, n int, b []uint16, ldb int) {
	ks := roundUp(k, amxDepth) / amxDepth
	dst = dst[:PackedBF16Len(n, k)]
	// Every entry is written once, zeros beyond n and k included: a tile
	// row interleaves two rows of B over the panel's 16 columns.
	// The assembly, where it runs, writes the whole pairs of the panels
	// of 16 columns; the loop below writes the rest.
	done := packBF16NNPanels(dst, k, n, b, ldb)
	var none [amxCols]uint16
	for j0 := 0; j0 < n; j0 += amxCols {
		w := min(amxCols, n-j0)
		for s := range ks {
			tile := dst[(j0/amxCols*ks+s)*amxTile:][:amxTile]
			for r := range amxDepth / 2 {
				x := s*amxDepth + 2*r
				if j0 < done && x+1 < k {
					continue
				}
				r0, r1 := none[:w], none[:w]
				if x < k {
					r0 = b[x*ldb+j0 : x*ldb+j0+w]
				}
				if x+1 < k {
					r1 = b[(x+1)*ldb+j0 : (x+1)*ldb+j0+w]
				}
				out := tile[r*amxDepth : r*amxDepth+amxDepth]
				for jj := range w {
					out[2*jj], out[2*jj+1] = r0[jj], r1[jj]
				}
				clear(out[2*w:])
			}
		}
	}
}

// at is x[i], or 0 beyond x.
func at(x []uint16, i int) uint16 {
	if i < len(x) {
		return x[i]
	}
	return 0
}

// GemmPackedBF16 computes C = A B (accumulate false) or C += A B
// (accumulate true) for bfloat16 A (m x k, row stride lda) and B packed by
// PackBF16NT or PackBF16NN for the same n and k, into float32 C (m x n,
// row stride ldc), with float32 sums. It runs on AMX when AMX() is true,
// else on VDPBF16PS when BF16Dot() is (PackedBF16Fast tells whether either
// does).
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
// Elsewhere it runs on VDPBF16PS or in portable Go (see PackedBF16Fast).
func AMX() bool { return amxAvailable() }

// PackedBF16Fast reports whether GemmPackedBF16 runs on hardware bfloat16
// products here: AMX tiles, or AVX512_BF16's VDPBF16PS where that beats
// widening to float32 (BF16Dot). Elsewhere it runs in portable Go.
func PackedBF16Fast() bool { return packedBF16Fast() }

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
