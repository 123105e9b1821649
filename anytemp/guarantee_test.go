package anytemp

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
	"github.com/fastattn/fastattn/internal/reference"
)

// gen is a random problem: Gaussian Q, K (entries of standard deviation
// qk) and values of mixed sign, then reshaped by shape.
type gen struct {
	heads, n, m, d, e int
	qk, scale         float64
	causal            bool
	keyLens           []int
	shape             func(r *rand.Rand, p *attn.Problem[float64])
}

func (g gen) make(seed uint64) *attn.Problem[float64] {
	r := rand.New(rand.NewPCG(seed, 77))
	fill := func(k int, s float64) []float64 {
		x := make([]float64, k)
		for i := range x {
			x[i] = s * r.NormFloat64()
		}
		return x
	}
	p := &attn.Problem[float64]{
		Heads: max(g.heads, 1), N: g.n, M: g.m, D: g.d, E: g.e,
		Scale: g.scale, Causal: g.causal, KeyLens: g.keyLens,
	}
	if p.Scale == 0 {
		p.Scale = 1 / math.Sqrt(float64(g.d))
	}
	p.Q = fill(p.Heads*g.n*g.d, g.qk)
	p.K = fill(p.Heads*g.m*g.d, g.qk)
	p.V = fill(p.Heads*g.m*g.e, 1)
	// Mixed signs and magnitudes in the values: some columns offset.
	for j := range p.Heads * g.m {
		p.V[j*g.e] += 3
		if g.e > 1 {
			p.V[j*g.e+1] *= 1 + 10*r.Float64()
		}
	}
	if g.shape != nil {
		g.shape(r, p)
	}
	return p
}

// checkGuarantee runs the method on p (and its float32 version) and verifies the
// guarantee on every entry against the float64 reference. It returns the
// stats of the float64 run.
func checkGuarantee(t *testing.T, m Method, p *attn.Problem[float64], eps float64) attn.Stats {
	t.Helper()
	p.Eps = eps
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	st := checkT(t, m, p, "float64")
	checkT(t, m, attntest.To32(p), "float32")
	return st
}

func checkT[T attn.Float](t *testing.T, m Method, p *attn.Problem[T], name string) attn.Stats {
	t.Helper()
	out := attn.NewOutput(p)
	st, err := attn.Forward(context.Background(), m, p, out)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if !(st.ErrorBound <= p.Eps) || !(st.ErrorBound > 0) {
		t.Fatalf("%s: error bound %g, eps %g", name, st.ErrorBound, p.Eps)
	}
	want, wantLSE := reference.Attention(p)
	worst := 0.0
	for h := range p.Heads {
		colMax := attn.ColumnMaxAbs(p, h, p.KeyLen(h))
		for i := range p.N {
			row := h*p.N + i
			// The reference's own rounding grows with the logits.
			var q1, k1 float64
			for tt := range p.D {
				q1 += math.Abs(float64(p.Q[row*p.D+tt]))
			}
			lo, hi := p.KeyRange(h, i)
			for j := lo; j < hi; j++ {
				for tt := range p.D {
					k1 = max(k1, math.Abs(float64(p.K[(p.KVHead(h)*p.M+j)*p.D+tt])))
				}
			}
			slack := 1e-13 + 64*u64*p.Scale*q1*k1
			for c := range p.E {
				got, ref := float64(out.O[row*p.E+c]), want[row*p.E+c]
				err := math.Abs(got - ref)
				if colMax[c] > 0 {
					worst = max(worst, err/colMax[c])
				}
				if !(err <= (st.ErrorBound+slack)*colMax[c]) {
					t.Fatalf("%s: head %d row %d col %d: got %.12g want %.12g: error %.3g > bound %.3g * max|V| %.3g (details %v)",
						name, h, i, c, got, ref, err, st.ErrorBound, colMax[c], st.Details)
				}
			}
			gl, rl := out.LSE[row], wantLSE[row]
			if math.IsInf(rl, -1) {
				if !math.IsInf(gl, -1) {
					t.Fatalf("%s: row %d has no key but LSE %g", name, i, gl)
				}
				continue
			}
			if !(math.Abs(gl-rl) <= math.Log1p(st.ErrorBound)+slack*(1+math.Abs(rl))) {
				t.Fatalf("%s: head %d row %d: LSE %.15g, reference %.15g", name, h, i, gl, rl)
			}
		}
	}
	if worst > st.ErrorBound {
		t.Fatalf("%s: observed %g above bound %g", name, worst, st.ErrorBound)
	}
	return st
}

// TestGuaranteeRandom: d in {1,2,3,4}, entry scales 0.1 (nearly uniform
// attention) to 100 (nearly one-hot), several eps.
func TestGuaranteeRandom(t *testing.T) {
	m := 3000
	if testing.Short() {
		m = 600
	}
	// The inputs must exercise every path: expansions, pruning, brute
	// force and 1-D cells.
	var expanded, pruned, brute, cells int64
	defer func() {
		if expanded == 0 || pruned == 0 || brute == 0 || cells == 0 {
			t.Errorf("paths not exercised: %d expanded, %d pruned, %d brute, %d cells", expanded, pruned, brute, cells)
		}
	}()
	for _, d := range []int{1, 2, 3, 4} {
		for _, qk := range []float64{0.1, 1, 3, 10, 100} {
			for k, eps := range []float64{1e-2, 1e-3, 1e-6} {
				g := gen{n: 50, m: m, d: d, e: 3, qk: qk, scale: 1}
				name := fmt.Sprintf("d=%d/qk=%g/eps=%g", d, qk, eps)
				t.Run(name, func(t *testing.T) {
					st := checkGuarantee(t, Method{}, g.make(uint64(100*d+k)+uint64(qk*7)), eps)
					expanded += st.Details["nodes_expanded"].(int64)
					pruned += st.Details["nodes_pruned"].(int64)
					brute += st.Details["keys_brute_forced"].(int64)
					cells += st.Details["cells"].(int64)
				})
			}
		}
	}
}

// TestGuaranteeShapes covers the inputs a treecode gets wrong first.
func TestGuaranteeShapes(t *testing.T) {
	dup := func(r *rand.Rand, p *attn.Problem[float64]) {
		// Each key repeated many times, a few distinct ones.
		for j := range p.M {
			src := r.IntN(5)
			copy(p.K[j*p.D:(j+1)*p.D], p.K[src*p.D:(src+1)*p.D])
		}
	}
	cluster := func(r *rand.Rand, p *attn.Problem[float64]) {
		c := make([]float64, 4*p.D)
		for i := range c {
			c[i] = 20 * r.NormFloat64()
		}
		for j := range p.M {
			k := r.IntN(4)
			for t := range p.D {
				p.K[j*p.D+t] = c[k*p.D+t] + 1e-3*r.NormFloat64()
			}
		}
	}
	collinear := func(r *rand.Rand, p *attn.Problem[float64]) {
		dir := make([]float64, p.D)
		for t := range dir {
			dir[t] = r.NormFloat64()
		}
		for j := range p.M {
			a := 5 * r.NormFloat64()
			for t := range p.D {
				p.K[j*p.D+t] = 1 + a*dir[t]
			}
		}
	}
	sphere := func(r *rand.Rand, p *attn.Problem[float64]) {
		for j := range p.M {
			k := p.K[j*p.D : (j+1)*p.D]
			var s2 float64
			for _, x := range k {
				s2 += x * x
			}
			for t := range k {
				k[t] *= 10 / math.Sqrt(s2)
			}
		}
	}
	huge := func(r *rand.Rand, p *attn.Problem[float64]) {
		// logits up to about 1e6
		for i := range p.Q {
			p.Q[i] *= 300
		}
		for i := range p.K {
			p.K[i] *= 300
		}
	}
	tiny := func(r *rand.Rand, p *attn.Problem[float64]) {
		for i := range p.Q {
			p.Q[i] *= 1e-9
		}
	}
	shapes := []struct {
		name  string
		shape func(r *rand.Rand, p *attn.Problem[float64])
		qk    []float64
	}{
		{"duplicate", dup, []float64{0.3, 3, 30}},
		{"clustered", cluster, []float64{0.1, 1, 10}},
		{"collinear", collinear, []float64{0.3, 3, 30}},
		{"sphere", sphere, []float64{0.1, 1, 10}},
		{"logits-1e6", huge, []float64{1, 3}},
		{"zero-temperature-limit", tiny, []float64{1}},
	}
	for _, d := range []int{1, 2, 3, 4} {
		for _, sh := range shapes {
			for _, qk := range sh.qk {
				g := gen{n: 30, m: 1500, d: d, e: 4, qk: qk, scale: 1, shape: sh.shape}
				t.Run(fmt.Sprintf("%s/d=%d/qk=%g", sh.name, d, qk), func(t *testing.T) {
					st := checkGuarantee(t, Method{}, g.make(uint64(d)*31+uint64(qk*10)), 1e-3)
					if sh.name == "collinear" && st.Details["effective_dim"].(int) != 1 {
						t.Errorf("collinear keys in d=%d ran in %v dimensions", d, st.Details["effective_dim"])
					}
				})
			}
		}
	}
}

// TestLogits1e6 checks that entries near 1e6 in the logits are met in both
// types (the float32 inputs are exact in float64).
func TestLogits1e6(t *testing.T) {
	for _, d := range []int{1, 2, 3} {
		g := gen{n: 20, m: 300, d: d, e: 2, qk: 1000, scale: 1}
		p := g.make(uint64(d))
		st := checkGuarantee(t, Method{}, p, 1e-3)
		if lm := st.Details["logit_magnitude"].(float64); lm < 1e6 {
			t.Errorf("d=%d: logit magnitude %g, want >= 1e6", d, lm)
		}
	}
}

// lowRank returns a shape embedding Q and K in a random rank-r subspace
// of R^d (plus noise of size noise).
func lowRank(rank int, noise float64) func(r *rand.Rand, p *attn.Problem[float64]) {
	return func(r *rand.Rand, p *attn.Problem[float64]) {
		basis := make([]float64, rank*p.D)
		for i := range basis {
			basis[i] = r.NormFloat64() / math.Sqrt(float64(p.D))
		}
		embed := func(x []float64, rows int, s float64) {
			for i := range rows {
				z := make([]float64, rank)
				for a := range z {
					z[a] = s * r.NormFloat64()
				}
				for t := range p.D {
					var v float64
					for a := range z {
						v += z[a] * basis[a*p.D+t]
					}
					x[i*p.D+t] = v + noise*r.NormFloat64()
				}
			}
		}
		embed(p.Q, p.Heads*p.N, 3)
		embed(p.K, p.Heads*p.M, 3)
	}
}

func TestLowRank(t *testing.T) {
	for _, d := range []int{32, 64} {
		for _, rank := range []int{1, 2, 3} {
			for _, qk := range []float64{1, 10} {
				g := gen{n: 40, m: 500, d: d, e: 4, qk: qk, scale: qk, shape: lowRank(rank, 0)}
				t.Run(fmt.Sprintf("d=%d/rank=%d/scale=%g", d, rank, qk), func(t *testing.T) {
					st := checkGuarantee(t, Method{}, g.make(uint64(d+rank)), 1e-3)
					if got := st.Details["effective_dim"].(int); got != rank {
						t.Errorf("effective dimension %d, want %d", got, rank)
					}
				})
			}
		}
	}
	// A tiny full-rank perturbation: still reduced, its effect charged.
	g := gen{n: 40, m: 500, d: 64, e: 4, scale: 0.125, shape: lowRank(3, 1e-9)}
	st := checkGuarantee(t, Method{}, g.make(9), 1e-3)
	if got := st.Details["effective_dim"].(int); got != 3 {
		t.Errorf("noisy rank 3 in d=64: effective dimension %d, want 3", got)
	}
	if re := st.Details["rank_error"].(float64); !(re > 0) {
		t.Errorf("rank error %g not charged", re)
	}
	// Noise too large to ignore: must not reduce to 3.
	g = gen{n: 40, m: 300, d: 16, e: 4, scale: 1, shape: lowRank(3, 0.1)}
	st = checkGuarantee(t, Method{}, g.make(10), 1e-3)
	if got := st.Details["effective_dim"].(int); got == 3 {
		t.Errorf("rank 3 plus noise 0.1 reduced to 3 dimensions")
	}
}

func TestCausalAndPadding(t *testing.T) {
	for _, d := range []int{1, 2, 3} {
		for _, qk := range []float64{0.3, 3, 30} {
			for _, c := range []gen{
				{heads: 2, n: 300, m: 300, causal: true},
				{heads: 1, n: 40, m: 700, causal: true},  // decoding against a cache
				{heads: 1, n: 200, m: 150, causal: true}, // more queries than keys
				{heads: 3, n: 50, m: 400, keyLens: []int{400, 129, 0}},
				{heads: 2, n: 150, m: 400, causal: true, keyLens: []int{333, 64}},
			} {
				c.d, c.e, c.qk, c.scale = d, 3, qk, 1
				t.Run(fmt.Sprintf("d=%d/qk=%g/n=%d/m=%d/causal=%v", d, qk, c.n, c.m, c.causal), func(t *testing.T) {
					checkGuarantee(t, Method{}, c.make(uint64(d*1000+c.n)), 1e-3)
				})
			}
		}
	}
}

// TestCellsReference runs the 1-D cell method on every row and checks it
// against the reference, then checks the tree against it: two different
// algorithms, each within the bound.
func TestCellsReference(t *testing.T) {
	for _, qk := range []float64{0.1, 1, 10, 1000} {
		g := gen{n: 60, m: 900, d: 1, e: 3, qk: qk, scale: 1}
		p := g.make(uint64(qk * 3))
		p.Eps = 1e-3
		forceCells = true
		cells := attn.NewOutput(p)
		_, err := Method{}.Forward64(context.Background(), p, cells)
		forceCells = false
		if err != nil {
			t.Fatal(err)
		}
		saved := cellCut
		cellCut = -1 // never cells
		tree := attn.NewOutput(p)
		st, err := Method{}.Forward64(context.Background(), p, tree)
		cellCut = saved
		if err != nil {
			t.Fatal(err)
		}
		if n := st.Details["rows_by_cells"].(int64); n != 0 {
			t.Fatalf("%d rows used cells with cells disabled", n)
		}
		want, _ := reference.Attention(p)
		for h := range p.Heads {
			colMax := attn.ColumnMaxAbs(p, h, p.M)
			for i := range p.N * p.E {
				c := i % p.E
				for name, o := range map[string][]float64{"cells": cells.O, "tree": tree.O} {
					if err := math.Abs(o[i] - want[i]); err > st.ErrorBound*colMax[c] {
						t.Fatalf("qk=%g %s: entry %d off by %g > %g", qk, name, i, err, st.ErrorBound*colMax[c])
					}
				}
				// Two approximations within eps of Att are within 2 eps of each other.
				if diff := math.Abs(cells.O[i] - tree.O[i]); diff > 2*st.ErrorBound*colMax[c] {
					t.Fatalf("qk=%g: cells and tree differ by %g at %d", qk, diff, i)
				}
			}
		}
	}
}

func TestEpsLimits(t *testing.T) {
	p := gen{n: 10, m: 50, d: 2, e: 2, qk: 1, scale: 1}.make(1)
	for _, c := range []struct {
		eps float64
		f32 bool
		ok  bool
	}{
		{1e-6, true, true}, {5e-7, true, false}, {1e-10, false, true}, {1e-11, false, false}, {0, false, false},
	} {
		p.Eps = c.eps
		var err error
		if c.f32 {
			p32 := attntest.To32(p)
			_, err = Method{}.Forward32(context.Background(), p32, attn.NewOutput(p32))
		} else {
			_, err = Method{}.Forward64(context.Background(), p, attn.NewOutput(p))
		}
		if c.ok && err != nil {
			t.Errorf("eps %g (float32 %v): %v", c.eps, c.f32, err)
		}
		if !c.ok && !errors.Is(err, attn.ErrUnsupported) {
			t.Errorf("eps %g (float32 %v): got %v, want ErrUnsupported", c.eps, c.f32, err)
		}
	}
}

func TestMonomials(t *testing.T) {
	// exp(y.x) = sum_alpha coef_alpha x^alpha, truncated: check against
	// math.Exp for small arguments in 3 dimensions.
	mo := newMonomials(3, 12)
	y := []float64{0.3, -0.2, 0.1}
	x := []float64{0.5, 1.1, -0.7}
	c := make([]float64, mo.terms(12))
	w := make([]float64, mo.terms(12))
	mo.coefficients(y, 12, c)
	mo.powers(x, 12, w)
	var s float64
	for a := range c {
		s += c[a] * w[a]
	}
	if want := math.Exp(dot(y, x)); math.Abs(s-want) > 1e-12 {
		t.Fatalf("expansion %g, exp %g", s, want)
	}
	if mo.terms(12) != 455 {
		t.Fatalf("terms(12) in 3-D = %d, want C(15,3) = 455", mo.terms(12))
	}
}

func TestPowers2D(t *testing.T) {
	mo := newMonomials(2, 9)
	w := []float64{0.7, -1.3}
	got := make([]float64, mo.terms(9))
	mo.powers(w, 9, got)
	want := make([]float64, len(got))
	want[0] = 1
	for a := 1; a < len(want); a++ {
		want[a] = want[mo.parent[a]] * w[mo.dim[a]]
	}
	for a := range got {
		if math.Abs(got[a]-want[a]) > 1e-12*math.Abs(want[a]) {
			t.Fatalf("term %d: %g, want %g", a, got[a], want[a])
		}
	}
}

func TestEstimate(t *testing.T) {
	// A rank-3 input in d = 64 is estimated as 3-dimensional; a full-rank
	// one in d = 16 is priced as brute force (it runs when asked, and auto
	// passes it over).
	p := gen{n: 300, m: 2000, d: 64, e: 8, scale: 1, shape: lowRank(3, 0)}.make(3)
	p.Eps = 1e-3
	est, err := Method{}.Estimate64(p)
	if err != nil {
		t.Fatal(err)
	}
	if !(est.Seconds > 0) || !strings.Contains(est.Reason, "effective dim 3") {
		t.Errorf("rank-3 estimate: %+v", est)
	}
	p = gen{n: 300, m: 2000, d: 16, e: 8, qk: 1, scale: 0.25}.make(4)
	p.Eps = 1e-3
	est, err = Method{}.Estimate32(attntest.To32(p))
	if brute := 300 * 2000 * measuredRates().brute / float64(runtime.GOMAXPROCS(0)); err != nil || est.Seconds < brute || !strings.Contains(est.Reason, "effective dim 16") {
		t.Errorf("full-rank d = 16: %+v, %v; want at least the brute-force cost %.3g s", est, err, brute)
	}
	p.Eps = 1e-8
	if _, err := (Method{}).Estimate32(attntest.To32(p)); !errors.Is(err, attn.ErrUnsupported) {
		t.Errorf("eps 1e-8 in float32: %v, want ErrUnsupported", err)
	}
}

// TestCausalLarge exercises prefixes made of several trees with
// expansions in them (and shared large blocks).
func TestCausalLarge(t *testing.T) {
	n := 6000
	if testing.Short() {
		n = 1500
	}
	for _, d := range []int{1, 2, 3} {
		for _, qk := range []float64{0.5, 2, 10} {
			g := gen{heads: 1, n: n, m: n, d: d, e: 2, qk: qk, scale: 1, causal: true}
			t.Run(fmt.Sprintf("d=%d/qk=%g", d, qk), func(t *testing.T) {
				checkRowsSampled(t, g.make(uint64(d*10)+uint64(qk)), 37)
			})
		}
	}
}

// checkRowsSampled checks every step-th row of head 0 of p (eps 1e-3) and
// the last one against the reference.
func checkRowsSampled(t *testing.T, p *attn.Problem[float64], step int) {
	n := p.N
	p.Eps = 1e-3
	// Check a sample of rows against the reference (every row
	// would be quadratic in the test).
	out := attn.NewOutput(p)
	st, err := Method{}.Forward64(context.Background(), p, out)
	if err != nil {
		t.Fatal(err)
	}
	var rows []int
	for i := 0; i < n; i += step {
		rows = append(rows, i)
	}
	rows = append(rows, n-1)
	want, wantLSE := reference.Rows(p, 0, rows)
	colMax := attn.ColumnMaxAbs(p, 0, p.M)
	for s, i := range rows {
		for c := range p.E {
			if err := math.Abs(out.O[i*p.E+c] - want[s*p.E+c]); err > st.ErrorBound*colMax[c] {
				t.Fatalf("row %d col %d: error %g > %g", i, c, err, st.ErrorBound*colMax[c])
			}
		}
		if math.Abs(out.LSE[i]-wantLSE[s]) > math.Log1p(st.ErrorBound)+1e-12*math.Abs(wantLSE[s]) {
			t.Fatalf("row %d: LSE %g, want %g", i, out.LSE[i], wantLSE[s])
		}
	}
}

// TestCancelMidRun cancels a long run after it started.
func TestCancelMidRun(t *testing.T) {
	for _, causal := range []bool{false, true} {
		p := gen{heads: 1, n: 30000, m: 30000, d: 3, e: 2, qk: 1, scale: 1, causal: causal}.make(5)
		cancelMidRun(t, p)
	}
}

func cancelMidRun(t *testing.T, p *attn.Problem[float64]) {
	p.Eps = 1e-3
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(50 * time.Millisecond); cancel() }()
	start := time.Now()
	_, err := Method{}.Forward64(ctx, p, attn.NewOutput(p))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v after %v, want context.Canceled", err, time.Since(start))
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("cancellation took %v", el)
	}
}
