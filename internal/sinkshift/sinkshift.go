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
// the keys are centred on c (nil: not centred, no cost): Cost of the
// largest Delta over the head's rows, with logSum(i) the largest magnitude
// of row i's log-sum-exp in the centred frame (nil: 0).
func Bound[T attn.Float](p *attn.Problem[T], h int, c []float64, logSum func(i int) float64) float64 {
	sink := p.Sink(h)
	if c == nil || math.IsInf(sink, -1) {
		return 0
	}
	var delta float64
	for i := range p.N {
		var l float64
		if logSum != nil {
			l = logSum(i)
		}
		delta = max(delta, Delta(p.Q[(h*p.N+i)*p.D:(h*p.N+i+1)*p.D], c, p.Scale, sink, l))
	}
	return Cost(delta)
}

// Delta bounds how far a row's log-sum-exp relative to its sink is off
// when the row's logits are computed on keys centred on c and the sink is
// brought in by s q.c (computed with accurate.ScaledDot): with logSum the
// largest magnitude of the row's log-sum-exp in the centred frame,
//
//	delta = err + gamma_64(8) (|s q.c| + logSum + |sink| + 1)
//
// (err the shift's own, ShiftBound; the sink's subtraction of it, the
// exponential's argument and the exponential itself).
func Delta[T attn.Float](q []T, c []float64, scale, sink, logSum float64) float64 {
	mag, err := ShiftBound(q, c, scale)
	return err + gamma(8)*(mag+logSum+math.Abs(sink)+1)
}

// ShiftBound bounds the shift s q.c that every method computes with
// accurate.ScaledDot (compensated): mag >= |s q.c|, and err bounds that
// computation's error, 2u mag + 2 gamma_d^2 |s| sum_t |q_t c_t|; 0 and 0
// for c nil (keys not centred). (A plain float64 sum is within only
// gamma_(d+1) |s| sum_t |q_t c_t|: with keys offset by 1e7 and queries
// almost orthogonal to the offset, log-sum-exps of a few units were off by
// 3.2e-9 that way.) The bounds need no compensated sum themselves: mag is
// a plain sum's magnitude plus that sum's own error bound, in one pass.
// (lsebound.Bound over 16384 centred rows of d = 128 took 1.5 ms on two
// cores this way, 4.2 ms with the compensated sum in its pass.)
func ShiftBound[T attn.Float](q []T, c []float64, scale float64) (mag, err float64) {
	if c == nil {
		return 0, 0
	}
	var dot, a float64
	for t, v := range q {
		x := float64(v) * c[t]
		dot += x
		a += math.Abs(x)
	}
	// a, a sum of d terms of one sign, is itself within gamma_d of exact.
	g := gamma(len(q) + 1)
	a *= math.Abs(scale) * (1 + g)
	mag = math.Abs(scale*dot) + 2*g*a
	gd := gamma(len(q))
	return mag, 2*u*mag + 2*gd*gd*a
}

const u = 0x1p-53

func gamma(n int) float64 { return float64(n) * u / (1 - float64(n)*u) }

// Cost is what a sink logit off by at most delta costs a row's output,
// relative to max_l |V_lj|: the output is the keys' share a of the row's
// weight times their weighted values, and a moves by at most
// a (1 - a) (e^delta - 1) e^delta, a quarter of (e^delta - 1) e^delta.
func Cost(delta float64) float64 {
	return math.Expm1(delta) * math.Exp(delta) / 4
}
