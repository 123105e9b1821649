package kernels

import "math"

// ColumnRange32 widens lo[c] and hi[c] (c < d) to hold x[r*d + c] for
// every row r of x (rows of d values): the bounding box of a set of keys.
// NaNs are ignored. lo and hi have at least d entries.
func ColumnRange32(x []float32, d int, lo, hi []float32) {
	if d <= 0 || len(x) < d {
		return
	}
	columnRange32(x[:len(x)/d*d], d, lo[:d], hi[:d])
}

// ColumnMaxAbsBits32 raises m[c] (c < d) to the bits of |x[r*d + c]| for
// every row r of x: unsigned, their order is that of the magnitudes, and a
// NaN compares above Inf. m has at least d entries.
func ColumnMaxAbsBits32(x []float32, d int, m []uint32) {
	if d <= 0 || len(x) < d {
		return
	}
	columnMaxAbsBits32(x[:len(x)/d*d], d, m[:d])
}

// columnRangeGo is ColumnRange32 on columns c0..c1-1.
func columnRangeGo(x []float32, d, c0, c1 int, lo, hi []float32) {
	for j := 0; j+d <= len(x); j += d {
		row, l, h := x[j+c0:j+c1], lo[c0:c1], hi[c0:c1]
		h = h[:len(row)]
		l = l[:len(row)]
		// Comparisons rather than min and max, whose NaN handling doubles
		// the cost; they are rarely true, so they predict well.
		for t, v := range row {
			if v < l[t] {
				l[t] = v
			}
			if v > h[t] {
				h[t] = v
			}
		}
	}
}

// columnMaxAbsBitsGo is ColumnMaxAbsBits32 on columns c0..c1-1.
func columnMaxAbsBitsGo(x []float32, d, c0, c1 int, m []uint32) {
	for j := 0; j+d <= len(x); j += d {
		row, mm := x[j+c0:j+c1], m[c0:c1]
		mm = mm[:len(row)]
		for c, v := range row {
			if b := math.Float32bits(v) &^ (1 << 31); b > mm[c] {
				mm[c] = b
			}
		}
	}
}
