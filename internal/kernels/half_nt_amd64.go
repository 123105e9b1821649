//go:build amd64 && gc && !purego

package kernels

import "unsafe"

// kernNTRows is the signature of the NT kernels that read B's rows in
// place (see _asm/half_nt.go): mr rows of A against blocks of 4 rows of
// B, 16-bit (widened as loaded) or float32, ldb counting B's elements.
type kernNTRows[B uint16 | float32] func(k int, a *float32, lda int, b *B, ldb int, c *float32, ldc int, blocks int, pf *B, pflines int)

// ntRows is one family of the kernels: by rows-1, each taking blocks of
// keys keys; wholeVector is whether they cover whole vectors of w lanes
// of k only (AVX2: the caller adds the last k mod w products).
type ntRows[B uint16 | float32] struct {
	kr          *[halfNTRows]kernNTRows[B]
	keys, w     int
	wholeVector bool
}

// halfNTFamily returns the kernels for the current level and format, or
// nil where there are none (bfloat16 needs AVX512BW's 512-bit VPMOVZXWD
// on AVX-512, float16 F16C on AVX2).
func halfNTFamily(bf bool) *ntRows[uint16] {
	switch {
	case level == levelAVX512 && bf && hasBW:
		return &ntRows[uint16]{&gemmNT32xBF16AVX512, 4, 16, false}
	case level == levelAVX512 && !bf:
		return &ntRows[uint16]{&gemmNT32xF16AVX512, 4, 16, false}
	case level >= levelAVX2 && bf:
		return &ntRows[uint16]{&gemmNT32xBF16AVX2, 2, 8, true}
	case level >= levelAVX2 && hasF16C:
		return &ntRows[uint16]{&gemmNT32xF16AVX2, 2, 8, true}
	}
	return nil
}

// f32NTFamily returns the float32 kernels for the current level (nil for
// the portable level).
func f32NTFamily() *ntRows[float32] {
	switch {
	case level == levelAVX512:
		return &ntRows[float32]{&gemmNT32xF32AVX512, 4, 16, false}
	case level >= levelAVX2:
		return &ntRows[float32]{&gemmNT32xF32AVX2, 2, 8, true}
	}
	return nil
}

func halfNTVector(bf bool) bool { return halfNTFamily(bf) != nil }

// halfNTRows is the most rows of A one kernel call takes.
const halfNTRows = 4

func gemmNT32Half(bf bool, m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, next []uint16) {
	dot := func(a []float32, b []uint16) float32 { return dotHalf(bf, a, b) }
	if !gemmNTRows(halfNTFamily(bf), m, n, k, a, lda, b, ldb, c, ldc, next, dot) {
		gemmNT32HalfGo(bf, m, n, k, a, lda, b, ldb, c, ldc)
	}
}

// gemmNTRows sets C = A B^T with g's kernels, prefetching next into L2 on
// the way, and reports true; or, where g cannot (no kernels, fewer keys
// than a block, operands outside their slices), does nothing and reports
// false. dot is the float32 dot product of a row of A with a row of B,
// for the products past the kernels' whole vectors of k.
func gemmNTRows[B uint16 | float32](g *ntRows[B], m, n, k int, a []float32, lda int, b []B, ldb int, c []float32, ldc int, next []B, dot func(a []float32, b []B) float32) bool {
	kv := k // the k the kernels cover
	if g != nil && g.wholeVector {
		kv = k / g.w * g.w
	}
	if g == nil || n < g.keys || kv == 0 || !ntOK(m, n, k, len(a), lda, len(b), ldb, len(c), ldc) {
		return false
	}
	// Blocks of keys, each prefetching its share of next; the last n mod
	// g.keys keys come from one more block ending at key n-1, which sets
	// some scores again to the same values.
	var zero B
	blocks := n / g.keys
	lines := (int(unsafe.Sizeof(zero))*len(next) + 63) / 64
	pfl := (lines + blocks - 1) / blocks
	pf := unsafe.SliceData(next)
	for i := 0; i < m; i += halfNTRows {
		kr := g.kr[min(halfNTRows, m-i)-1]
		kr(kv, &a[i*lda], lda, &b[0], ldb, &c[i*ldc], ldc, blocks, pf, pfl)
		pfl = 0
		if n%g.keys != 0 {
			kr(kv, &a[i*lda], lda, &b[(n-g.keys)*ldb], ldb, &c[i*ldc+n-g.keys], ldc, 1, nil, 0)
		}
	}
	if kv < k {
		// The products past the kernels' whole vectors.
		for i := range m {
			for j := range n {
				c[i*ldc+j] += dot(a[i*lda+kv:i*lda+k], b[j*ldb+kv:j*ldb+k])
			}
		}
	}
	return true
}

// newHalfPrefetch returns a prefetch of next in steps steps.
func newHalfPrefetch(next []uint16, steps int) prefetcher {
	return newPrefetcher(unsafe.Pointer(unsafe.SliceData(next)), 2*len(next), steps)
}
