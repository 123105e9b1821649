package check

import (
	"context"
	"math"
	"math/rand/v2"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/exact"
	"github.com/fastattn/fastattn/internal/reference"
)

// GradResult is what a gradient check measured: for each of dQ, dK and dV
//
//	max |G - G_exact| / max(max |G_exact|, max |G|)
//
// over the sampled rows, the error relative to the gradient's largest
// entry there (the larger of the two, so the figure is finite and at most
// 2 however wrong G is).
type GradResult struct {
	DQ, DK, DV float64
	// Heads are the heads checked; QueryRows and KeyRows the rows sampled
	// in each (dQ on query rows, dK and dV on key rows).
	Heads              []int
	QueryRows, KeyRows int
}

// Gradient measures g against the exact gradient on up to heads heads and
// rows query and key rows of each, chosen by Heads, QueryRows and KeyRows
// (so the keys with the largest value and the farthest key are always
// among them). The exact gradient of a head comes from a float64 problem
// whose keys are shifted by their mean (softmax and the gradient do not
// change; the rounding of the logits does): an exact forward pass for the
// rows' log-sum-exps and outputs, then the reference formulas.
func Gradient[T attn.Float](ctx context.Context, p *attn.Problem[T], dO []T, g *attn.Gradients[T], heads, rows int) (GradResult, error) {
	r := rand.New(rand.NewPCG(uint64(p.Heads*p.N), uint64(p.M)))
	res := GradResult{Heads: Heads(p.Heads, heads)}
	var errs, sizes [3]float64
	add := func(x int, got, want []float64) {
		for i, w := range want {
			errs[x] = max(errs[x], math.Abs(got[i]-w))
			sizes[x] = max(sizes[x], math.Abs(got[i]), math.Abs(w))
		}
	}
	for _, h := range res.Heads {
		kh := p.KVHead(h)
		qRows := QueryRows(p, h, rows, r)
		kRows := KeyRows(p, h, rows, r)
		res.QueryRows, res.KeyRows = len(qRows), len(kRows)
		// dK and dV of a key sum over the query heads sharing its
		// key/value head (grouped-query attention).
		dk := make([]float64, len(kRows)*p.D)
		dv := make([]float64, len(kRows)*p.E)
		for hh := kh * p.Group(); hh < (kh+1)*p.Group(); hh++ {
			sub, dO64 := CentredHead(p, dO, hh)
			out := attn.NewOutput(sub)
			if _, err := (exact.Method{}).Forward64(ctx, sub, out); err != nil {
				return res, err
			}
			if hh == h {
				add(0, rowsOf(g.DQ[h*p.N*p.D:], p.D, qRows), reference.GradientQueryRows(sub, dO64, 0, qRows))
			}
			k1, v1 := reference.GradientKeyRows(sub, dO64, 0, out.LSE, out.O, kRows)
			for i := range dk {
				dk[i] += k1[i]
			}
			for i := range dv {
				dv[i] += v1[i]
			}
		}
		add(1, rowsOf(g.DK[kh*p.M*p.D:], p.D, kRows), dk)
		add(2, rowsOf(g.DV[kh*p.M*p.E:], p.E, kRows), dv)
	}
	rel := func(x int) float64 {
		if errs[x] == 0 {
			return 0
		}
		return errs[x] / sizes[x]
	}
	res.DQ, res.DK, res.DV = rel(0), rel(1), rel(2)
	return res, nil
}

// CentredHead copies query head h of p (with its key/value head, options
// and dO) to a one-head float64 problem whose valid keys are shifted by
// their mean.
func CentredHead[T attn.Float](p *attn.Problem[T], dO []T, h int) (*attn.Problem[float64], []float64) {
	conv := func(x []T) []float64 {
		y := make([]float64, len(x))
		for i, v := range x {
			y[i] = float64(v)
		}
		return y
	}
	kh := p.KVHead(h)
	sub := &attn.Problem[float64]{
		Heads: 1, N: p.N, M: p.M, D: p.D, E: p.E,
		Q:     conv(p.Q[h*p.N*p.D : (h+1)*p.N*p.D]),
		K:     conv(p.K[kh*p.M*p.D : (kh+1)*p.M*p.D]),
		V:     conv(p.V[kh*p.M*p.E : (kh+1)*p.M*p.E]),
		Scale: p.Scale, Causal: p.Causal, CausalAlign: p.CausalAlign, Window: p.Window,
		Eps: p.Eps,
	}
	if p.KeyLens != nil {
		sub.KeyLens = []int{p.KeyLens[h]}
	}
	if p.Mask != nil {
		sub.Mask = p.Mask.Heads(h, 1)
	}
	if len(p.Sinks) > 0 {
		sub.Sinks = []float64{p.Sink(h)}
	}
	mu := KeyMean(p, h)
	for j := range p.KeyLen(h) {
		for t := range p.D {
			sub.K[j*p.D+t] -= mu[t]
		}
	}
	return sub, conv(dO[h*p.N*p.E : (h+1)*p.N*p.E])
}

// rowsOf gathers rows of a row-major matrix with the given row length.
func rowsOf[T attn.Float](x []T, cols int, rows []int) []float64 {
	out := make([]float64, 0, len(rows)*cols)
	for _, i := range rows {
		for _, v := range x[i*cols : (i+1)*cols] {
			out = append(out, float64(v))
		}
	}
	return out
}
