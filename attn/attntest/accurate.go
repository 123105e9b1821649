package attntest

import (
	"math"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/accurate"
	"github.com/fastattn/fastattn/internal/vscale"
)

// AccurateError returns max |out - Att| / max_l |V_lj| over every row and
// column of p, each query head's columns measured over the keys it sees
// (the error contract's unit), against package accurate's reference, and
// the error that reference may have itself (its rounding, and half a
// float64 subnormal step of each column's unit), to allow on top of a
// bound. A NaN in out counts as an infinite error.
func AccurateError[T attn.Float](p *attn.Problem[T], out []T) (worst, refErr float64) {
	e := AccurateErrors(p, out, nil)
	return e.Out, e.OutRef
}

// Errors are what AccurateErrors measures.
type Errors struct {
	// Out and OutRef are AccurateError's worst and refErr.
	Out, OutRef float64
	// LSE is max |lse_i - LSE_i| in nats over the rows, against package
	// accurate's log-sum-exps (a row that is -Inf in one and not in the
	// other, or NaN, counts as infinite), and LSERef the reference's own
	// error: it adds its largest logit, a double-double m_hi + m_lo, to the
	// log of its compensated sum (up to l + 1), as m_hi + (m_lo + log sum),
	// within u |LSE| + u^2 |m| + 3u (log(l + 2) + 1), which
	// u (1.5 |LSE_i| + 4 log(l + 2) + 4) covers.
	LSE, LSERef float64
}

// AccurateErrors is AccurateError, also measuring the log-sum-exps lse
// (nil: not measured) against the reference's.
func AccurateErrors[T attn.Float](p *attn.Problem[T], out []T, lse []float64) Errors {
	var r Errors
	ref := make([]float64, p.E)
	for h := range p.Heads {
		colMax := attn.ColumnMaxAbs(p, h, p.KeyLen(h))
		for i := range p.N {
			l := accurate.Row(p, h, i, ref)
			r.OutRef = max(r.OutRef, accurate.Error(p.KeyLimit(h, i)))
			for c := range p.E {
				if colMax[c] > 0 {
					e := math.Abs(float64(out[(h*p.N+i)*p.E+c])-ref[c]) / colMax[c]
					r.OutRef = max(r.OutRef, vscale.HalfStepOver[float64](colMax[c]))
					if math.IsNaN(e) {
						e = math.Inf(1)
					}
					r.Out = max(r.Out, e)
				}
			}
			if lse == nil || math.IsInf(l, -1) && math.IsInf(lse[h*p.N+i], -1) {
				continue
			}
			e := math.Abs(lse[h*p.N+i] - l)
			if math.IsNaN(e) {
				e = math.Inf(1)
			}
			r.LSE = max(r.LSE, e)
			r.LSERef = max(r.LSERef, 0x1p-53*(1.5*math.Abs(l)+4*math.Log(float64(p.KeyLimit(h, i)+2))+4))
		}
	}
	return r
}
