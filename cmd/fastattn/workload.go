package main

import (
	"context"
	"math"
	"math/rand/v2"

	"github.com/fastattn/fastattn"
	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/check"
)

// workload is a generated attention input: Gaussian Q, K, V with the given
// entry scales, laid out (heads, n, d).
type workload struct {
	heads, n, m, d, e int
	qkScale           float64 // standard deviation of Q and K entries (0 means 1)
	// uniform, if set, draws Q and K entries uniformly from [-qkScale, qkScale].
	uniform bool
	seed    uint64
}

func (w workload) tensors32() (q, k, v fastattn.Tensor[float32]) {
	q64, k64, v64 := w.tensors64()
	return to32(q64), to32(k64), to32(v64)
}

func (w workload) tensors64() (q, k, v fastattn.Tensor[float64]) {
	r := rand.New(rand.NewPCG(w.seed, 17))
	gen := func(rows, cols int, s float64, uniform bool) fastattn.Tensor[float64] {
		x := make([]float64, w.heads*rows*cols)
		for i := range x {
			if uniform {
				x[i] = s * (2*r.Float64() - 1)
			} else {
				x[i] = s * r.NormFloat64()
			}
		}
		return fastattn.Tensor[float64]{Data: x, Shape: []int{w.heads, rows, cols}}
	}
	s := w.qkScale
	if s == 0 {
		s = 1
	}
	return gen(w.n, w.d, s, w.uniform), gen(w.m, w.d, s, w.uniform), gen(w.m, w.e, 1, false)
}

func to32(t fastattn.Tensor[float64]) fastattn.Tensor[float32] {
	x := make([]float32, len(t.Data))
	for i, v := range t.Data {
		x[i] = float32(v)
	}
	return fastattn.Tensor[float32]{Data: x, Shape: t.Shape}
}

// sampledError compares rows of a result with internal/check's accurate
// reference on samples rows per head (its sampling rule) and returns the largest
// |T_ij - Att_ij| / max_l |V_lj|: the quantity the error contract bounds.
func sampledError[T fastattn.Float](q, k, v fastattn.Tensor[T], opts fastattn.Options, out []T, samples int) float64 {
	heads, n, d := q.Shape[0], q.Shape[1], q.Shape[2]
	m, e := k.Shape[1], v.Shape[2]
	p := &attn.Problem[T]{Heads: heads, N: n, M: m, D: d, E: e, Q: q.Data, K: k.Data, V: v.Data,
		Scale: opts.Scale, Causal: opts.Causal}
	if p.Scale == 0 {
		p.Scale = 1 / math.Sqrt(float64(d))
	}
	// No bound to hold it to here: the caller prints the figure next to
	// the method's bound.
	res, _ := check.Forward(p, &attn.Output[T]{O: out}, math.Inf(1), samples*heads)
	return res.Observed
}

// attendTimed runs Attend reps times and returns the fastest run's result.
func attendTimed[T fastattn.Float](ctx context.Context, q, k, v fastattn.Tensor[T], opts fastattn.Options, reps int) (*fastattn.Result[T], error) {
	var best *fastattn.Result[T]
	for range max(reps, 1) {
		res, err := fastattn.Attend(ctx, q, k, v, opts)
		if err != nil {
			return nil, err
		}
		if best == nil || res.Report.Seconds < best.Report.Seconds {
			best = res
		}
	}
	return best, nil
}

// fastattnTensor wraps a flat float64 slice for to32.
func fastattnTensor(x []float64) fastattn.Tensor[float64] {
	return fastattn.Tensor[float64]{Data: x, Shape: []int{len(x)}}
}
