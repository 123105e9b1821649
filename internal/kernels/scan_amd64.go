//go:build amd64 && gc && !purego

package kernels

import (
	"math"
	"slices"
	"unsafe"
)

// scanRows is how many rows one call of the scan kernels reads before the
// next block of columns: with rows wider than the registers hold (128
// float32 or 64 float64 columns), each block of rows is read once per
// register block while it is in cache.
const scanRows = 256

// scanBlocks splits a rows x d scan into blocks of up to scanRows rows and
// w s columns (s = 8, 4, 2 or 1 vectors of w lanes, the kernels' widths),
// passed to vec, and the last d % w columns of each block of rows, passed
// to tail.
func scanBlocks(rows, d, w int, vec func(r0, nr, c, s int), tail func(r0, nr, c int)) {
	body := d / w * w
	for r0 := 0; r0 < rows; r0 += scanRows {
		nr := min(scanRows, rows-r0)
		c := 0
		for c < body {
			s := 8
			for w*s > body-c {
				s /= 2
			}
			vec(r0, nr, c, s)
			c += w * s
		}
		if c < d {
			tail(r0, nr, c)
		}
	}
}

// The kernels of s = 1, 2, 4 and 8 vectors, at index log2(s).
type (
	rangeKernel[T float32 | float64]                         func(x *T, rows, ld int, lo, hi *T)
	maxAbsBitsKernel[T float32 | float64, U uint32 | uint64] func(x *T, rows, ld int, m *U)
)

var (
	rangeF32 = [4]rangeKernel[float32]{rangeF32AVX512x1, rangeF32AVX512x2, rangeF32AVX512x4, rangeF32AVX512x8}
	rangeF64 = [4]rangeKernel[float64]{rangeF64AVX512x1, rangeF64AVX512x2, rangeF64AVX512x4, rangeF64AVX512x8}

	maxAbsBitsF32 = [4]maxAbsBitsKernel[float32, uint32]{maxAbsBitsF32AVX512x1, maxAbsBitsF32AVX512x2, maxAbsBitsF32AVX512x4, maxAbsBitsF32AVX512x8}
	maxAbsBitsF64 = [4]maxAbsBitsKernel[float64, uint64]{maxAbsBitsF64AVX512x1, maxAbsBitsF64AVX512x2, maxAbsBitsF64AVX512x4, maxAbsBitsF64AVX512x8}
)

// maxAbsBits16Kernels are the 16-bit scans of s = 1, 2, 4 and 8 vectors
// of 32 columns, at index log2(s).
var maxAbsBits16Kernels = [4]func(x *uint16, rows, ld int, m, least *uint16){maxAbsBits16AVX512x1, maxAbsBits16AVX512x2, maxAbsBits16AVX512x4, maxAbsBits16AVX512x8}

// vecIndex is the index of the kernel of s vectors.
var vecIndex = [9]int{1: 0, 2: 1, 4: 2, 8: 3}

// lanes is how many values of x one 512-bit vector holds.
func lanes[T float32 | float64](x []T) int { return 64 / int(unsafe.Sizeof(x[0])) }

func columnRange32(x []float32, d int, lo, hi []float32) { columnRangeAVX512(x, d, lo, hi, &rangeF32) }

func columnRange64(x []float64, d int, lo, hi []float64) { columnRangeAVX512(x, d, lo, hi, &rangeF64) }

func columnMaxAbsBits32(x []float32, d int, m []uint32) {
	columnMaxAbsBitsAVX512(x, d, m, &maxAbsBitsF32)
}

func columnMaxAbsBits64(x []float64, d int, m []uint64) {
	columnMaxAbsBitsAVX512(x, d, m, &maxAbsBitsF64)
}

func columnRangeAVX512[T float32 | float64](x []T, d int, lo, hi []T, kern *[4]rangeKernel[T]) {
	w := lanes(x)
	if level == levelAVX512 && d < w && w%d == 0 && len(x) >= w {
		// Narrow rows, as in columnMaxAbsBitsAVX512: lane c + k d of the
		// kernel's vector ends with column c's range over every w/d-th row.
		var flo, fhi [16]T
		for c := range w {
			flo[c], fhi[c] = lo[c%d], hi[c%d]
		}
		body := len(x) / w * w
		kern[0](&x[0], body/w, w, &flo[0], &fhi[0])
		for c := range d {
			l, h, tie := flo[c], fhi[c], false
			for k := c + d; k < w; k += d {
				l, h = min(l, flo[k]), max(h, fhi[k])
			}
			for k := c; k < w; k += d {
				// Of a zero of either sign the loop keeps the first it
				// meets, which the lanes cannot tell: such a column
				// takes the loop.
				tie = tie || l == 0 && flo[k] == 0 && math.Signbit(float64(flo[k])) != math.Signbit(float64(l)) ||
					h == 0 && fhi[k] == 0 && math.Signbit(float64(fhi[k])) != math.Signbit(float64(h))
			}
			if tie {
				columnRangeGo(x[:body], d, c, c+1, lo, hi)
				continue
			}
			lo[c], hi[c] = l, h
		}
		columnRangeGo(x[body:], d, 0, d, lo, hi)
		return
	}
	if level != levelAVX512 || d < w {
		columnRangeGo(x, d, 0, d, lo, hi)
		return
	}
	scanBlocks(len(x)/d, d, w, func(r0, nr, c, s int) {
		kern[vecIndex[s]](&x[r0*d+c], nr, d, &lo[c], &hi[c])
	}, func(r0, nr, c int) { columnRangeGo(x[r0*d:(r0+nr)*d], d, c, d, lo, hi) })
}

func columnMaxAbsBitsAVX512[T float32 | float64, U uint32 | uint64](x []T, d int, m []U, kern *[4]maxAbsBitsKernel[T, U]) {
	w := lanes(x)
	if level == levelAVX512 && d < w && w%d == 0 && len(x) >= w {
		// Rows narrower than a vector that divide it (d = 8 in poly's
		// problems): the kernel reads x as rows of w values, w/d of x's
		// rows each, and lane c folds into column c % d; a max does not
		// depend on the order it sees the values in.
		var folded [16]U
		for c := range w {
			folded[c] = m[c%d]
		}
		body := len(x) / w * w
		kern[0](&x[0], body/w, w, &folded[0])
		for c := range w {
			m[c%d] = max(m[c%d], folded[c])
		}
		columnMaxAbsBitsGo(x[body:], d, 0, d, m)
		return
	}
	if level != levelAVX512 || d < w {
		columnMaxAbsBitsGo(x, d, 0, d, m)
		return
	}
	scanBlocks(len(x)/d, d, w, func(r0, nr, c, s int) {
		kern[vecIndex[s]](&x[r0*d+c], nr, d, &m[c])
	}, func(r0, nr, c int) { columnMaxAbsBitsGo(x[r0*d:(r0+nr)*d], d, c, d, m) })
}

func columnMaxAbsBits16(x []uint16, d int, colMax []uint16, least uint16) uint16 {
	const w = 32
	if !hasBW || level != levelAVX512 || d < w {
		return columnMaxAbsBits16Go(x, d, 0, d, colMax, least)
	}
	// The kernels keep the least per lane, over all columns.
	var lanes [w]uint16
	for i := range lanes {
		lanes[i] = least
	}
	scanBlocks(len(x)/d, d, w, func(r0, nr, c, s int) {
		maxAbsBits16Kernels[vecIndex[s]](&x[r0*d+c], nr, d, &colMax[c], &lanes[0])
	}, func(r0, nr, c int) { least = columnMaxAbsBits16Go(x[r0*d:(r0+nr)*d], d, c, d, colMax, least) })
	return min(least, slices.Min(lanes[:]))
}
