// Package reference computes attention the obvious way, in float64, one row
// at a time with a stable log-sum-exp. It is the trusted oracle of the tests
// and of the command line's demo: slow, simple, and easy to check by eye.
package reference

import (
	"math"

	"github.com/fastattn/fastattn/attn"
)

// Attention returns O (heads*n*e) and LSE (heads*n) for p, computed in
// float64 from p's values whatever their type. Rows with no valid key get a
// zero output row and LSE = -Inf.
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

// Row computes output row i of head h into out (length e) and its LSE.
func Row[T attn.Float](p *attn.Problem[T], h, i int, out []float64, lse *float64) {
	limit := p.KeyLimit(h, i)
	clear(out)
	if limit == 0 {
		*lse = math.Inf(-1)
		return
	}
	q := p.Q[(h*p.N+i)*p.D : (h*p.N+i+1)*p.D]
	logits := make([]float64, limit)
	mx := math.Inf(-1)
	for j := range limit {
		k := p.K[(h*p.M+j)*p.D : (h*p.M+j+1)*p.D]
		var s float64
		for t := range q {
			s += float64(q[t]) * float64(k[t])
		}
		logits[j] = p.Scale * s
		mx = max(mx, logits[j])
	}
	var sum float64
	for j, x := range logits {
		w := math.Exp(x - mx)
		sum += w
		v := p.V[(h*p.M+j)*p.E : (h*p.M+j+1)*p.E]
		for c := range out {
			out[c] += w * float64(v[c])
		}
	}
	for c := range out {
		out[c] /= sum
	}
	*lse = mx + math.Log(sum)
}
