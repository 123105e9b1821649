package anytemp

import (
	"fmt"
	"math"

	"github.com/fastattn/fastattn/attn"
)

// Smallest eps honoured per element type. Below them the rounding of the
// output (2^-24 for float32) or of the float64 accumulation would eat most
// of the budget; Forward and Estimate reject smaller eps with an error
// wrapping attn.ErrUnsupported. Large logits or long rows can raise the
// floor further (the rounding of s q.k grows with |s q.k|): the check is
// made per problem, see budget.
const (
	MinEps32 = 1e-6
	MinEps64 = 1e-10
)

// unit roundoff of float64 and of float32 (the output cast).
const (
	u64 = 0x1p-53
	u32 = 0x1p-24
)

// gamma is the classic rounding constant n u / (1 - n u) of float64.
func gamma(n float64) float64 { return n * u64 / (1 - n*u64) }

// budget splits the user's eps into the parts of the per-entry relative
// error eta of docs/ALGORITHMS.md section 2 and certifies the total.
//
// Every weight the method uses for a key j of row i, alone or inside a
// node's expansion, is A_ij (1 + delta_ij) with
//
//	|delta_ij| <= (1 + epsT) e^theta (1 + 4u) - 1     (expansion or cell, exponent error)
//
// and on top of that the sums N_i = sum_j A_ij v_j and D_i = sum_j A_ij get
// additive errors bounded, in units of sum_j A_ij |v_j| and D_i, by
//
//	gamma(kNode) e^(2 rhoCap) e^theta  rounding inside a node's expansion,
//	epsDrop e^(2 theta) (1 + epsT)     keys below the window (dropped),
//	gamma(L + 16) (1 + eta1)           the row's accumulation,
//
// so |N~ - N| <= eta D max|v| and |D~ - D| <= eta D with eta their sum,
// and |T - Att| <= (2 eta / (1 - eta) + out) max_l |V_lj| where out is the
// rounding of the final division and of the cast to the output type.
type budget struct {
	eps       float64 // the target
	etaTarget float64 // eta allowed by eps
	outErr    float64 // final division and output cast, relative to max|V|

	theta   float64 // largest exponent error (rank truncation + rounding)
	epsT    float64 // Taylor / cell truncation, relative per entry
	epsDrop float64 // dropped mass relative to D
	rhoCap  float64 // largest rho = s sum_t |q_t| h_t an expanded node may have
	kNode   float64 // operation count in the rounding bound of a node
	lMax    int     // longest row (keys)

	eta   float64 // certified eta
	bound float64 // certified bound on |T - Att| / max|V|

	// keyScale multiplies the number of keys in the window width: the
	// planner's pilot runs on a sample of the keys with the window of the
	// full problem. 1 in Forward.
	keyScale float64
}

// maxRhoCap caps the radius of an expansion: beyond it the degrees grow
// and e^(2 rho) amplifies rounding for nothing. 5 rather than 4: at d = 2,
// e = 8, n = 2^16 with entries N(0, 1), rows then cover their keys with
// 148 thousand expansions instead of 258 thousand, 17% fewer terms in
// all, for 44% more moment work, about 6% less CPU in the forward pass
// (single worker, alternating, load 6-8) and less in the backward.
const maxRhoCap = 5.0

// outputError is the rounding of the division N/D and of the output cast,
// plus extra: the half subnormal step of tiny values (vscale.SubnormalOutput)
// and what the sinks cost (sinkShift).
func outputError(eps float64, float32Out bool, extra float64) float64 {
	r := 2 * u64
	if float32Out {
		r += u32
	}
	return r*(1+eps) + extra
}

// etaTargetFor is the largest eta with 2 eta/(1 - eta) + out <= eps.
func etaTargetFor(eps, out float64) float64 {
	e := eps - out
	if e <= 0 {
		return 0
	}
	return e / (2 + e)
}

// checkEps rejects eps below the per-type floor.
func checkEps(eps float64, float32Out bool) error {
	min := MinEps64
	name := "float64"
	if float32Out {
		min, name = MinEps32, "float32"
	}
	if !(eps >= min) {
		return fmt.Errorf("%w: anytemp honours eps >= %g in %s (the output rounding and float64 accumulation need the rest), got %g",
			attn.ErrUnsupported, min, name, eps)
	}
	return nil
}

// rankAllowance is the largest exponent shift the low-rank reduction may
// introduce: a quarter of the budget.
func rankAllowance(eps float64, float32Out bool, extra float64) float64 {
	return math.Log1p(0.25 * etaTargetFor(eps, outputError(eps, float32Out, extra)))
}

// newBudget splits eps once theta (exponent error), the longest row and
// the node operation count are known. It fails with ErrUnsupported when
// rounding alone would exceed half the budget.
func newBudget(eps float64, float32Out bool, extra, theta float64, lMax int, kNodeBase float64) (*budget, error) {
	b := &budget{eps: eps, theta: theta, lMax: lMax}
	b.outErr = outputError(eps, float32Out, extra)
	b.etaTarget = etaTargetFor(eps, b.outErr)
	if !(b.etaTarget > 0) {
		return nil, fmt.Errorf("%w: eps = %g is too small for this input: rounding the outputs (and, with a sink, its logit against keys centred far from the origin) alone costs %.3g",
			attn.ErrUnsupported, eps, b.outErr)
	}
	b.kNode = kNodeBase
	acc := gamma(float64(lMax) + 16)
	fixed := math.Expm1(theta) + 4*u64*math.Exp(theta) + 1.01*acc
	if !(fixed <= 0.5*b.etaTarget) {
		return nil, fmt.Errorf("%w: eps = %g is too small for this input: rounding of logits and rank truncation alone cost %.3g of the %.3g relative budget (exponent error %.3g, %d keys per row)",
			attn.ErrUnsupported, eps, fixed, b.etaTarget, theta, lMax)
	}
	rem := b.etaTarget - fixed
	eth := math.Exp(theta)
	b.epsDrop = 0.1 * rem / (eth * eth * 1.01)
	fpNode := 0.05 * rem
	b.rhoCap = min(maxRhoCap, 0.5*math.Log(fpNode/(gamma(b.kNode)*eth)))
	if !(b.rhoCap > 0.05) {
		return nil, fmt.Errorf("%w: eps = %g is too small for float64 expansions on this input", attn.ErrUnsupported, eps)
	}
	b.epsT = (1+math.Expm1(theta)+4*u64*eth+0.8*rem)/(eth*(1+4*u64)) - 1
	b.certify()
	if !(b.bound <= eps) {
		return nil, fmt.Errorf("anytemp: internal error: budget %g above eps %g", b.bound, eps)
	}
	return b, nil
}

// certify computes eta and the bound from the parts.
func (b *budget) certify() {
	eth := math.Exp(b.theta)
	eta1 := (1+b.epsT)*eth*(1+4*u64) - 1
	eta1 += gamma(b.kNode) * math.Exp(2*b.rhoCap) * eth
	eta1 += b.epsDrop * eth * eth * (1 + b.epsT)
	b.eta = eta1 + gamma(float64(b.lMax)+16)*(1+eta1)
	b.bound = 2*b.eta/(1-b.eta) + b.outErr
}

// window is t = ln(L / epsDrop): keys more than t below the row's maximum
// logit carry at most epsDrop of D together.
func (b *budget) window(keys int) float64 {
	return math.Log(float64(max(keys, 1)) * max(b.keyScale, 1) / b.epsDrop)
}

// taylorRho returns rhoMax[g] for g = 0..maxDeg: the largest rho <= rhoCap
// with e^rho rho^(g+1) / (g+1)! <= epsT, the relative truncation error of
// the degree-g Taylor polynomial of e^u on |u| <= rho.
func taylorRho(epsT, rhoCap float64, maxDeg int) []float64 {
	out := make([]float64, maxDeg+1)
	for g := range out {
		f := func(rho float64) float64 {
			// log of e^rho rho^(g+1)/(g+1)!
			lg, _ := math.Lgamma(float64(g + 2))
			return rho + float64(g+1)*math.Log(rho) - lg
		}
		target := math.Log(epsT)
		if f(rhoCap) <= target {
			out[g] = rhoCap * (1 - 1e-12)
			continue
		}
		lo, hi := 0.0, rhoCap
		for range 100 {
			mid := 0.5 * (lo + hi)
			if f(mid) <= target {
				lo = mid
			} else {
				hi = mid
			}
		}
		// A relative margin for the rounding of the computed rho
		// (sum of r products, far below 1e-12 relative).
		out[g] = lo * (1 - 1e-12)
	}
	return out
}
