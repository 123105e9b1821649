package exact

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
)

// TestSinkShiftBound: a head whose keys sit 2.7e4 from the origin, so
// that they are centred, with a sink whose logit lies among its rows'
// logits (about 1e4 each), so that the sink takes part in every row's
// weights. Centring takes s q_i.c from the keys' logits exactly, but from
// the sink's logit in float64 arithmetic, whose rounding (about 1e-12
// here) moves the outputs far more than float64's other roundings (bounds
// of about 1e-15): the reported bound must count it (sinkShift), against
// package accurate's reference. Without the term the bound was 4.6e-15
// against an observed 2.0e-13.
func TestSinkShiftBound(t *testing.T) {
	const n, m, d, e = 64, 3, 4, 3
	const sink = 1e4
	r := rand.New(rand.NewPCG(5, 8))
	p := &attn.Problem[float64]{Heads: 1, N: n, M: m, D: d, E: e, Scale: 0.4, Sinks: []float64{sink},
		Q: make([]float64, n*d), K: make([]float64, m*d), V: make([]float64, m*e)}
	for j := range m {
		for t := range d {
			p.K[j*d+t] = 2.7e4 + r.Float64()
		}
		for c := range e {
			p.V[j*e+c] = r.NormFloat64()
		}
	}
	// Row i's logit against the first key: sink - 3 + 6 i/n.
	for i := range n {
		q := p.Q[i*d : (i+1)*d]
		var dot float64
		for t := range q {
			q[t] = 1 + r.Float64()
			dot += q[t] * p.K[t]
		}
		f := (sink - 3 + 6*float64(i)/n) / p.Scale / dot
		for t := range q {
			q[t] *= f
		}
	}
	st, out := centredForward(t, p)
	worst, refErr := attntest.AccurateError(p, out.O)
	if !(worst <= st.ErrorBound*(1+1e-9)+refErr) {
		t.Errorf("float64: observed error %.3g above the reported bound %.3g", worst, st.ErrorBound)
	}
	if worst < 1e-13 {
		t.Errorf("float64: observed error %.3g: the case no longer shows the sink's rounding", worst)
	}
	t.Logf("float64: observed %.3g, bound %.3g", worst, st.ErrorBound)
}

// centredForward runs exact attention on p, whose one head's keys must be
// centred for the test to show what it is for.
func centredForward(t *testing.T, p *attn.Problem[float64]) (attn.Stats, *attn.Output[float64]) {
	t.Helper()
	out := attn.NewOutput(p)
	st, err := attn.Forward(context.Background(), Method{}, p, out)
	if err != nil {
		t.Fatal(err)
	}
	if st.Details["centred_heads"] != 1 {
		t.Fatalf("the keys were not centred (details %v): the test needs them to be", st.Details)
	}
	return st, out
}
