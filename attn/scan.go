package attn

import (
	"math"
	"slices"
	"unsafe"

	"github.com/fastattn/fastattn/internal/kernels"
)

// Scans of keys and values that certified calls make before computing
// (exact attention's key ranges, every method's value column maxima).
// They read every valid key and value once per call, so they are written
// to run at memory speed: native comparisons without NaN handling (the
// kernels check finiteness as they read; a NaN makes MaxAbsRows' result
// NaN), no conversions in the inner loops, and AVX-512 kernels for both
// float32 and float64 (package kernels).

// MaxAbsRows raises acc[c] to max_l |x_lc| over the rows of x, each of
// len(acc) values. A NaN among them makes acc[c] NaN.
func MaxAbsRows[T Float](x []T, acc []float64) {
	e := len(acc)
	if e == 0 || len(x) == 0 {
		return
	}
	x32, x64 := floats(x)
	switch {
	case x32 != nil:
		// |x| as the bits without the sign: for finite values and Inf their
		// order is that of the magnitudes, and NaNs compare above Inf.
		m := make([]uint32, e)
		kernels.ColumnMaxAbsBits32(x32, e, m)
		for c, b := range m {
			acc[c] = max(acc[c], float64(math.Float32frombits(b)))
		}
	default:
		m := make([]uint64, e)
		kernels.ColumnMaxAbsBits64(x64, e, m)
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
	x32, x64 := floats(x)
	if x32 != nil {
		l, h := slices.Clone(x32[:d]), slices.Clone(x32[:d])
		kernels.ColumnRange32(x32, d, l, h)
		widen(lo, hi, l, h)
		return
	}
	l, h := slices.Clone(x64[:d]), slices.Clone(x64[:d])
	kernels.ColumnRange64(x64, d, l, h)
	widen(lo, hi, l, h)
}

// floats returns x as a slice of its underlying type, float32 or float64
// (the other result nil), for the kernels: a type defined on float32 or
// float64 has its layout.
func floats[T Float](x []T) ([]float32, []float64) {
	p := unsafe.Pointer(unsafe.SliceData(x))
	if unsafe.Sizeof(T(0)) == 4 {
		return unsafe.Slice((*float32)(p), len(x)), nil
	}
	return nil, unsafe.Slice((*float64)(p), len(x))
}

// widen widens [lo[t], hi[t]] to hold [l[t], h[t]].
func widen[T Float](lo, hi []float64, l, h []T) {
	for t := range lo {
		lo[t] = min(lo[t], float64(l[t]))
		hi[t] = max(hi[t], float64(h[t]))
	}
}
