//go:build amd64 && gc && !purego

package kernels

import "unsafe"

// kernHalfNT is the signature of the 16-bit-B NT kernels (see
// _asm/half_nt.go): mr rows of A against blocks of 4 rows of B, ldb
// counting 16-bit elements.
type kernHalfNT func(k int, a *float32, lda int, b *uint16, ldb int, c *float32, ldc int, blocks int, pf *uint16, pflines int)

// halfNTFamily returns the kernels, by rows-1, for the current level and
// format, or nil where there are none (below AVX-512, and bfloat16
// without AVX512BW's 512-bit VPMOVZXWD).
func halfNTFamily(bf bool) *[halfNTRows]kernHalfNT {
	switch {
	case level == levelAVX512 && bf && hasBW:
		return &gemmNT32xBF16AVX512
	case level == levelAVX512 && !bf:
		return &gemmNT32xF16AVX512
	}
	return nil
}

func halfNTVector(bf bool) bool { return halfNTFamily(bf) != nil }

// halfNTRows is the most rows of A one kernel call takes.
const halfNTRows = 4

func gemmNT32Half(bf bool, m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, next []uint16) {
	g := halfNTFamily(bf)
	if g == nil || n < 4 || !ntOK(m, n, k, len(a), lda, len(b), ldb, len(c), ldc) {
		gemmNT32HalfGo(bf, m, n, k, a, lda, b, ldb, c, ldc)
		return
	}
	// Blocks of 4 keys, each prefetching its share of next; the last
	// n mod 4 keys come from one more block ending at key n-1, which
	// sets some scores again to the same values.
	blocks := n / 4
	lines := (2*len(next) + 63) / 64
	pfl := (lines + blocks - 1) / blocks
	pf := unsafe.SliceData(next)
	for i := 0; i < m; i += halfNTRows {
		kr := g[min(halfNTRows, m-i)-1]
		kr(k, &a[i*lda], lda, &b[0], ldb, &c[i*ldc], ldc, blocks, pf, pfl)
		pfl = 0
		if n%4 != 0 {
			kr(k, &a[i*lda], lda, &b[(n-4)*ldb], ldb, &c[i*ldc+n-4], ldc, 1, nil, 0)
		}
	}
}

// newHalfPrefetch returns a prefetch of next in steps steps.
func newHalfPrefetch(next []uint16, steps int) prefetcher {
	return newPrefetcher(unsafe.Pointer(unsafe.SliceData(next)), 2*len(next), steps)
}
