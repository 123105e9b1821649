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
	ref := make([]float64, p.E)
	for h := range p.Heads {
		colMax := attn.ColumnMaxAbs(p, h, p.KeyLen(h))
		for i := range p.N {
			accurate.Row(p, h, i, ref)
			refErr = max(refErr, accurate.Error(p.KeyLimit(h, i)))
			for c := range p.E {
				if colMax[c] > 0 {
					e := math.Abs(float64(out[(h*p.N+i)*p.E+c])-ref[c]) / colMax[c]
					refErr = max(refErr, vscale.HalfStepOver[float64](colMax[c]))
					if math.IsNaN(e) {
						e = math.Inf(1)
					}
					worst = max(worst, e)
				}
			}
		}
	}
	return worst, refErr
}
