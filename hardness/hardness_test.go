package hardness

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/fastattn/fastattn"
	"github.com/fastattn/fastattn/attn"
)

// solveAll solves a with every method of the library and calls check with
// each certified solution. The exact method must succeed and be certified;
// another method may decline (unsupported input, an error target it cannot
// reach, or more time than the test allows), which is logged.
func solveAll(t *testing.T, name string, a *Attention, check func(method string, s *Solution)) {
	t.Helper()
	for _, m := range append(fastattn.Methods(), fastattn.Auto) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		s, err := a.Solve(ctx, m, 0)
		cancel()
		if m == "exact" {
			if err != nil {
				t.Fatalf("%s: exact: %v", name, err)
			}
			if !s.Certified {
				// Exact's rounding bound can exceed a budget below float64's
				// reach; its answers are checked all the same.
				t.Logf("%s: exact is not certified: bound %g, budget %g", name, s.Report.ErrorBound, a.Eps)
				check(m, s)
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, attn.ErrUnsupported), errors.Is(err, fastattn.ErrInvalidInput), errors.Is(err, context.DeadlineExceeded):
			t.Logf("%s: %s declines: %v", name, m, err)
			continue
		default:
			t.Fatalf("%s: %s: %v", name, m, err)
		}
		if !s.Certified {
			t.Logf("%s: %s bound %g exceeds the budget %g; answers not checked", name, m, s.Report.ErrorBound, a.Eps)
			continue
		}
		if len(s.Answers) != a.Queries || len(s.Outputs) != a.Queries {
			t.Fatalf("%s: %s: %d answers and %d outputs for %d queries", name, m, len(s.Answers), len(s.Outputs), a.Queries)
		}
		check(m, s)
	}
}

type annCase struct {
	n, m, dim, t    int
	eps             float64
	planted, decoys int
}

func annCases() []annCase {
	return []annCase{
		{n: 32, dim: 16, t: 2, eps: 1, planted: 4, decoys: 4},
		{n: 64, dim: 32, t: 4, eps: 1, planted: 8, decoys: 8},
		{n: 48, m: 80, dim: 24, t: 3, eps: 0.5, planted: 5, decoys: 5},
		{n: 100, m: 20, dim: 12, t: 2, eps: 0.25, planted: 3, decoys: 3},
		{n: 40, dim: 20, t: 5, eps: 0.6, planted: 0, decoys: 0},     // random only
		{n: 30, dim: 10, t: 2, eps: 1, planted: 10, decoys: 10},     // dense: many near pairs
		{n: 16, dim: 40, t: 0, eps: 1, planted: 4, decoys: 4},       // exact matches
		{n: 64, dim: 64, t: 6, eps: 1, planted: 8, decoys: 8},       // the CLI's regime
		{n: 20, m: 1, dim: 16, t: 3, eps: 1, planted: 1, decoys: 0}, // a single b
	}
}

func TestANNAgreesWithBruteForce(t *testing.T) {
	var yes, no, gap int
	for ci, c := range annCases() {
		for seed := range uint64(6) {
			name := fmt.Sprintf("case %d seed %d", ci, seed)
			r := rand.New(rand.NewPCG(seed, uint64(ci)))
			inst, err := GenerateANN(r, ANNSpec{N: c.n, M: c.m, Dim: c.dim, T: c.t, Eps: c.eps, Planted: c.planted, Decoys: c.decoys})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			p := inst.Problem
			red, err := ReduceANN(p)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			near := p.Nearest()
			for _, pr := range inst.Planted {
				if near[pr.A] > p.T {
					t.Fatalf("%s: planted query %d has nearest distance %d > t = %d", name, pr.A, near[pr.A], p.T)
				}
			}
			for _, h := range near {
				switch {
				case h <= p.T:
					yes++
				case p.InGap(h):
					gap++
				default:
					no++
				}
			}
			solveAll(t, name, &red.Attention, func(m string, s *Solution) {
				for i, h := range near {
					if p.InGap(h) {
						continue
					}
					if want := h <= p.T; s.Answers[i] != want {
						t.Errorf("%s: %s: query %d (nearest distance %d, t %d, far %d): answer %v, brute force %v; output %g, threshold %g",
							name, m, i, h, p.T, red.Far, s.Answers[i], want, s.Outputs[i], red.Threshold)
					}
				}
			})
		}
	}
	t.Logf("queries: %d yes, %d no, %d in the gap", yes, no, gap)
	if yes < 100 || no < 100 || gap < 20 {
		t.Fatalf("too few queries of some kind to be a test: %d yes, %d no, %d in the gap", yes, no, gap)
	}
}

// TestANNDerivation checks the derivation itself, independently of any
// attention method: the closed-form output of every query lies on its side
// of the bounds, and the exact method reproduces the closed form.
func TestANNDerivation(t *testing.T) {
	for ci, c := range annCases() {
		r := rand.New(rand.NewPCG(77, uint64(ci)))
		inst, err := GenerateANN(r, ANNSpec{N: c.n, M: c.m, Dim: c.dim, T: c.t, Eps: c.eps, Planted: c.planted, Decoys: c.decoys})
		if err != nil {
			t.Fatal(err)
		}
		p := inst.Problem
		red, err := ReduceANN(p)
		if err != nil {
			t.Fatal(err)
		}
		u := red.ExactOutputs(p)
		for i, h := range p.Nearest() {
			switch {
			case h <= p.T && !(u[i] >= red.YesLower*(1-1e-12)):
				t.Errorf("case %d: yes query %d (distance %d): u = %g < YesLower %g", ci, i, h, u[i], red.YesLower)
			case h >= red.Far && !(u[i] <= red.NoUpper*(1+1e-12)):
				t.Errorf("case %d: no query %d (distance %d): u = %g > NoUpper %g", ci, i, h, u[i], red.NoUpper)
			}
		}
		if got := math.Exp(red.LogYes - red.LogNo); math.Abs(got/red.Ratio-1) > 1e-9 {
			t.Errorf("case %d: l/h = %g, Ratio %g", ci, got, red.Ratio)
		}
		if b := red.EntryBound(); math.Abs(b*b/red.Beta-1) > 1e-12 {
			t.Errorf("case %d: entry bound %g, sqrt(beta) %g", ci, b, math.Sqrt(red.Beta))
		}
		q, k, v := red.Tensors()
		res, err := fastattn.Attend(context.Background(), q, k, v, fastattn.Options{Scale: red.Scale, Method: "exact"})
		if err != nil {
			t.Fatal(err)
		}
		for i := range u {
			if got := res.Out.Data[i]; math.Abs(got-u[i]) > 1e-9*u[i] {
				t.Errorf("case %d: query %d: exact attention %g, closed form %g", ci, i, got, u[i])
			}
		}
		// The padding rows see nb keys of logit 0 and nb dummies of beta/2.
		if got, want := res.Out.Data[p.A.N], 1/(1+math.Exp(red.Beta/2)); math.Abs(got-want) > 1e-9*want {
			t.Errorf("case %d: padding row: %g, want %g", ci, got, want)
		}
	}
}

// TestANNParamsOptimal checks that the chosen beta maximises the budget and
// grows like log n at fixed d/t, the regime B = Theta(sqrt(log n)).
func TestANNParamsOptimal(t *testing.T) {
	budget := func(nb, d, t, far int, gamma float64) float64 {
		l := math.Exp(-gamma*float64(d+t)) / float64(nb)
		h := math.Exp(-gamma * float64(d+far))
		return (l/(1+l) - h/(1+h)) / 4
	}
	for _, c := range []struct {
		nb, d, t int
		eps      float64
	}{{64, 32, 4, 1}, {1000, 64, 6, 1}, {10, 8, 1, 2}, {4096, 48, 8, 0.5}} {
		p, err := ChooseANNParams(c.nb, c.d, c.t, c.eps)
		if err != nil {
			t.Fatal(err)
		}
		best := budget(c.nb, c.d, c.t, p.Far, p.Gamma)
		for _, f := range []float64{0.9, 0.97, 1.03, 1.1} {
			if b := budget(c.nb, c.d, c.t, p.Far, f*p.Gamma); b > best*(1+1e-9) {
				t.Errorf("%+v: gamma x %g gives budget %g > %g at the chosen gamma", c, f, b, best)
			}
		}
	}
	// d = 8 log2 n, t = log2 n: beta / ln n should settle near 4 C/(C0 eps) = 32.
	for _, lg := range []int{6, 10, 14, 18} {
		n := 1 << lg
		p, err := ChooseANNParams(n, 8*lg, lg, 1)
		if err != nil {
			t.Fatal(err)
		}
		ratio := p.Beta / math.Log(float64(n))
		t.Logf("n = 2^%d: beta = %.1f, beta/ln n = %.2f, budget e^%.1f", lg, p.Beta, ratio, p.LogYes)
		if ratio < 25 || ratio > 40 {
			t.Errorf("n = 2^%d: beta / ln n = %g, want about 32", lg, ratio)
		}
	}
}

func TestMaxIPAgreesWithBruteForce(t *testing.T) {
	var yes, no int
	cases := []struct {
		n, m, dim, tau  int
		density         float64
		planted, decoys int
	}{
		{n: 32, dim: 8, tau: 6, planted: 4, decoys: 4},
		{n: 64, dim: 16, tau: 9, planted: 8, decoys: 8},
		{n: 50, m: 90, dim: 4, tau: 3, density: 0.6, planted: 5, decoys: 5},
		{n: 100, m: 10, dim: 2, tau: 2, planted: 3, decoys: 3}, // tiny dimension
		{n: 40, dim: 12, tau: 5, density: 0.4},                 // random only
		{n: 20, m: 1, dim: 6, tau: 4, planted: 1},
	}
	for ci, c := range cases {
		for seed := range uint64(6) {
			name := fmt.Sprintf("case %d seed %d", ci, seed)
			r := rand.New(rand.NewPCG(seed, 100+uint64(ci)))
			inst, err := GenerateMaxIP(r, MaxIPSpec{N: c.n, M: c.m, Dim: c.dim, Tau: c.tau, Density: c.density, Planted: c.planted, Decoys: c.decoys})
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			p := inst.Problem
			red, err := ReduceMaxIP(p)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			best := p.MaxInner()
			for _, pr := range inst.Planted {
				if best[pr.A] < p.Tau {
					t.Fatalf("%s: planted query %d has max inner product %g < tau %g", name, pr.A, best[pr.A], p.Tau)
				}
			}
			for _, v := range best {
				if v >= p.Tau {
					yes++
				} else {
					no++
				}
			}
			checkMaxIP(t, name, p, red, best)
		}
	}
	t.Logf("queries: %d yes, %d no", yes, no)
	if yes < 100 || no < 100 {
		t.Fatalf("too few queries of some kind: %d yes, %d no", yes, no)
	}
}

func checkMaxIP(t *testing.T, name string, p *MaxIP, red *MaxIPReduction, best []float64) {
	t.Helper()
	u := red.ExactOutputs(p)
	for i, v := range best {
		switch {
		case v >= p.Tau && !(u[i] >= red.YesLower*(1-1e-12)):
			t.Errorf("%s: yes query %d: u = %g < %g", name, i, u[i], red.YesLower)
		case v <= p.Tau-p.Gap && !(u[i] <= red.NoUpper*(1+1e-12)):
			t.Errorf("%s: no query %d: u = %g > %g", name, i, u[i], red.NoUpper)
		}
	}
	solveAll(t, name, &red.Attention, func(m string, s *Solution) {
		for i, v := range best {
			if p.InGap(v) {
				continue
			}
			if want := v >= p.Tau; s.Answers[i] != want {
				t.Errorf("%s: %s: query %d (max inner product %g, tau %g): answer %v, brute force %v; output %g, threshold %g",
					name, m, i, v, p.Tau, s.Answers[i], want, s.Outputs[i], red.Threshold)
			}
		}
		if m == "exact" {
			for i := range u {
				if math.Abs(s.Outputs[i]-u[i]) > 1e-9 {
					t.Errorf("%s: query %d: exact attention %g, closed form %g", name, i, s.Outputs[i], u[i])
				}
			}
		}
	})
}

// TestMaxIPRealVectors runs the reduction on integer vectors with large
// entries in tiny dimension (the regime of Gupta et al.'s hardness) and on
// real vectors with a gap.
func TestMaxIPRealVectors(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for ci, c := range []struct {
		n, dim  int
		entries float64
		integer bool
		gap     float64
	}{{60, 2, 50, true, 1}, {60, 3, 20, true, 1}, {80, 4, 1, false, 0.3}} {
		gen := func() Vectors {
			v := Vectors{N: c.n, Dim: c.dim, Data: make([]float64, c.n*c.dim)}
			for i := range v.Data {
				if c.integer {
					v.Data[i] = float64(r.IntN(2*int(c.entries)+1)) - c.entries
				} else {
					v.Data[i] = c.entries * r.NormFloat64()
				}
			}
			return v
		}
		p := &MaxIP{A: gen(), B: gen(), Gap: c.gap}
		// A threshold near the median of the maxima gives both answers.
		best := p.MaxInner()
		sorted := append([]float64(nil), best...)
		slices.Sort(sorted)
		p.Tau = math.Round(sorted[len(sorted)/2])
		red, err := ReduceMaxIP(p)
		if err != nil {
			t.Fatal(err)
		}
		checkMaxIP(t, fmt.Sprintf("real case %d", ci), p, red, best)
	}
}

func TestGenerators(t *testing.T) {
	gen := func(seed uint64) *ANNInstance {
		inst, err := GenerateANN(rand.New(rand.NewPCG(seed, 1)), ANNSpec{N: 50, M: 40, Dim: 30, T: 4, Eps: 0.5, Planted: 7, Decoys: 6})
		if err != nil {
			t.Fatal(err)
		}
		return inst
	}
	a, b := gen(3), gen(3)
	if fmt.Sprint(a.Problem.A.Data, a.Problem.B.Data, a.Planted) != fmt.Sprint(b.Problem.A.Data, b.Problem.B.Data, b.Planted) {
		t.Fatal("same seed, different instances")
	}
	if err := a.Problem.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(a.Planted) != 7 || len(a.Decoys) != 6 || a.Problem.A.N != 50 || a.Problem.B.N != 40 {
		t.Fatalf("planted %d, decoys %d, sizes %d, %d", len(a.Planted), len(a.Decoys), a.Problem.A.N, a.Problem.B.N)
	}
	seenA, seenB := map[int]bool{}, map[int]bool{}
	for _, pr := range append(a.Planted, a.Decoys...) {
		if h := Hamming(a.Problem.A.Row(pr.A), a.Problem.B.Row(pr.B)); h != pr.Distance {
			t.Errorf("pair %+v: distance %d", pr, h)
		}
		if seenA[pr.A] || seenB[pr.B] {
			t.Errorf("pair %+v reuses a vector", pr)
		}
		seenA[pr.A], seenB[pr.B] = true, true
	}
	for _, pr := range a.Decoys {
		if pr.Distance != a.Problem.FarDistance() || pr.Distance != 7 {
			t.Errorf("decoy %+v, want distance floor(1.5*4)+1 = 7", pr)
		}
	}

	m, err := GenerateMaxIP(rand.New(rand.NewPCG(1, 2)), MaxIPSpec{N: 30, Dim: 10, Tau: 8, Density: 0.3, Planted: 5, Decoys: 5})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Problem.A.CheckBinary(); err != nil {
		t.Fatal(err)
	}
	for _, pr := range append(m.Planted, m.Decoys...) {
		if ip := Dot(m.Problem.A.Row(pr.A), m.Problem.B.Row(pr.B)); int(ip) != pr.Inner {
			t.Errorf("pair %+v: inner product %g", pr, ip)
		}
	}
	for _, pr := range m.Decoys {
		if pr.Inner != 7 {
			t.Errorf("decoy %+v, want inner product 7", pr)
		}
	}

	bad := []ANNSpec{
		{N: 0, Dim: 4, T: 1, Eps: 1},
		{N: 4, Dim: 4, T: 5, Eps: 1},
		{N: 4, Dim: 4, T: 1, Eps: 0},
		{N: 4, Dim: 4, T: 1, Eps: 1, Planted: 3, Decoys: 2},
		{N: 4, Dim: 4, T: 3, Eps: 1, Decoys: 1}, // decoy distance 7 > 4
	}
	for _, s := range bad {
		if _, err := GenerateANN(rand.New(rand.NewPCG(1, 1)), s); err == nil {
			t.Errorf("GenerateANN(%+v): no error", s)
		}
	}
	badM := []MaxIPSpec{
		{N: 4, Dim: 4, Tau: 5},
		{N: 4, Dim: 4, Tau: 2, Density: 1.5},
		{N: 4, Dim: 4, Tau: 0, Decoys: 1},
		{N: 2, Dim: 4, Tau: 2, Planted: 3},
	}
	for _, s := range badM {
		if _, err := GenerateMaxIP(rand.New(rand.NewPCG(1, 1)), s); err == nil {
			t.Errorf("GenerateMaxIP(%+v): no error", s)
		}
	}
}

func TestDefaults(t *testing.T) {
	// n^2 random pairs, none expected within (1+eps) t.
	for _, c := range []struct{ n, dim int }{{256, 64}, {1024, 64}, {64, 32}} {
		tt := DefaultANNThreshold(c.n, c.n, c.dim, 1)
		k := int(2 * tt)
		if p := float64(c.n*c.n) * binomialCDF(c.dim, 0.5, k); p > 0.5 || tt < 1 {
			t.Errorf("%+v: t = %d, expected close random pairs %g", c, tt, p)
		}
		if p := float64(c.n*c.n) * binomialCDF(c.dim, 0.5, 2*(tt+1)); p <= 0.5 && tt+1 <= c.dim {
			t.Errorf("%+v: t = %d is not the largest", c, tt)
		}
		tau := DefaultMaxIPTau(c.n, c.n, c.dim/4, 0.5)
		if p := float64(c.n*c.n) * binomialSF(c.dim/4, 0.25, tau); p > 0.5 && tau < c.dim/4 {
			t.Errorf("%+v: tau = %d, expected random pairs reaching it %g", c, tau, p)
		}
	}
	if got := DefaultANNThreshold(1000, 1000, 4, 1); got != 1 {
		t.Errorf("tiny dimension: t = %d, want the floor 1", got)
	}
	if s := binomialCDF(10, 0.3, 10); math.Abs(s-1) > 1e-12 {
		t.Errorf("CDF(10) = %g", s)
	}
	if s := binomialSF(5, 0.5, 5); math.Abs(s-1.0/32) > 1e-15 {
		t.Errorf("SF = %g", s)
	}
}

func TestValidation(t *testing.T) {
	bits := func(n, dim int, x float64) Vectors {
		v := Vectors{N: n, Dim: dim, Data: make([]float64, n*dim)}
		for i := range v.Data {
			v.Data[i] = x
		}
		return v
	}
	bad := []*ANN{
		{A: bits(2, 3, 0), B: bits(2, 4, 0), T: 1, Eps: 1},
		{A: bits(2, 3, 0.5), B: bits(2, 3, 0), T: 1, Eps: 1},
		{A: bits(2, 3, 0), B: bits(2, 3, 0), T: -1, Eps: 1},
		{A: bits(2, 3, 0), B: bits(2, 3, 0), T: 1, Eps: math.Inf(1)},
		{A: bits(0, 3, 0), B: bits(2, 3, 0), T: 1, Eps: 1},
	}
	for i, p := range bad {
		if _, err := ReduceANN(p); err == nil {
			t.Errorf("bad ANN %d: no error", i)
		}
	}
	// Too large for float64: weights of e^-700 and beyond.
	if _, err := ChooseANNParams(1<<20, 4000, 1, 0.1); err == nil {
		t.Error("underflowing parameters accepted")
	}
	badM := []*MaxIP{
		{A: bits(2, 3, 0), B: bits(2, 4, 0), Tau: 1, Gap: 1},
		{A: bits(2, 3, 0), B: bits(2, 3, 0), Tau: math.NaN(), Gap: 1},
		{A: bits(2, 3, 0), B: bits(2, 3, 0), Tau: 1, Gap: 0},
	}
	for i, p := range badM {
		if _, err := ReduceMaxIP(p); err == nil {
			t.Errorf("bad MaxIP %d: no error", i)
		}
	}
	if _, err := NewVectors([]float64{1, 2, 3}, 2, 2); err == nil {
		t.Error("NewVectors: size mismatch accepted")
	}
	if _, err := NewVectors([]float64{1, math.NaN()}, 1, 2); err == nil {
		t.Error("NewVectors: NaN accepted")
	}
}
