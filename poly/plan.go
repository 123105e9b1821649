package poly

import (
	"fmt"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/vscale"
)

// Throughput constants of the cost model, measured with the benchmark in
// this package on the project's 2-core AVX2/AVX-512 machine: flops per
// second of the whole method (float64 GEMMs and feature building), and the
// fixed cost of certifying the polynomials (320-bit construction).
const (
	flopsPerSecond = 8e9
	setupSeconds   = 3e-3
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
	for _, hp := range plans {
		if hp.keys == 0 {
			continue
		}
		b, err := planBound(hp, deg, p.D, uOut)
		if err != nil {
			return attn.Estimate{}, err
		}
		if b > p.Eps {
			return attn.Estimate{}, unsupported("the certified bound %.3g exceeds eps = %g (beta = %.3g, rounding dominates)", b, p.Eps, c.maxBeta)
		}
	}
	return attn.Estimate{
		Seconds: c.polyFlops/flopsPerSecond + setupSeconds,
		Bytes:   c.memory,
		Reason:  fmt.Sprintf("beta = %.3g, degree <= %d, rank <= %.0f: %.3g flops (exact: %.3g)", c.maxBeta, c.maxDegree, c.rank, c.polyFlops, c.exactFlops),
	}, nil
}
