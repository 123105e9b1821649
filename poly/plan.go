package poly

import (
	"fmt"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/check"
	"github.com/fastattn/fastattn/internal/vscale"
)

// Estimate32 predicts the cost on a float32 problem.
func (m Method) Estimate32(p *attn.Problem[float32]) (attn.Estimate, error) {
	return estimate(m, p, MinEps32, 0x1p-24+vscale.SubnormalOutput(p))
}

// Estimate64 predicts the cost on a float64 problem.
func (m Method) Estimate64(p *attn.Problem[float64]) (attn.Estimate, error) {
	return estimate(m, p, MinEps64, 0x1p-53+vscale.SubnormalOutput(p))
}

// estimate plans every head as the forward would and refuses, as the
// forward would, inputs where the certified bound exceeds eps or the
// working memory exceeds the budget (so auto never picks a method that then
// fails). An input where it does not pay gets an estimate all the same:
// auto compares the seconds, and the reason says the flops.
func estimate[T attn.Float](m Method, p *attn.Problem[T], minEps, uOut float64) (attn.Estimate, error) {
	if p.Eps < minEps {
		return attn.Estimate{}, unsupported("eps = %g is below this method's floor %g for %s", p.Eps, minEps, attn.DTypeName[T]())
	}
	deg := newDegreeTable(PolyShare * p.Eps)
	plans := make([]*headPlan, p.Heads)
	for h := range p.Heads {
		hp, err := planHead(p, h, deg, 0)
		if err != nil {
			return attn.Estimate{}, err
		}
		plans[h] = hp
	}
	c, err := assessCost(p, plans, m.workers(), m.MemoryBudget)
	if err != nil {
		return attn.Estimate{}, err
	}
	for h, hp := range plans {
		if hp.keys == 0 {
			continue
		}
		b, err := planBound(p, h, hp, deg, uOut)
		if err != nil {
			return attn.Estimate{}, err
		}
		if b > p.Eps {
			return attn.Estimate{}, unsupported("the certified bound %.3g exceeds eps = %g (beta = %.3g, rounding dominates)", b, p.Eps, c.maxBeta)
		}
	}
	return attn.Estimate{
		Seconds: predictSeconds(p, plans, m.workers(), m.SampleRows, measuredRates()),
		Bytes:   c.memory,
		Reason:  fmt.Sprintf("beta = %.3g, degree <= %d, rank <= %.0f: %.3g flops (exact: %.3g)", c.maxBeta, c.maxDegree, c.rank, c.polyFlops, c.exactFlops),
	}, nil
}

// predictSeconds is the cost model: with the unit times rt measured on one
// core (calibrate) and the work spread over the workers,
//
//	setup + [sum over heads of ballWork ball + L r_max key(e) + sum_i r_i query(e)
//	        + direct pairs (d + e + 1) pair] / workers + check
//
// where r_max is the head's largest rank, r_i each polynomial row's rank,
// and check is the sampled reference rows (each a pass over its keys, the
// rows spread over the workers).
func predictSeconds[T attn.Float](p *attn.Problem[T], plans []*headPlan, workers, sampleRows int, rt rates) float64 {
	e1 := float64(p.E + 1)
	key := rt.keyBase + rt.keyPerValue*e1
	query := rt.queryBase + rt.queryPerValue*e1
	var work float64
	checkKeys := p.M // the most keys a sampled reference row reads
	if windowed(p) {
		checkKeys = widestRow(p)
	}
	for h, hp := range plans {
		if hp.keys == 0 {
			continue
		}
		g := 0
		for i, deg := range hp.degree {
			if deg == exactRow {
				work += float64(rowKeys(p, h, i)) * float64(p.D+p.E+1) * rt.pair
				continue
			}
			g = max(g, deg)
			work += RankFloat(p.D, deg) * query
		}
		work += hp.groupRows() * RankFloat(p.D, g) * query
		work += ballWork(hp.keys, p.D)*rt.ball + float64(hp.momentKeys())*RankFloat(p.D, g)*key + hp.edgePairs()*float64(p.D+p.E+1)*rt.pair
	}
	w := float64(max(workers, 1))
	secs := rt.setup + work/w
	if sampleRows >= 0 {
		rows := sampleRows
		if rows == 0 {
			rows = check.DefaultRows
		}
		rows = min(rows, p.Heads*p.N)
		rate, par := rt.checkKey, min(w, float64(rows))
		if plainCheckServes(p.Eps, checkKeys, p.D) {
			rate, par = rt.checkPlainKey, w
		}
		secs += float64(rows) * float64(checkKeys) * float64(p.D+p.E) * rate / par
	}
	return secs
}

// plainCheckServes tells, for the cost model, whether the sampled check's
// plain reference (accurate to about (3 L + 2 d) units of float64 rounding
// at moderate logits) serves a bound near eps: it does when its error is
// under 1/64 of the bound.
func plainCheckServes(eps float64, L, d int) bool {
	return eps/64 > float64(4*L+4*d+64)*0x1p-53
}
