// Package sinkshift bounds what an attention sink costs a method that
// centres the keys. Softmax ignores a constant added to a row's logits, so
// a method may compute them on keys shifted by a centre c, q.(k_j - c),
// with the same weights; the sink's logit is given, not computed, so it
// must be shifted too, by s q_i.c (or the row's log-sum-exp brought back
// by it). That shift is as large as the keys' offset (1e4 in the example
// that found this), and its float64 rounding moves the balance between
// the keys and the sink by far more than the other roundings of a float64
// row.
package sinkshift

import (
	"math"

	"github.com/fastattn/fastattn/attn"
)

// Bound returns the part of an error bound (relative to max_l |V_lj|, as
// attn.Stats.ErrorBound) that the sink of query head h of p costs when
// the keys are centred on c (nil: not centred, no cost): with logSum(i)
// the largest magnitude of row i's log-sum-exp in the centred frame (nil:
// 0), the row's log-sum-exp relative to the sink is off by at most
//
//	delta_i = gamma_64(d + 5) (s sum_t |q_it c_t| + logSum(i) + |sink|)
//
// (the dot product's d roundings, the product by s, the additions), and
// the output, which is the keys' share a of the row's weight times their
// weighted values, moves by at most a (1 - a) (e^delta - 1) e^delta
// max_l |V_lj|: a quarter of it, at most.
func Bound[T attn.Float](p *attn.Problem[T], h int, c []float64, logSum func(i int) float64) float64 {
	sink := p.Sink(h)
	if c == nil || math.IsInf(sink, -1) {
		return 0
	}
	const u = 0x1p-53
	n := float64(p.D + 5)
	gamma := n * u / (1 - n*u)
	var delta float64
	for i := range p.N {
		var x float64
		for t, q := range p.Q[(h*p.N+i)*p.D : (h*p.N+i+1)*p.D] {
			x += math.Abs(float64(q) * c[t])
		}
		x = p.Scale*x + math.Abs(sink)
		if logSum != nil {
			x += logSum(i)
		}
		delta = max(delta, gamma*x)
	}
	return math.Expm1(delta) * math.Exp(delta) / 4
}
