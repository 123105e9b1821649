//go:build amd64 && gc && !purego

package kernels

import "unsafe"

// kernHalfNT is the signature of the 16-bit-B NT kernels (see
// _asm/half_nt.go): mr rows of A against blocks of 4 rows of B, ldb
// counting 16-bit elements.
type kernHalfNT func(k int, a *float32, lda int, b *uint16, ldb int, c *float32, ldc int, blocks int)

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
	// Groups of halfNextKeys keys (the last group taking the remainder)
	// in blocks of 4; a group's last n mod 4 keys come from one more block
	// ending at its last key, which sets some scores again to the same
	// values.
	groups := max(n/halfNextKeys, 1)
	pf := newHalfPrefetch(next, groups*((m+halfNTRows-1)/halfNTRows))
	for i := 0; i < m; i += halfNTRows {
		kr := g[min(halfNTRows, m-i)-1]
		for q := range groups {
			j0, j1 := q*halfNextKeys, (q+1)*halfNextKeys
			if q == groups-1 {
				j1 = n
			}
			pf.step()
			kr(k, &a[i*lda], lda, &b[j0*ldb], ldb, &c[i*ldc+j0], ldc, (j1-j0)/4)
			if (j1-j0)%4 != 0 {
				kr(k, &a[i*lda], lda, &b[(j1-4)*ldb], ldb, &c[i*ldc+j1-4], ldc, 1)
			}
		}
	}
}

// newHalfPrefetch returns a prefetch of next in steps steps.
func newHalfPrefetch(next []uint16, steps int) prefetcher {
	return newPrefetcher(unsafe.Pointer(unsafe.SliceData(next)), 2*len(next), steps)
}
