//go:build amd64 && gc && !purego

package kernels

import "unsafe"

// kernHalfNT is the signature of the 16-bit-B NT kernels (see
// _asm/half_nt.go): mr rows of A against blocks of 4 rows of B, ldb
// counting 16-bit elements.
type kernHalfNT func(k int, a *float32, lda int, b *uint16, ldb int, c *float32, ldc int, blocks int, pf *uint16, pflines int)

// halfNT is one family of the kernels: by rows-1, each taking blocks of
// keys keys; wholeVector is whether they cover whole vectors of w lanes
// of k only (AVX2: the caller adds the last k mod w products).
type halfNT struct {
	kr          *[halfNTRows]kernHalfNT
	keys, w     int
	wholeVector bool
}

// halfNTFamily returns the kernels for the current level and format, or
// nil where there are none (bfloat16 needs AVX512BW's 512-bit VPMOVZXWD
// on AVX-512, float16 F16C on AVX2).
func halfNTFamily(bf bool) *halfNT {
	switch {
	case level == levelAVX512 && bf && hasBW:
		return &halfNT{&gemmNT32xBF16AVX512, 4, 16, false}
	case level == levelAVX512 && !bf:
		return &halfNT{&gemmNT32xF16AVX512, 4, 16, false}
	case level >= levelAVX2 && bf:
		return &halfNT{&gemmNT32xBF16AVX2, 2, 8, true}
	case level >= levelAVX2 && hasF16C:
		return &halfNT{&gemmNT32xF16AVX2, 2, 8, true}
	}
	return nil
}

func halfNTVector(bf bool) bool { return halfNTFamily(bf) != nil }

// halfNTRows is the most rows of A one kernel call takes.
const halfNTRows = 4

func gemmNT32Half(bf bool, m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, next []uint16) {
	g := halfNTFamily(bf)
	kv := k // the k the kernels cover
	if g != nil && g.wholeVector {
		kv = k / g.w * g.w
	}
	if g == nil || n < g.keys || kv == 0 || !ntOK(m, n, k, len(a), lda, len(b), ldb, len(c), ldc) {
		gemmNT32HalfGo(bf, m, n, k, a, lda, b, ldb, c, ldc)
		return
	}
	// Blocks of keys, each prefetching its share of next; the last n mod
	// g.keys keys come from one more block ending at key n-1, which sets
	// some scores again to the same values.
	blocks := n / g.keys
	lines := (2*len(next) + 63) / 64
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
				c[i*ldc+j] += dotHalf(bf, a[i*lda+kv:i*lda+k], b[j*ldb+kv:j*ldb+k])
			}
		}
	}
}

// newHalfPrefetch returns a prefetch of next in steps steps.
func newHalfPrefetch(next []uint16, steps int) prefetcher {
	return newPrefetcher(unsafe.Pointer(unsafe.SliceData(next)), 2*len(next), steps)
}
