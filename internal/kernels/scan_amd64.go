//go:build amd64 && gc && !purego

package kernels

// scanRows is how many rows one call of the scan kernels reads before the
// next block of columns: with rows wider than the registers hold (128
// columns), each block of rows is read once per 128 columns while it is
// in cache.
const scanRows = 256

func columnRange32(x []float32, d int, lo, hi []float32) {
	if level != levelAVX512 || d < 16 {
		columnRangeGo(x, d, 0, d, lo, hi)
		return
	}
	rows := len(x) / d
	for r0 := 0; r0 < rows; r0 += scanRows {
		nr := min(scanRows, rows-r0)
		c := 0
		for c < d&^15 {
			p, l, h := &x[r0*d+c], &lo[c], &hi[c]
			switch w := (d &^ 15) - c; {
			case w >= 128:
				rangeF32AVX512x8(p, nr, d, l, h)
				c += 128
			case w >= 64:
				rangeF32AVX512x4(p, nr, d, l, h)
				c += 64
			case w >= 32:
				rangeF32AVX512x2(p, nr, d, l, h)
				c += 32
			default:
				rangeF32AVX512x1(p, nr, d, l, h)
				c += 16
			}
		}
		if c < d {
			columnRangeGo(x[r0*d:(r0+nr)*d], d, c, d, lo, hi)
		}
	}
}

func columnMaxAbsBits32(x []float32, d int, m []uint32) {
	if level != levelAVX512 || d < 16 {
		columnMaxAbsBitsGo(x, d, 0, d, m)
		return
	}
	rows := len(x) / d
	for r0 := 0; r0 < rows; r0 += scanRows {
		nr := min(scanRows, rows-r0)
		c := 0
		for c < d&^15 {
			p, mm := &x[r0*d+c], &m[c]
			switch w := (d &^ 15) - c; {
			case w >= 128:
				maxAbsBitsF32AVX512x8(p, nr, d, mm)
				c += 128
			case w >= 64:
				maxAbsBitsF32AVX512x4(p, nr, d, mm)
				c += 64
			case w >= 32:
				maxAbsBitsF32AVX512x2(p, nr, d, mm)
				c += 32
			default:
				maxAbsBitsF32AVX512x1(p, nr, d, mm)
				c += 16
			}
		}
		if c < d {
			columnMaxAbsBitsGo(x[r0*d:(r0+nr)*d], d, c, d, m)
		}
	}
}
