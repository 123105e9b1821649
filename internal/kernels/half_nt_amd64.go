//go:build amd64 && gc && !purego

package kernels

import (
	"sync"
	"unsafe"
)

// kernNTRows is the signature of the NT kernels that read B's rows in
// place (see _asm/half_nt.go): mr rows of A against blocks of 4 rows of
// B (2 in the wide kernels), ldb counting B's elements. A and C are
// float32 with 16-bit B (widened as loaded) or float32 B, float64 with
// float64 B.
type kernNTRows[A float32 | float64, B uint16 | float32 | float64] func(k int, a *A, lda int, b *B, ldb int, c *A, ldc int, blocks int, pf *B, pflines int)

// ntRows is one family of the kernels: by rows-1, each taking blocks of
// keys keys; wholeVector is whether they cover whole vectors of w lanes
// of k only (AVX2: the caller adds the last k mod w products). wide, when
// not nil, are the kernels for halfNTRows+1 to 2*halfNTRows rows (by
// rows-halfNTRows-1), in blocks of wideKeys keys.
type ntRows[A float32 | float64, B uint16 | float32 | float64] struct {
	kr          *[halfNTRows]kernNTRows[A, B]
	keys, w     int
	wholeVector bool
	wide        *[halfNTRows]kernNTRows[A, B]
	wideKeys    int
}

// The kernel families, one per level and format; package variables, so
// that choosing one allocates nothing.
var (
	ntBF16AVX512 = ntRows[float32, uint16]{&gemmNT32xBF16AVX512, 4, 16, false, &gemmNT32xBF16AVX512Wide, 2}
	ntF16AVX512  = ntRows[float32, uint16]{&gemmNT32xF16AVX512, 4, 16, false, &gemmNT32xF16AVX512Wide, 2}
	ntBF16AVX2   = ntRows[float32, uint16]{&gemmNT32xBF16AVX2, 2, 8, true, nil, 0}
	ntF16AVX2    = ntRows[float32, uint16]{&gemmNT32xF16AVX2, 2, 8, true, nil, 0}
	ntF32AVX512  = ntRows[float32, float32]{&gemmNT32xF32AVX512, 4, 16, false, &gemmNT32xF32AVX512Wide, 2}
	ntF32AVX2    = ntRows[float32, float32]{&gemmNT32xF32AVX2, 2, 8, true, nil, 0}
	ntF64AVX512  = ntRows[float64, float64]{&gemmNT64xF64AVX512, 4, 8, false, &gemmNT64xF64AVX512Wide, 2}
)

// halfNTFamily returns the kernels for the current level and format, or
// nil where there are none (bfloat16 needs AVX512BW's 512-bit VPMOVZXWD
// on AVX-512, float16 F16C on AVX2).
func halfNTFamily(bf bool) *ntRows[float32, uint16] {
	switch {
	case level == levelAVX512 && bf && hasBW:
		return &ntBF16AVX512
	case level == levelAVX512 && !bf:
		return &ntF16AVX512
	case level >= levelAVX2 && bf:
		return &ntBF16AVX2
	case level >= levelAVX2 && hasF16C:
		return &ntF16AVX2
	}
	return nil
}

// f32NTFamily returns the float32 kernels for the current level (nil for
// the portable level).
func f32NTFamily() *ntRows[float32, float32] {
	switch {
	case level == levelAVX512:
		return &ntF32AVX512
	case level >= levelAVX2:
		return &ntF32AVX2
	}
	return nil
}

// f64NTFamily returns the float64 kernels for the current level (nil
// below AVX-512, where GemmNT64 packs).
func f64NTFamily() *ntRows[float64, float64] {
	if level == levelAVX512 {
		return &ntF64AVX512
	}
	return nil
}

func halfNTVector(bf bool) bool { return halfNTFamily(bf) != nil }

// halfNTRows is the most rows of A one narrow kernel call takes; a wide
// one takes up to twice as many.
const halfNTRows = 4

// useWideNT turns the wide kernels on: a few query rows reading keys from
// L3 take one pass over them instead of two or more. Against two passes
// of the narrow kernels (BenchmarkNTRowsWide, float32, k = 128) a pass
// of 5 to 8 rows over 32768 keys took about 0.8x the time, 16 rows about
// 0.9x, with the keys in L2 the same time. A variable so tests and
// benchmarks can compare.
var useWideNT = true

func gemmNT32Half(bf bool, m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int, next []uint16) {
	dot := func(a []float32, b []uint16) float32 { return dotHalf(bf, a, b) }
	if !gemmNTRows(halfNTFamily(bf), m, n, k, a, lda, b, ldb, c, ldc, next, dot) {
		gemmNT32HalfGo(bf, m, n, k, a, lda, b, ldb, c, ldc)
	}
}

// fewKeysScratch holds a few-key call's row of scores (at most 4 of them,
// float32 or float64): the kernels are called through a function value,
// so a local array would escape and be allocated on every such call.
var fewKeysScratch = sync.Pool{New: func() any { return new([4]float64) }}

// gemmNTRows sets C = A B^T with g's kernels, prefetching next into L2 on
// the way, and reports true; or, where g cannot (no kernels, k shorter
// than a vector on AVX2, operands outside their slices), does nothing and
// reports false. dot is the dot product of a row of A with a row of B,
// in A's type, for the products past the kernels' whole vectors of k.
func gemmNTRows[A float32 | float64, B uint16 | float32 | float64](g *ntRows[A, B], m, n, k int, a []A, lda int, b []B, ldb int, c []A, ldc int, next []B, dot func(a []A, b []B) A) bool {
	kv := k // the k the kernels cover
	if g != nil && g.wholeVector {
		kv = k / g.w * g.w
	}
	if g == nil || kv == 0 || !ntOK(m, n, k, len(a), lda, len(b), ldb, len(c), ldc) {
		return false
	}
	if n < g.keys {
		// Fewer keys than a block: each key alone, read g.keys times (a
		// row stride of 0), so that its scores get the bits the kernels
		// give them in any call, as exact's backward needs (the sums of
		// one query and one key do not depend on the other rows and keys
		// of the call).
		scratch := fewKeysScratch.Get().(*[4]float64)
		defer fewKeysScratch.Put(scratch)
		one := unsafe.Slice((*A)(unsafe.Pointer(scratch)), g.keys)
		for i := range m {
			for j := range n {
				g.kr[0](kv, &a[i*lda], lda, &b[j*ldb], 0, &one[0], g.keys, 1, nil, 0)
				x := one[0]
				if kv < k {
					x += dot(a[i*lda+kv:i*lda+k], b[j*ldb+kv:j*ldb+k])
				}
				c[i*ldc+j] = x
			}
		}
		return true
	}
	// Passes over the keys of up to 2*halfNTRows rows (wide kernels) or
	// halfNTRows; each in blocks of keys, each block of the first pass
	// prefetching its share of next. The last n mod keys keys come from
	// one more block ending at key n-1, which sets some scores again to
	// the same values.
	var zero B
	lines := (int(unsafe.Sizeof(zero))*len(next) + 63) / 64
	pf := unsafe.SliceData(next)
	for i, rows := 0, 0; i < m; i += rows {
		var kr kernNTRows[A, B]
		keys := g.keys
		if rows = m - i; g.wide != nil && useWideNT && rows > halfNTRows {
			rows = min(rows, 2*halfNTRows)
			kr, keys = g.wide[rows-halfNTRows-1], g.wideKeys
		} else {
			rows = min(rows, halfNTRows)
			kr = g.kr[rows-1]
		}
		blocks, pfl := n/keys, 0
		if i == 0 {
			pfl = (lines + blocks - 1) / blocks
		}
		kr(kv, &a[i*lda], lda, &b[0], ldb, &c[i*ldc], ldc, blocks, pf, pfl)
		if n%keys != 0 {
			kr(kv, &a[i*lda], lda, &b[(n-keys)*ldb], ldb, &c[i*ldc+n-keys], ldc, 1, nil, 0)
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
