package poly

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
)

// TestEstimateRefusesUncertifiableEps: the planner must refuse exactly
// where the forward would (found by review: auto picked poly at eps 1e-11,
// whose forward then failed).
func TestEstimateRefusesUncertifiableEps(t *testing.T) {
	n, d := 4096, 4
	r := rand.New(rand.NewPCG(1, 1))
	p := &attn.Problem[float64]{Heads: 1, N: n, M: n, D: d, E: d, Q: make([]float64, n*d), K: make([]float64, n*d), V: make([]float64, n*d), Scale: 1}
	for i := range p.Q {
		p.Q[i], p.K[i], p.V[i] = 0.6*r.Float64()-0.3, 0.6*r.Float64()-0.3, r.NormFloat64()
	}
	for _, eps := range []float64{1e-11, 3e-11, 1e-10, 1e-6} {
		p.Eps = eps
		_, estErr := Method{}.Estimate64(p)
		_, fwdErr := Method{}.Forward64(context.Background(), p, attn.NewOutput(p))
		t.Logf("eps %g: estimate %v; forward %v", eps, estErr, fwdErr)
		if (estErr == nil) != (fwdErr == nil) {
			t.Errorf("eps %g: estimate says %v, forward says %v", eps, estErr, fwdErr)
		}
		if estErr != nil && !errors.Is(estErr, attn.ErrUnsupported) {
			t.Errorf("eps %g: %v", eps, estErr)
		}
	}
}

// TestBackwardNearFloor: near the rounding floor the degree thresholds
// saturate; the backward's one-degree bump once read past the coefficients
// (found by review). It must return gradients or refuse, never panic.
func TestBackwardNearFloor(t *testing.T) {
	n := 1000
	p := &attn.Problem[float64]{Heads: 1, N: n, M: n, D: 1, E: 1, Q: make([]float64, n), K: make([]float64, n), V: make([]float64, n), Scale: 1}
	for i := range n {
		p.Q[i] = 4.153635878755578
		p.K[i] = float64(2*(i%2) - 1)
		p.V[i] = float64(i % 3)
	}
	for _, eps := range []float64{1e-12, 2e-12, 3e-12, 5e-12} {
		p.Eps = eps
		dO := make([]float64, n)
		for i := range dO {
			dO[i] = 1
		}
		_, err := (Method{}).Backward64(context.Background(), p, attn.NewOutput(p), dO, attn.NewGradients(p))
		if err != nil && !errors.Is(err, attn.ErrUnsupported) {
			t.Fatalf("eps %g: %v", eps, err)
		}
	}
}

// TestExplicitRunWhenExpensive: an explicit call runs where the method is
// predicted to cost more than exact attention (issue: n = 700, d = 8,
// eps = 1e-5 was refused), and says so in its statistics.
func TestExplicitRunWhenExpensive(t *testing.T) {
	n, d := 700, 8
	r := rand.New(rand.NewPCG(2, 2))
	p := &attn.Problem[float64]{Heads: 1, N: n, M: n, D: d, E: d, Q: make([]float64, n*d), K: make([]float64, n*d), V: make([]float64, n*d), Scale: 0.125, Eps: 1e-5}
	for i := range p.Q {
		p.Q[i], p.K[i], p.V[i] = r.NormFloat64(), r.NormFloat64(), r.NormFloat64()
	}
	est, err := Method{}.Estimate64(p)
	if err != nil {
		t.Fatalf("estimate: %v", err)
	}
	st, err := Method{}.Forward64(context.Background(), p, attn.NewOutput(p))
	if err != nil {
		t.Fatalf("forward: %v", err)
	}
	t.Logf("estimate %+v; predicted %v flops, exact %v", est, st.Details["flops_predicted"], st.Details["exact_flops"])
	if st.Details["predicted_slower_than_exact"] != true {
		t.Errorf("predicted_slower_than_exact = %v, want true", st.Details["predicted_slower_than_exact"])
	}
}

// TestSupportedOptions: grouped-query attention, top-left alignment and
// sinks run on the polynomial path (no row computed exactly), checked
// against the reference, never declined.
func TestSupportedOptions(t *testing.T) {
	testNoExactRows = true
	defer func() { testNoExactRows = false }()
	for _, c := range attntest.OptionCases() {
		// Entries small enough for low degrees in d = 8 and 16.
		c.QScale, c.KScale = 0.3, 0.3
		p := c.Generate(3)
		if p.Features()&^(Method{}).Supports() != 0 {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			attntest.RunCase(t, Method{}, attntest.Config{Eps: 1e-3}, c, 3)
		})
	}
}
