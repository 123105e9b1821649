package hardness

import (
	"fmt"
	"math"
)

// MaxIP is a (gap) maximum inner product instance: vectors A and B of one
// dimension, a threshold Tau and a gap Gap > 0. For each a_i the question is
// whether some b_j has <a_i, b_j> >= Tau (yes) or every b_j has
// <a_i, b_j> <= Tau - Gap (no); a query whose maximum lies strictly between
// may be answered either way. For integer vectors, Gap = 1 leaves no gap.
type MaxIP struct {
	A, B     Vectors
	Tau, Gap float64
}

// Validate checks the dimensions, Tau and Gap.
func (p *MaxIP) Validate() error {
	if p.A.N < 1 || p.B.N < 1 {
		return fmt.Errorf("hardness: need at least one vector in A and in B, got %d and %d", p.A.N, p.B.N)
	}
	if p.A.Dim != p.B.Dim {
		return fmt.Errorf("hardness: A has dimension %d but B has %d", p.A.Dim, p.B.Dim)
	}
	if math.IsNaN(p.Tau) || math.IsInf(p.Tau, 0) {
		return fmt.Errorf("hardness: the threshold tau must be finite, got %g", p.Tau)
	}
	if !(p.Gap > 0) || math.IsInf(p.Gap, 0) {
		return fmt.Errorf("hardness: the gap must be a positive number, got %g", p.Gap)
	}
	return nil
}

// InGap reports whether a maximum inner product lies in the gap
// (Tau - Gap, Tau), where either answer is acceptable.
func (p *MaxIP) InGap(best float64) bool { return best > p.Tau-p.Gap && best < p.Tau }

// MaxInner returns, by brute force, each a_i's largest inner product with
// the vectors of B.
func (p *MaxIP) MaxInner() []float64 {
	out := make([]float64, p.A.N)
	binary := p.A.CheckBinary() == nil && p.B.CheckBinary() == nil
	var pa, pb packed
	if binary {
		pa, pb = pack(p.A), pack(p.B)
	}
	for i := range out {
		best := math.Inf(-1)
		for j := range p.B.N {
			var ip float64
			if binary {
				ip = float64(andCount(pa.row(i), pb.row(j)))
			} else {
				ip = Dot(p.A.Row(i), p.B.Row(j))
			}
			best = max(best, ip)
		}
		out[i] = best
	}
	return out
}

// BruteForce answers every query by brute force: true when some b_j has
// <a_i, b_j> >= Tau.
func (p *MaxIP) BruteForce() []bool {
	best := p.MaxInner()
	ans := make([]bool, len(best))
	for i, v := range best {
		ans[i] = v >= p.Tau
	}
	return ans
}

// MaxIPSlack is the factor c in lambda = 2 ln(c nb) / gap: a yes query's
// real keys outweigh the dummy key by at least c nb, a no query's are
// outweighed by at least c.
const MaxIPSlack = 8

// MaxIPReduction is the attention instance of the maximum inner product
// reduction (docs/ALGORITHMS.md section 6, after Gupta et al.) for na queries
// and nb vectors in B of dimension d, with scale 1:
//
//	rows 0..na-1    Q_i  = (lambda a_i, lambda (tau - gap/2))
//	keys 0..nb-1    K_j  = (b_j, 0)       value 1
//	key  nb         K_nb = (0_d, 1)       value 0 (the dummy)
//
// Query i's output is S_i / (S_i + e^(lambda (tau - gap/2))) with
// S_i = sum_j e^(lambda <a_i, b_j>): near 1 when some inner product reaches
// tau, near 0 when all stay at or below tau - gap.
type MaxIPReduction struct {
	Attention
	// Lambda is the temperature: 2 ln(MaxIPSlack nb) / Gap.
	Lambda float64
}

// ReduceMaxIP builds the attention instance for p.
func ReduceMaxIP(p *MaxIP) (*MaxIPReduction, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	na, nb, d := p.A.N, p.B.N, p.A.Dim
	lambda := 2 * math.Log(MaxIPSlack*float64(nb)) / p.Gap
	r := &MaxIPReduction{Lambda: lambda}
	a := &r.Attention
	D := d + 1
	a.Rows, a.Keys, a.Dim, a.Queries, a.Scale = na, nb+1, D, na, 1
	a.Q = make([]float64, na*D)
	a.K = make([]float64, (nb+1)*D)
	a.V = make([]float64, nb+1)
	for i := range na {
		for c, x := range p.A.Row(i) {
			a.Q[i*D+c] = lambda * x
		}
		a.Q[i*D+d] = lambda * (p.Tau - p.Gap/2)
	}
	for j := range nb {
		copy(a.K[j*D:], p.B.Row(j))
		a.V[j] = 1
	}
	a.K[nb*D+d] = 1
	// Yes: S_i >= e^(lambda tau), so S_i / dummy >= e^(lambda gap/2) = c nb.
	// No: S_i <= nb e^(lambda (tau-gap)), so S_i / dummy <= nb e^(-lambda gap/2) = 1/c.
	a.YesLower = logistic(lambda * p.Gap / 2)
	a.NoUpper = logistic(-math.Log(MaxIPSlack))
	for _, x := range a.Q {
		if math.IsInf(x, 0) {
			return nil, fmt.Errorf("hardness: lambda (%g) times the query entries overflows float64", lambda)
		}
	}
	if err := a.finish(); err != nil {
		return nil, err
	}
	return r, nil
}

// ExactOutputs returns the exact attention output of each query in closed
// form: u_i = logistic(ln sum_j e^(lambda (<a_i, b_j> - tau + gap/2))).
func (r *MaxIPReduction) ExactOutputs(p *MaxIP) []float64 {
	out := make([]float64, p.A.N)
	logs := make([]float64, p.B.N)
	for i := range out {
		for j := range logs {
			logs[j] = r.Lambda * (Dot(p.A.Row(i), p.B.Row(j)) - p.Tau + p.Gap/2)
		}
		out[i] = logistic(logSumExp(logs))
	}
	return out
}
