package hardness

import (
	"fmt"
	"math"
)

// ANN is a Gap approximate Hamming nearest neighbour instance, Gap
// ANN(n, d, t, eps) of Alman & Song (Definition 4.5): binary vectors A and B
// of one dimension, a distance threshold T and a gap Eps. For each a_i the
// question is whether some b_j lies within Hamming distance T (yes) or every
// b_j lies farther than (1+Eps) T (no). A query whose nearest distance falls
// in the gap (T, (1+Eps) T] may be answered either way.
type ANN struct {
	A, B Vectors
	T    int
	Eps  float64
}

// Validate checks that A and B are binary vectors of one dimension and that
// 0 <= T <= Dim and Eps > 0.
func (p *ANN) Validate() error {
	if p.A.N < 1 || p.B.N < 1 {
		return fmt.Errorf("hardness: need at least one vector in A and in B, got %d and %d", p.A.N, p.B.N)
	}
	if p.A.Dim != p.B.Dim {
		return fmt.Errorf("hardness: A has dimension %d but B has %d", p.A.Dim, p.B.Dim)
	}
	if err := p.A.CheckBinary(); err != nil {
		return fmt.Errorf("A: %w", err)
	}
	if err := p.B.CheckBinary(); err != nil {
		return fmt.Errorf("B: %w", err)
	}
	return checkANNParams(p.A.Dim, p.T, p.Eps)
}

func checkANNParams(dim, t int, eps float64) error {
	if dim < 1 {
		return fmt.Errorf("hardness: dimension must be >= 1, got %d", dim)
	}
	if t < 0 || t > dim {
		return fmt.Errorf("hardness: distance threshold t must be in [0, %d] (the dimension), got %d", dim, t)
	}
	if !(eps > 0) || math.IsInf(eps, 0) {
		return fmt.Errorf("hardness: the gap eps must be a positive number, got %g", eps)
	}
	return nil
}

// FarDistance is the smallest Hamming distance beyond the gap,
// floor((1+Eps) T) + 1: a query is a no-instance when all its distances are
// at least this.
func (p *ANN) FarDistance() int { return farDistance(p.T, p.Eps) }

func farDistance(t int, eps float64) int { return int(math.Floor((1+eps)*float64(t))) + 1 }

// InGap reports whether a nearest distance lies in the gap (T, (1+Eps) T],
// where either answer is acceptable.
func (p *ANN) InGap(dist int) bool {
	return dist > p.T && float64(dist) <= (1+p.Eps)*float64(p.T)
}

// Nearest returns, by brute force, each a_i's smallest Hamming distance to
// the vectors of B.
func (p *ANN) Nearest() []int {
	pa, pb := pack(p.A), pack(p.B)
	out := make([]int, p.A.N)
	for i := range out {
		x, best := pa.row(i), p.A.Dim+1
		for j := range p.B.N {
			best = min(best, hamming(x, pb.row(j)))
		}
		out[i] = best
	}
	return out
}

// BruteForce answers every query by brute force: true when some b_j lies
// within distance T of a_i.
func (p *ANN) BruteForce() []bool {
	near := p.Nearest()
	ans := make([]bool, len(near))
	for i, h := range near {
		ans[i] = h <= p.T
	}
	return ans
}

// ANNParams are the reduction's parameters for nb vectors in B of dimension
// Dim, threshold T and gap Eps; see ChooseANNParams and the package
// documentation for the derivation.
type ANNParams struct {
	// Far is the smallest distance beyond the gap, floor((1+Eps) T) + 1.
	Far int
	// Gamma is the decay of an attention weight per unit of Hamming
	// distance, beta / (4 Dim).
	Gamma float64
	// Beta is B^2: Q and K have entries sqrt(Beta) or 0.
	Beta float64
	// Ratio is the guaranteed ratio between the smallest possible yes
	// weight and the largest possible no weight, e^(Gamma (Far - T)) / nb.
	Ratio float64
	// LogYes and LogNo are ln l and ln h: the relative weight of the real
	// keys is >= l for a yes query and <= h for a no query.
	LogYes, LogNo float64
}

// ChooseANNParams picks beta for nb vectors in B of dimension dim, distance
// threshold t and gap eps. With delta = Far - t it sets the weight ratio to
// R = 1 + delta/(dim + t), which maximises the attention error the decision
// tolerates, and gamma = ln(nb R)/delta, beta = 4 dim gamma.
func ChooseANNParams(nb, dim, t int, eps float64) (ANNParams, error) {
	if err := checkANNParams(dim, t, eps); err != nil {
		return ANNParams{}, err
	}
	if nb < 1 {
		return ANNParams{}, fmt.Errorf("hardness: need at least one vector in B, got %d", nb)
	}
	far := farDistance(t, eps)
	delta := float64(far - t)
	d, tt := float64(dim), float64(t)
	ratio := 1 + delta/(d+tt)
	gamma := (math.Log(float64(nb)) + math.Log(ratio)) / delta
	p := ANNParams{
		Far:    far,
		Gamma:  gamma,
		Beta:   4 * d * gamma,
		Ratio:  ratio,
		LogYes: -gamma*(d+tt) - math.Log(float64(nb)),
		LogNo:  -gamma * (d + float64(far)),
	}
	if p.LogYes < -650 {
		return ANNParams{}, fmt.Errorf("hardness: attention weights of close pairs would be e^%.0f, below float64's range; use a smaller dimension (%d), a larger threshold t (%d) or a larger gap eps (%g)", p.LogYes, dim, t, eps)
	}
	return p, nil
}

// ANNReduction is the attention instance of Lemma 4.7 (appendix B of Alman
// & Song) for a Gap ANN instance with na queries and nb vectors in B of
// dimension d:
//
//	rows 0..na-1       Q_i    = sqrt(beta) (a_i, 1-a_i, 1_2d)
//	rows na..2na-1     Q_na+i = sqrt(beta) (0_2d, 1_2d)           (padding)
//	keys 0..nb-1       K_j    = sqrt(beta) (b_j, 1-b_j, 0_2d)     value 1
//	keys nb..2nb-1     K_nb+j = sqrt(beta) (0_2d, 1_2d)           value 0
//
// with scale 1/(4d). Query i answers yes when its output exceeds Threshold.
type ANNReduction struct {
	Attention
	ANNParams
}

// ReduceANN builds the attention instance for p.
func ReduceANN(p *ANN) (*ANNReduction, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	par, err := ChooseANNParams(p.B.N, p.A.Dim, p.T, p.Eps)
	if err != nil {
		return nil, err
	}
	na, nb, d := p.A.N, p.B.N, p.A.Dim
	D := 4 * d
	s := math.Sqrt(par.Beta)
	r := &ANNReduction{ANNParams: par}
	a := &r.Attention
	a.Rows, a.Keys, a.Dim, a.Queries = 2*na, 2*nb, D, na
	a.Scale = 1 / float64(D)
	a.Q = make([]float64, a.Rows*D)
	a.K = make([]float64, a.Keys*D)
	a.V = make([]float64, a.Keys)
	balanced := func(dst, x []float64) {
		for c, v := range x {
			dst[c] = s * v
			dst[d+c] = s * (1 - v)
		}
	}
	ones := func(dst []float64) {
		for c := range dst {
			dst[c] = s
		}
	}
	for i := range na {
		balanced(a.Q[i*D:], p.A.Row(i))
		ones(a.Q[i*D+2*d : (i+1)*D])
		ones(a.Q[(na+i)*D+2*d : (na+i+1)*D])
	}
	for j := range nb {
		balanced(a.K[j*D:], p.B.Row(j))
		ones(a.K[(nb+j)*D+2*d : (nb+j+1)*D])
		a.V[j] = 1
	}
	a.YesLower = logistic(par.LogYes)
	a.NoUpper = logistic(par.LogNo)
	if err := a.finish(); err != nil {
		return nil, err
	}
	return r, nil
}

// logistic returns e^x / (1 + e^x), the output r/(1+r) for r = e^x.
func logistic(x float64) float64 {
	if x > 0 {
		return 1 / (1 + math.Exp(-x))
	}
	e := math.Exp(x)
	return e / (1 + e)
}

// ExactOutputs returns the exact attention output of each query row in
// closed form, from the Hamming distances: u_i = r_i / (1 + r_i) with
// r_i = e^(-beta/4) (1/nb) sum_j e^(-gamma H(a_i, b_j)). It is the
// reference the tests hold the attention methods to.
func (r *ANNReduction) ExactOutputs(p *ANN) []float64 {
	pa, pb := pack(p.A), pack(p.B)
	out := make([]float64, p.A.N)
	logs := make([]float64, p.B.N)
	for i := range out {
		for j := range logs {
			logs[j] = -r.Gamma * float64(hamming(pa.row(i), pb.row(j)))
		}
		out[i] = logistic(-r.Beta/4 - math.Log(float64(p.B.N)) + logSumExp(logs))
	}
	return out
}

func logSumExp(x []float64) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = max(m, v)
	}
	var s float64
	for _, v := range x {
		s += math.Exp(v - m)
	}
	return m + math.Log(s)
}
