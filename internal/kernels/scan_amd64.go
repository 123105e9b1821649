//go:build amd64 && gc && !purego

package kernels

// scanRows is how many rows one call of the scan kernels reads before the
// next block of columns: with rows wider than the registers hold (128
// columns), each block of rows is read once per 128 columns while it is
// in cache.
const scanRows = 256

// scanBlocks splits a rows x d scan into blocks of up to scanRows rows and
// 16 s columns (s = 8, 4, 2 or 1 vectors, the kernels' widths), passed to
// vec, and the last d % 16 columns of each block of rows, passed to tail.
func scanBlocks(rows, d int, vec func(r0, nr, c, s int), tail func(r0, nr, c int)) {
	body := d &^ 15
	for r0 := 0; r0 < rows; r0 += scanRows {
		nr := min(scanRows, rows-r0)
		c := 0
		for c < body {
			s := 8
			for 16*s > body-c {
				s /= 2
			}
			vec(r0, nr, c, s)
			c += 16 * s
		}
		if c < d {
			tail(r0, nr, c)
		}
	}
}

func columnRange32(x []float32, d int, lo, hi []float32) {
	if level != levelAVX512 || d < 16 {
		columnRangeGo(x, d, 0, d, lo, hi)
		return
	}
	scanBlocks(len(x)/d, d, func(r0, nr, c, s int) {
		p, l, h := &x[r0*d+c], &lo[c], &hi[c]
		switch s {
		case 8:
			rangeF32AVX512x8(p, nr, d, l, h)
		case 4:
			rangeF32AVX512x4(p, nr, d, l, h)
		case 2:
			rangeF32AVX512x2(p, nr, d, l, h)
		default:
			rangeF32AVX512x1(p, nr, d, l, h)
		}
	}, func(r0, nr, c int) { columnRangeGo(x[r0*d:(r0+nr)*d], d, c, d, lo, hi) })
}

func columnMaxAbsBits32(x []float32, d int, m []uint32) {
	if level != levelAVX512 || d < 16 {
		columnMaxAbsBitsGo(x, d, 0, d, m)
		return
	}
	scanBlocks(len(x)/d, d, func(r0, nr, c, s int) {
		p, mm := &x[r0*d+c], &m[c]
		switch s {
		case 8:
			maxAbsBitsF32AVX512x8(p, nr, d, mm)
		case 4:
			maxAbsBitsF32AVX512x4(p, nr, d, mm)
		case 2:
			maxAbsBitsF32AVX512x2(p, nr, d, mm)
		default:
			maxAbsBitsF32AVX512x1(p, nr, d, mm)
		}
	}, func(r0, nr, c int) { columnMaxAbsBitsGo(x[r0*d:(r0+nr)*d], d, c, d, m) })
}
