package exact

import (
	"math"

	"github.com/fastattn/fastattn/attn"
)

// DecodeBound is the a priori entrywise bound of a Decoder step in
// element type T, relative to max_l |V_lj| as Forward's: rows of at most l
// keys whose logits are at most b in magnitude, b = s max_i sum_t |q_it|
// max_j |k_jt| over the keys as stored (the Decoder does not centre them),
// and colMax the value columns' largest magnitudes. It is Forward's
// rounding bound (see bound.go) with the Decoder's float64 steps: per key
// tile an accumulation and a rescale, the merge of at most l/keyTile + 1
// split-K chunks, the sink and the division, at most 3 l/keyTile + 8
// roundings of float64 (3 l + 8 with float64 inputs, summed in place).
// The Decoder does not scale values, so a value column outside the range
// where unscaled sums stay finite and accurate gives +Inf (NaN: NaN).
func DecodeBound[T attn.Float](b float64, d, l int, colMax []float64) float64 {
	lo, hi := valueLo64, valueHi64
	if u, _ := unitOf[T](); u != u64 {
		lo, hi = valueLo32, valueHi32
	}
	for _, m := range colMax {
		if math.IsNaN(m) {
			return m
		}
		if m > 0 && (m < lo || m > hi) {
			return math.Inf(1)
		}
	}
	if l <= 0 {
		return 0
	}
	return roundingBound[T](b, d, 3*l+4*keyTile)
}
