package attn

import (
	"math"

	"github.com/fastattn/fastattn/internal/kernels"
)

// Scans of keys and values that certified calls make before computing
// (exact attention's key ranges, every method's value column maxima).
// They read every valid key and value once per call, so they are written
// to run at memory speed: native comparisons without NaN handling (the
// kernels check finiteness as they read; a NaN makes MaxAbsRows' result
// NaN), no conversions in the inner loops, and AVX-512 kernels for
// float32 (package kernels).

// MaxAbsRows raises acc[c] to max_l |x_lc| over the rows of x, each of
// len(acc) values. A NaN among them makes acc[c] NaN.
func MaxAbsRows[T Float](x []T, acc []float64) {
	e := len(acc)
	if e == 0 || len(x) == 0 {
		return
	}
	switch x := any(x).(type) {
	case []float32:
		// |x| as the bits without the sign: for finite values and Inf their
		// order is that of the magnitudes, and NaNs compare above Inf.
		m := make([]uint32, e)
		kernels.ColumnMaxAbsBits32(x, e, m)
		for c, b := range m {
			acc[c] = max(acc[c], float64(math.Float32frombits(b)))
		}
	case []float64:
		m := make([]uint64, e)
		for l := 0; l+e <= len(x); l += e {
			row, m := x[l:l+e], m[:e]
			for c, v := range row {
				if b := math.Float64bits(v) &^ (1 << 63); b > m[c] {
					m[c] = b
				}
			}
		}
		for c, b := range m {
			acc[c] = max(acc[c], math.Float64frombits(b))
		}
	}
}

// RowRange widens [lo[t], hi[t]] to hold every row of x (rows of len(lo)
// values): the bounding box of a set of keys. NaNs are ignored.
func RowRange[T Float](x []T, lo, hi []float64) {
	d := len(lo)
	if d == 0 || len(x) < d {
		return
	}
	if x, ok := any(x).([]float32); ok {
		l, h := make([]float32, d), make([]float32, d)
		copy(l, x[:d])
		copy(h, x[:d])
		kernels.ColumnRange32(x, d, l, h)
		for t := range d {
			lo[t] = min(lo[t], float64(l[t]))
			hi[t] = max(hi[t], float64(h[t]))
		}
		return
	}
	l, h := make([]T, d), make([]T, d)
	copy(l, x[:d])
	copy(h, x[:d])
	for j := d; j+d <= len(x); j += d {
		row, l, h := x[j:j+d], l[:d], h[:d]
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
	for t := range d {
		lo[t] = min(lo[t], float64(l[t]))
		hi[t] = max(hi[t], float64(h[t]))
	}
}
