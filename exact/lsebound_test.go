package exact

import (
	"math/rand/v2"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
)

// TestLSEBoundFarKeys: keys 1e7 from the origin, so that they are
// centred, and queries almost orthogonal to their offset c, so that each
// log-sum-exp is small while s q.c, added back to it, is a sum of terms of
// about 1e7 that cancel. Summed plainly in float64 it was off by 3.2e-9
// (the bound then counted gamma_(2d+16) s sum_t |q_t c_t|: 1.8e-7); the
// methods now sum it with compensation (accurate.ScaledDot), within u of
// |s q.c| and u^2 of the terms, and Stats.LSEBound counts that
// (sinkshift.ShiftBound). The test fails if the shift is summed plainly again
// (the error then exceeds the bound) or the bound leaves it out.
func TestLSEBoundFarKeys(t *testing.T) {
	const n, m, d, e = 32, 16, 8, 2
	r := rand.New(rand.NewPCG(3, 11))
	p := &attn.Problem[float64]{Heads: 1, N: n, M: m, D: d, E: e, Scale: 0.35,
		Q: make([]float64, n*d), K: make([]float64, m*d), V: make([]float64, m*e)}
	c := make([]float64, d)
	var cc float64
	for t := range c {
		c[t] = 1e7 * (1 + r.Float64())
		if t%2 == 1 {
			c[t] = -c[t]
		}
		cc += c[t] * c[t]
	}
	for j := range m {
		for t := range d {
			p.K[j*d+t] = c[t] + r.NormFloat64()
		}
		for x := range e {
			p.V[j*e+x] = r.NormFloat64()
		}
	}
	for i := range n {
		q := p.Q[i*d : (i+1)*d]
		var qc float64
		for t := range q {
			q[t] = r.NormFloat64()
			qc += q[t] * c[t]
		}
		for t := range q {
			q[t] -= qc / cc * c[t]
		}
	}
	st, out := centredForward(t, p)
	errs := attntest.AccurateErrors(p, out.O, out.LSE)
	if !(errs.LSE <= st.LSEBound+errs.LSERef) {
		t.Errorf("log-sum-exps off by %.3g, above the reported bound %.3g", errs.LSE, st.LSEBound)
	}
	if st.LSEBound > 1e-12 {
		t.Errorf("log-sum-exp bound %.3g: the shift's compensated error should leave it near float64's rounding of the log-sum-exps", st.LSEBound)
	}
	t.Logf("log-sum-exp error %.3g, bound %.3g; output error %.3g, bound %.3g", errs.LSE, st.LSEBound, errs.Out, st.ErrorBound)
}
