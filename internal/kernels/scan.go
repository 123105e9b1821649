package kernels

import "unsafe"

// ColumnRange32 widens lo[c] and hi[c] (c < d) to hold x[r*d + c] for
// every row r of x (rows of d values): the bounding box of a set of keys.
// NaNs are ignored. lo and hi have at least d entries.
func ColumnRange32(x []float32, d int, lo, hi []float32) {
	if d > 0 && len(x) >= d {
		columnRange32(x[:len(x)/d*d], d, lo[:d], hi[:d])
	}
}

// ColumnRange64 is ColumnRange32 for float64.
func ColumnRange64(x []float64, d int, lo, hi []float64) {
	if d > 0 && len(x) >= d {
		columnRange64(x[:len(x)/d*d], d, lo[:d], hi[:d])
	}
}

// ColumnMaxAbsBits32 raises m[c] (c < d) to the bits of |x[r*d + c]| for
// every row r of x: unsigned, their order is that of the magnitudes, and a
// NaN compares above Inf. m has at least d entries.
func ColumnMaxAbsBits32(x []float32, d int, m []uint32) {
	if d > 0 && len(x) >= d {
		columnMaxAbsBits32(x[:len(x)/d*d], d, m[:d])
	}
}

// ColumnMaxAbsBits64 is ColumnMaxAbsBits32 for float64.
func ColumnMaxAbsBits64(x []float64, d int, m []uint64) {
	if d > 0 && len(x) >= d {
		columnMaxAbsBits64(x[:len(x)/d*d], d, m[:d])
	}
}

// ColumnMaxAbsBits16 is ColumnMaxAbsBits32 for 16-bit floating-point
// values given as their bits (bfloat16 or IEEE half precision: in both,
// the bits without the sign order as the magnitudes, NaN above Inf). It
// also returns the least of least and every value's magnitude bits minus
// 1, wrapping, so that zeros do not count: for bfloat16 a result below
// 0x7f means a subnormal number among the values (the AMX path's check).
func ColumnMaxAbsBits16(x []uint16, d int, colMax []uint16, least uint16) uint16 {
	if d <= 0 || len(x) < d {
		return least
	}
	return columnMaxAbsBits16(x[:len(x)/d*d], d, colMax[:d], least)
}

// columnMaxAbsBits16Go is ColumnMaxAbsBits16 on columns c0..c1-1.
func columnMaxAbsBits16Go(x []uint16, d, c0, c1 int, colMax []uint16, least uint16) uint16 {
	for j := 0; j+d <= len(x); j += d {
		row, cm := x[j+c0:j+c1], colMax[c0:c1]
		cm = cm[:len(row)]
		for c, v := range row {
			a := v & 0x7fff
			cm[c] = max(cm[c], a)
			least = min(least, a-1)
		}
	}
	return least
}

// columnRangeGo is ColumnRange32 or 64 on columns c0..c1-1.
func columnRangeGo[T float32 | float64](x []T, d, c0, c1 int, lo, hi []T) {
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

// columnMaxAbsBitsGo is ColumnMaxAbsBits32 or 64 on columns c0..c1-1. U
// has T's size (the callers pair float32 with uint32, float64 with
// uint64), so x read as U is the floats' bits.
func columnMaxAbsBitsGo[T float32 | float64, U uint32 | uint64](x []T, d, c0, c1 int, m []U) {
	xb := unsafe.Slice((*U)(unsafe.Pointer(unsafe.SliceData(x))), len(x))
	noSign := ^U(0) >> 1
	for j := 0; j+d <= len(xb); j += d {
		row, mm := xb[j+c0:j+c1], m[c0:c1]
		mm = mm[:len(row)]
		for c, v := range row {
			if b := v & noSign; b > mm[c] {
				mm[c] = b
			}
		}
	}
}
