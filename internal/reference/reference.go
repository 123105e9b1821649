// Package reference computes attention the obvious way, in float64, one row
// at a time with a stable log-sum-exp. It is the trusted oracle of the tests
// and of the command line's demo: slow, simple, and easy to check by eye.
//
// Every option of attn.Problem is honoured: grouped key/value heads, the
// key range of padding, the causal mask (either alignment) and the window,
// a mask tensor and attention sinks:
//
//	l_ij = s q_i.k_j + mask_ij,  out_i = sum_j e^{l_ij} v_j / (e^{sink_h} + sum_j e^{l_ij}),
//	LSE_i = log(e^{sink_h} + sum_j e^{l_ij})
//
// over the keys j of KeyRange(h, i).
package reference

import (
	"math"

	"github.com/fastattn/fastattn/attn"
)

// Attention returns O (heads*n*e) and LSE (heads*n) for p, computed in
// float64 from p's values whatever their type. Rows with no valid key get a
// zero output row and LSE = -Inf (or the sink, with a sink).
func Attention[T attn.Float](p *attn.Problem[T]) (o, lse []float64) {
	o = make([]float64, p.Heads*p.N*p.E)
	lse = make([]float64, p.Heads*p.N)
	for h := range p.Heads {
		for i := range p.N {
			Row(p, h, i, o[(h*p.N+i)*p.E:(h*p.N+i+1)*p.E], &lse[h*p.N+i])
		}
	}
	return o, lse
}

// Rows is Attention for a subset of rows of head h: out is len(rows)*e.
func Rows[T attn.Float](p *attn.Problem[T], h int, rows []int) (o, lse []float64) {
	o = make([]float64, len(rows)*p.E)
	lse = make([]float64, len(rows))
	for r, i := range rows {
		Row(p, h, i, o[r*p.E:(r+1)*p.E], &lse[r])
	}
	return o, lse
}

// Logits returns the first key of row i of query head h's range and the
// row's logits s q_i.k_j + mask_ij over that range (-Inf where the mask
// excludes a key).
func Logits[T attn.Float](p *attn.Problem[T], h, i int) (lo int, logits []float64) {
	lo, hi := p.KeyRange(h, i)
	q := p.Q[(h*p.N+i)*p.D : (h*p.N+i+1)*p.D]
	kh := p.KVHead(h)
	logits = make([]float64, hi-lo)
	k := make([]float64, p.D)
	for j := lo; j < hi; j++ {
		p.Key(kh, j, k)
		var s float64
		for t := range q {
			s += float64(q[t]) * k[t]
		}
		logits[j-lo] = p.Scale * s
		if p.Mask != nil {
			logits[j-lo] += p.Mask.Logit(h, i, j)
		}
	}
	return lo, logits
}

// Probabilities returns the first key of row i's range and the softmax
// weights P_ij over that range, the sink's weight, and the row's LSE.
// Without any key or sink the weights are zero and the LSE -Inf.
func Probabilities[T attn.Float](p *attn.Problem[T], h, i int) (lo int, pr []float64, sink, lse float64) {
	lo, pr = Logits(p, h, i)
	mx := p.Sink(h)
	for _, x := range pr {
		mx = max(mx, x)
	}
	if math.IsInf(mx, -1) {
		clear(pr)
		return lo, pr, 0, mx
	}
	sum := math.Exp(p.Sink(h) - mx)
	for j, x := range pr {
		pr[j] = math.Exp(x - mx)
		sum += pr[j]
	}
	for j := range pr {
		pr[j] /= sum
	}
	return lo, pr, math.Exp(p.Sink(h)-mx) / sum, mx + math.Log(sum)
}

// Row computes output row i of head h into out (length e) and its LSE.
func Row[T attn.Float](p *attn.Problem[T], h, i int, out []float64, lse *float64) {
	clear(out)
	lo, pr, _, l := Probabilities(p, h, i)
	*lse = l
	kh := p.KVHead(h)
	v := make([]float64, p.E)
	for j, w := range pr {
		if w == 0 {
			continue
		}
		p.Value(kh, lo+j, v)
		for c := range out {
			out[c] += w * v[c]
		}
	}
}
