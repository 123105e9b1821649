package hardness

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// ANNSpec describes a random Gap ANN instance: N query vectors and M
// vectors in B (M = 0 means N) of dimension Dim, uniformly random bits,
// threshold T and gap Eps, plus planted pairs.
type ANNSpec struct {
	N, M, Dim int
	T         int
	Eps       float64
	// Planted is the number of queries given a b at distance exactly T, the
	// hardest yes case; Decoys the number given a b at distance exactly
	// floor((1+Eps) T) + 1, the hardest no case (unless another b is
	// closer). Each query and each b takes part in at most one pair.
	Planted, Decoys int
}

// ANNPair is a planted pair: query A, vector B of B and their distance.
type ANNPair struct {
	A        int `json:"a"`
	B        int `json:"b"`
	Distance int `json:"distance"`
}

// ANNInstance is a generated instance and its planted pairs.
type ANNInstance struct {
	Problem *ANN
	Planted []ANNPair
	Decoys  []ANNPair
}

// GenerateANN draws an instance from r.
func GenerateANN(r *rand.Rand, s ANNSpec) (*ANNInstance, error) {
	if s.M == 0 {
		s.M = s.N
	}
	if s.N < 1 || s.M < 1 || s.Dim < 1 {
		return nil, fmt.Errorf("hardness: sizes must be positive, got n=%d m=%d dim=%d", s.N, s.M, s.Dim)
	}
	if err := checkANNParams(s.Dim, s.T, s.Eps); err != nil {
		return nil, err
	}
	if err := checkPairs(s.Planted, s.Decoys, s.N, s.M); err != nil {
		return nil, err
	}
	far := farDistance(s.T, s.Eps)
	if s.Decoys > 0 && far > s.Dim {
		return nil, fmt.Errorf("hardness: decoys sit at distance floor((1+eps)t)+1 = %d, more than the dimension %d", far, s.Dim)
	}
	a, b := randomBits(r, s.N, s.Dim, 0.5), randomBits(r, s.M, s.Dim, 0.5)
	inst := &ANNInstance{Problem: &ANN{A: a, B: b, T: s.T, Eps: s.Eps}}
	qa, qb := r.Perm(s.N), r.Perm(s.M)
	for k := range s.Planted + s.Decoys {
		i, j, dist := qa[k], qb[k], s.T
		if k >= s.Planted {
			dist = far
		}
		row := b.Row(j)
		copy(row, a.Row(i))
		for _, c := range r.Perm(s.Dim)[:dist] {
			row[c] = 1 - row[c]
		}
		pair := ANNPair{A: i, B: j, Distance: dist}
		if k < s.Planted {
			inst.Planted = append(inst.Planted, pair)
		} else {
			inst.Decoys = append(inst.Decoys, pair)
		}
	}
	return inst, nil
}

func checkPairs(planted, decoys, n, m int) error {
	if planted < 0 || decoys < 0 {
		return fmt.Errorf("hardness: planted and decoy counts must be >= 0, got %d and %d", planted, decoys)
	}
	if planted+decoys > min(n, m) {
		return fmt.Errorf("hardness: %d planted + %d decoy pairs need as many distinct queries and vectors, but there are %d and %d", planted, decoys, n, m)
	}
	return nil
}

func randomBits(r *rand.Rand, n, dim int, density float64) Vectors {
	v := Vectors{N: n, Dim: dim, Data: make([]float64, n*dim)}
	for i := range v.Data {
		if r.Float64() < density {
			v.Data[i] = 1
		}
	}
	return v
}

// MaxIPSpec describes a random binary maximum inner product instance: N
// queries and M vectors in B (M = 0 means N) of dimension Dim with
// independent bits equal to 1 with probability Density (0 means 1/2),
// threshold Tau and gap 1.
type MaxIPSpec struct {
	N, M, Dim int
	Tau       int
	Density   float64
	// Planted is the number of queries given a b with inner product exactly
	// Tau (the hardest yes case), Decoys the number given one with exactly
	// Tau - 1 (the hardest no case, unless another b does better). A query
	// with fewer than Tau ones gets ones added first.
	Planted, Decoys int
}

// MaxIPPair is a planted pair: query A, vector B of B and their inner
// product.
type MaxIPPair struct {
	A     int `json:"a"`
	B     int `json:"b"`
	Inner int `json:"inner"`
}

// MaxIPInstance is a generated instance and its planted pairs.
type MaxIPInstance struct {
	Problem *MaxIP
	Planted []MaxIPPair
	Decoys  []MaxIPPair
}

// GenerateMaxIP draws an instance from r.
func GenerateMaxIP(r *rand.Rand, s MaxIPSpec) (*MaxIPInstance, error) {
	if s.M == 0 {
		s.M = s.N
	}
	if s.Density == 0 {
		s.Density = 0.5
	}
	if s.N < 1 || s.M < 1 || s.Dim < 1 {
		return nil, fmt.Errorf("hardness: sizes must be positive, got n=%d m=%d dim=%d", s.N, s.M, s.Dim)
	}
	if !(s.Density > 0 && s.Density <= 1) {
		return nil, fmt.Errorf("hardness: density must be in (0, 1], got %g", s.Density)
	}
	if s.Tau < 0 || s.Tau > s.Dim {
		return nil, fmt.Errorf("hardness: tau must be in [0, %d] (the dimension), got %d", s.Dim, s.Tau)
	}
	if err := checkPairs(s.Planted, s.Decoys, s.N, s.M); err != nil {
		return nil, err
	}
	if s.Decoys > 0 && s.Tau < 1 {
		return nil, fmt.Errorf("hardness: decoys have inner product tau - 1, so they need tau >= 1")
	}
	a, b := randomBits(r, s.N, s.Dim, s.Density), randomBits(r, s.M, s.Dim, s.Density)
	inst := &MaxIPInstance{Problem: &MaxIP{A: a, B: b, Tau: float64(s.Tau), Gap: 1}}
	qa, qb := r.Perm(s.N), r.Perm(s.M)
	for k := range s.Planted + s.Decoys {
		i, j, ip := qa[k], qb[k], s.Tau
		if k >= s.Planted {
			ip = s.Tau - 1
		}
		x, y := a.Row(i), b.Row(j)
		var ones, zeros []int
		for c, v := range x {
			if v == 1 {
				ones = append(ones, c)
			} else {
				zeros = append(zeros, c)
			}
		}
		r.Shuffle(len(zeros), func(p, q int) { zeros[p], zeros[q] = zeros[q], zeros[p] })
		for len(ones) < s.Tau {
			c := zeros[len(zeros)-1]
			zeros = zeros[:len(zeros)-1]
			x[c] = 1
			ones = append(ones, c)
		}
		for c := range y {
			y[c] = 0
		}
		for _, c := range zeros {
			if r.Float64() < s.Density {
				y[c] = 1
			}
		}
		for _, c := range r.Perm(len(ones))[:ip] {
			y[ones[c]] = 1
		}
		pair := MaxIPPair{A: i, B: j, Inner: ip}
		if k < s.Planted {
			inst.Planted = append(inst.Planted, pair)
		} else {
			inst.Decoys = append(inst.Decoys, pair)
		}
	}
	return inst, nil
}

// DefaultANNThreshold returns the largest t in [1, dim] for which n m
// uniformly random pairs are expected to have fewer than 1/2 pair within
// (1+eps) t, so that planted pairs are (nearly) the only close ones; 1 if
// even t = 1 fails (dim too small for n and m).
func DefaultANNThreshold(n, m, dim int, eps float64) int {
	best := 1
	for t := 1; t <= dim; t++ {
		k := int(math.Floor((1 + eps) * float64(t)))
		if float64(n)*float64(m)*binomialCDF(dim, 0.5, k) > 0.5 {
			break
		}
		best = t
	}
	return best
}

// DefaultMaxIPTau returns the smallest tau in [1, dim] for which n m random
// pairs with bit density p are expected to have fewer than 1/2 pair with
// inner product >= tau; dim if none.
func DefaultMaxIPTau(n, m, dim int, density float64) int {
	if density == 0 {
		density = 0.5
	}
	for tau := 1; tau <= dim; tau++ {
		// P(Bin(dim, p^2) >= tau) = 1 - P(<= tau-1).
		tail := binomialSF(dim, density*density, tau)
		if float64(n)*float64(m)*tail <= 0.5 {
			return tau
		}
	}
	return dim
}

// binomialCDF returns P(Bin(n, p) <= k).
func binomialCDF(n int, p float64, k int) float64 {
	var s float64
	for i := 0; i <= min(k, n); i++ {
		s += binomialPMF(n, p, i)
	}
	return min(s, 1)
}

// binomialSF returns P(Bin(n, p) >= k).
func binomialSF(n int, p float64, k int) float64 {
	var s float64
	for i := max(k, 0); i <= n; i++ {
		s += binomialPMF(n, p, i)
	}
	return min(s, 1)
}

func binomialPMF(n int, p float64, k int) float64 {
	ln, _ := math.Lgamma(float64(n + 1))
	lk, _ := math.Lgamma(float64(k + 1))
	lnk, _ := math.Lgamma(float64(n - k + 1))
	lp := ln - lk - lnk
	if k > 0 {
		lp += float64(k) * math.Log(p)
	}
	if n-k > 0 {
		lp += float64(n-k) * math.Log1p(-p)
	}
	return math.Exp(lp)
}
