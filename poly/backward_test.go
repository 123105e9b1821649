package poly

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
	"github.com/fastattn/fastattn/internal/reference"
)

// lossOf returns sum(dO * T) for the poly forward on p.
func lossOf(t *testing.T, p *attn.Problem[float64], dO []float64) float64 {
	out := attn.NewOutput(p)
	if _, err := (Method{SampleRows: -1}).Forward64(context.Background(), p, out); err != nil {
		t.Fatal(err)
	}
	var l float64
	for i, x := range out.O {
		l += dO[i] * x
	}
	return l
}

// TestBackwardFiniteDifferences checks the backward pass against central
// differences of the poly forward itself (with the key centre held fixed,
// as the gradient does), on non-causal, causal (several key blocks, so
// prefix and suffix sums are exercised), padded and batched inputs.
func TestBackwardFiniteDifferences(t *testing.T) {
	cases := []attntest.Case{
		{Name: "plain", Heads: 1, N: 9, M: 13, D: 3, E: 2, QScale: 0.5, KScale: 0.5},
		{Name: "causal-blocks", Heads: 1, N: 300, M: 600, D: 2, E: 2, Causal: true, QScale: 0.5, KScale: 0.5},
		{Name: "padding", Heads: 2, N: 6, M: 10, D: 3, E: 3, KeyLens: []int{7, 0}, QScale: 0.5, KScale: 0.5},
		{Name: "cross", Heads: 1, N: 4, M: 300, D: 4, E: 1, QScale: 0.4, KScale: 0.4},
		{Name: "gqa-sinks", Heads: 4, KVHeads: 2, N: 5, M: 9, D: 3, E: 2, Sinks: []float64{0.5, -1, 2, 0}, QScale: 0.5, KScale: 0.5},
		{Name: "mqa-causal-sinks", Heads: 3, KVHeads: 1, N: 300, M: 600, D: 2, E: 2, Causal: true, Sinks: []float64{1, -2, 0.3}, QScale: 0.5, KScale: 0.5},
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) { checkFiniteDifferences(t, c) })
	}
}

// checkFiniteDifferences checks poly's backward pass on case c against
// central differences of its forward, on the polynomial path with the key
// centre held fixed.
func checkFiniteDifferences(t *testing.T, c attntest.Case) {
	t.Helper()
	p := c.Generate(3)
	p.Eps = 1e-4
	testCentre = make([]float64, p.D)
	for t := range p.D {
		testCentre[t] = 0.1 * float64(t+1)
	}
	testNoExactRows, testForwardBump = true, 1
	defer func() { testCentre, testNoExactRows, testForwardBump = nil, false, 0 }()
	dO := attntest.GradOutput(p, 4)
	g := attn.NewGradients(p)
	if _, err := (Method{}).Backward64(context.Background(), p, attn.NewOutput(p), dO, g); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(5, 6))
	ins := []struct {
		name string
		x    []float64
		grad []float64
	}{{"Q", p.Q, g.DQ}, {"K", p.K, g.DK}, {"V", p.V, g.DV}}
	if p.Sinks != nil {
		ins = append(ins, ins[0])
		ins[3].name, ins[3].x, ins[3].grad = "Sinks", p.Sinks, g.DSinks
	}
	for _, in := range ins {
		var scale float64
		for _, v := range in.grad {
			scale = max(scale, math.Abs(v))
		}
		for range 25 {
			i := r.IntN(len(in.x))
			x0 := in.x[i]
			const step = 1e-5
			in.x[i] = x0 + step
			lp := lossOf(t, p, dO)
			in.x[i] = x0 - step
			lm := lossOf(t, p, dO)
			in.x[i] = x0
			fd := (lp - lm) / (2 * step)
			if math.Abs(fd-in.grad[i]) > 1e-6*(1+scale) {
				t.Fatalf("d%s[%d] = %g, finite difference %g", in.name, i, in.grad[i], fd)
			}
		}
	}
}

// TestBackwardNearExactGradient measures how far the gradient of the
// approximation is from the true gradient: each gradient's largest error,
// relative to its largest entry, must be within eps (observed: at most
// 0.07 eps).
func TestBackwardNearExactGradient(t *testing.T) {
	testNoExactRows = true
	defer func() { testNoExactRows = false }()
	for _, c := range []attntest.Case{
		{Heads: 2, N: 200, M: 300, D: 8, E: 8, Scale: 1.0 / 8, QScale: 0.7, KScale: 0.7},
		{Heads: 1, N: 400, M: 400, D: 4, E: 4, Causal: true, Scale: 0.25},
	} {
		for _, eps := range []float64{1e-2, 1e-3, 1e-5} {
			p := c.Generate(9)
			p.Eps = eps
			dO := attntest.GradOutput(p, 10)
			g := attn.NewGradients(p)
			st, err := (Method{}).Backward64(context.Background(), p, attn.NewOutput(p), dO, g)
			if err != nil {
				t.Fatal(err)
			}
			if st.Details["exact_rows"] != 0 || st.Details["degree_max"] == 0 {
				t.Fatalf("the polynomial path was not exercised: %v", st.Details)
			}
			ref := reference.Gradient(p, dO)
			for _, pair := range []struct {
				name      string
				got, want []float64
			}{{"dQ", g.DQ, ref.DQ}, {"dK", g.DK, ref.DK}, {"dV", g.DV, ref.DV}} {
				var errMax, scale float64
				for i := range pair.got {
					errMax = max(errMax, math.Abs(pair.got[i]-pair.want[i]))
					scale = max(scale, math.Abs(pair.want[i]))
				}
				rel := errMax / scale
				t.Logf("causal=%v eps=%g %s: relative error %.3g", c.Causal, eps, pair.name, rel)
				if rel > eps {
					t.Errorf("causal=%v eps=%g: %s relative error %.3g > eps", c.Causal, eps, pair.name, rel)
				}
			}
		}
	}
}

// TestGradConformance runs the shared gradient suite. The backward pass is
// the derivative of the approximation with the key centre held fixed, so it
// is compared with finite differences of exact attention (FDReference), to
// within eps (observed: 0.12 eps), on the polynomial path and on the
// exact-rows path that small inputs take.
func TestGradConformance(t *testing.T) {
	const eps = 1e-4
	cfg := attntest.GradConfig{Eps: eps, Tol64: eps, Tol32: eps, FDTol: eps, FDReference: true, AllowUnsupported: true}
	t.Run("exact-rows", func(t *testing.T) { attntest.RunGrad(t, Method{}, cfg) })
	t.Run("polynomial", func(t *testing.T) {
		testNoExactRows = true
		defer func() { testNoExactRows = false }()
		attntest.RunGrad(t, Method{}, cfg)
	})
}
