package poly

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
	"github.com/fastattn/fastattn/internal/reference"
)

// windowCases are windows over several key blocks, so that rows take the
// polynomial path (the conformance suite's windows are narrower than a
// block and computed exactly): windows wider than a block, narrower, wider
// than m, one-sided either way (the sweep runs backwards for a window
// unbounded on the right), both alignments with n < m and n > m, padding,
// grouped heads with sinks, a decode step. Keys are shifted far from the
// origin (softmax ignores a common offset, a naive polynomial in k does
// not), one far key holds a huge value.
func windowCases() []attntest.Case {
	w := func(l, r int) *attn.Window { return &attn.Window{Left: l, Right: r} }
	shifted := func(r *rand.Rand, p *attn.Problem[float64]) {
		for j := range p.K {
			p.K[j] += 20
		}
		// A far key with a huge value in every key/value head.
		for kh := range p.KVHeadCount() {
			j := r.IntN(p.M)
			for t := range p.D {
				p.K[(kh*p.M+j)*p.D+t] += 1.5
			}
			p.V[(kh*p.M+j)*p.E] = 1e4
		}
	}
	cs := []attntest.Case{
		{Name: "causal-700", Heads: 2, N: 2000, M: 2000, D: 4, E: 3, Causal: true, Window: w(700, 0)},
		{Name: "both-sides-bottom-right", Heads: 1, N: 1500, M: 1800, D: 4, E: 3, Window: w(900, 300)},
		{Name: "top-left-more-queries", Heads: 1, N: 2500, M: 1300, D: 3, E: 2, Window: w(600, 200), CausalAlign: attn.TopLeft},
		{Name: "bottom-right-more-queries-causal", Heads: 1, N: 2500, M: 1300, D: 3, E: 2, Causal: true, Window: w(600, -1)},
		{Name: "left-only", Heads: 1, N: 1200, M: 2000, D: 4, E: 3, Window: w(300, -1)},
		{Name: "right-only-top-left", Heads: 1, N: 1200, M: 2000, D: 4, E: 3, Window: w(-1, 500), CausalAlign: attn.TopLeft},
		{Name: "narrower-than-a-block", Heads: 1, N: 1000, M: 1000, D: 4, E: 3, Window: w(30, 20)},
		{Name: "a-few-blocks", Heads: 1, N: 1000, M: 1000, D: 4, E: 3, Window: w(100, 50)},
		{Name: "wider-than-m", Heads: 1, N: 700, M: 900, D: 4, E: 3, Causal: true, Window: w(5000, 5000)},
		{Name: "0-0", Heads: 1, N: 600, M: 600, D: 4, E: 3, Window: w(0, 0)},
		{Name: "gqa-sinks-padding", Heads: 4, KVHeads: 2, N: 900, M: 1500, D: 4, E: 3, Window: w(400, 100),
			Sinks: []float64{0, 2, -1, 30}, KeyLens: []int{1500, 1500, 1000, 3}},
		{Name: "decode", Heads: 2, N: 3, M: 3000, D: 4, E: 3, Causal: true, Window: w(1500, 0)},
	}
	for x := range cs {
		cs[x].QScale, cs[x].KScale, cs[x].Shape = 0.3, 0.3, shifted
	}
	return cs
}

// TestWindowAgainstReference checks windowed poly against the float64
// reference, both element types, with rows forced onto the polynomial
// path and as planned, and that the polynomial path ran.
func TestWindowAgainstReference(t *testing.T) {
	epss := []float64{1e-3, 1e-6}
	for _, c := range windowCases() {
		for _, force := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/force=%v", c.Name, force), func(t *testing.T) {
				testNoExactRows = force
				defer func() { testNoExactRows = false }()
				for _, eps := range epss {
					p := c.Generate(7)
					p.Eps = eps
					m := Method{Workers: 1 + int(eps*1e3)} // 2 and 1 workers
					if err := attntest.Check(m, p, eps, false); err != nil {
						t.Errorf("float64 eps %g: %v", eps, err)
					}
					p32 := attntest.To32(p)
					p32.Eps = max(eps, 1e-4) // float32 output rounding alone is 2^-24 relative
					if err := attntest.Check(m, p32, p32.Eps+3e-5, false); err != nil {
						t.Errorf("float32 eps %g: %v", eps, err)
					}
					st, err := m.Forward64(context.Background(), p, attn.NewOutput(p))
					if err != nil {
						t.Fatal(err)
					}
					polyRows := 0
					for _, n := range st.Details["rows_per_degree"].(map[int]int) {
						polyRows += n
					}
					t.Logf("eps %g: %d rows polynomial, %d exact, bound %.3g, observed %.3g, blocks kept %v",
						eps, polyRows, st.Details["exact_rows"], st.ErrorBound, st.ObservedError, st.Details["window_blocks_kept_max"])
					if force && c.Name != "narrower-than-a-block" && c.Name != "0-0" && polyRows == 0 {
						t.Errorf("eps %g: no row took the polynomial path", eps)
					}
					if kept, planned := intDetail(st.Details["window_blocks_kept_max"]), intDetail(st.Details["window_blocks_planned_max"]); kept > planned {
						t.Errorf("the sweep kept %d block moments, the planner counted %d", kept, planned)
					}
				}
			})
		}
	}
}

// TestWindowEstimate: the planner agrees with the forward on windows and
// counts the exact method's flops over the window only.
func TestWindowEstimate(t *testing.T) {
	c := attntest.Case{Heads: 1, N: 4096, M: 4096, D: 4, E: 4, Causal: true, Window: &attn.Window{Left: 1024, Right: 0}, QScale: 0.3, KScale: 0.3}
	p := c.Generate(1)
	p.Eps = 1e-3
	est, err := Method{}.Estimate64(p)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Method{}.Forward64(context.Background(), p, attn.NewOutput(p))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("estimate %+v; stats flops %.3g predicted %v exact %v", est, st.Flops, st.Details["flops_predicted"], st.Details["exact_flops"])
	if got, want := st.Details["exact_flops"].(float64), 2*float64(8)*(4096*1025-1024*1025/2); math.Abs(got-want) > 1e-9*want {
		t.Errorf("exact flops %g, want %g (the window's pairs only)", got, want)
	}
}

// TestMomentQueue checks the queue's sums against direct sums over random
// monotone ranges, with resets and the kept tail.
func TestMomentQueue(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for it := range 200 {
		n := 1 + r.IntN(60)
		val := make([]float64, n)
		for i := range val {
			val[i] = float64(r.IntN(1000)) // integers: sums are exact in any order
		}
		var spans [][2]int
		lo, hi := 0, 0
		for lo < n {
			lo += r.IntN(4)
			hi = max(hi, lo) + r.IntN(6)
			if hi > n {
				hi = n
			}
			if lo >= hi {
				break
			}
			spans = append(spans, [2]int{lo, hi})
		}
		if len(spans) == 0 {
			continue
		}
		q := newMomentQueue(1, spans[len(spans)-1][0])
		dst := make([]float64, 1)
		for _, s := range spans {
			if s[0] >= q.hi {
				q.reset(s[0])
			}
			for q.lo < s[0] {
				q.pop()
			}
			for q.hi < s[1] {
				m := q.get()
				m[0] = val[q.hi]
				q.push(m)
			}
			q.sum(dst)
			var want float64
			for _, v := range val[s[0]:s[1]] {
				want += v
			}
			if dst[0] != want {
				t.Fatalf("case %d, range %v: sum %g, want %g", it, s, dst[0], want)
			}
		}
	}
}

// TestWindowBackwardFiniteDifferences checks the windowed backward pass
// against central differences of the windowed forward: forward and
// backward sweeps, one-sided windows either way, both alignments, n > m,
// grouped heads with sinks and padding.
func TestWindowBackwardFiniteDifferences(t *testing.T) {
	w := func(l, r int) *attn.Window { return &attn.Window{Left: l, Right: r} }
	for _, c := range []attntest.Case{
		{Name: "causal", Heads: 1, N: 1000, M: 1000, D: 2, E: 2, Causal: true, Window: w(300, 0)},
		{Name: "left-only", Heads: 1, N: 600, M: 1200, D: 2, E: 2, Window: w(300, -1)},
		{Name: "right-only-top-left", Heads: 1, N: 800, M: 1200, D: 2, E: 2, Window: w(-1, 300), CausalAlign: attn.TopLeft},
		{Name: "top-left-more-queries", Heads: 1, N: 1300, M: 900, D: 2, E: 1, Window: w(400, 200), CausalAlign: attn.TopLeft},
		{Name: "gqa-sinks-padding", Heads: 2, KVHeads: 1, N: 500, M: 1100, D: 2, E: 2, Window: w(500, 100),
			Sinks: []float64{0.5, -1}, KeyLens: []int{1100, 700}},
	} {
		c.QScale, c.KScale = 0.5, 0.5
		t.Run(c.Name, func(t *testing.T) { checkFiniteDifferences(t, c) })
	}
}

// TestWindowBackwardNearExactGradient: the windowed gradient of the
// approximation is within eps of the true gradient (float64 reference),
// relative to each gradient's largest entry, on the polynomial path and
// as planned.
func TestWindowBackwardNearExactGradient(t *testing.T) {
	for _, c := range windowCases() {
		if c.Name == "gqa-sinks-padding" || c.Name == "decode" {
			c.VScale = 1 // the huge value on a far key makes the unit meaningless
		}
		c.Shape = nil
		for _, force := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/force=%v", c.Name, force), func(t *testing.T) {
				testNoExactRows = force
				defer func() { testNoExactRows = false }()
				const eps = 1e-4
				p := c.Generate(9)
				p.Eps = eps
				dO := attntest.GradOutput(p, 10)
				g := attn.NewGradients(p)
				st, err := (Method{}).Backward64(context.Background(), p, attn.NewOutput(p), dO, g)
				if err != nil {
					t.Fatal(err)
				}
				// The planner's memory counts hold what the sweeps kept.
				for _, k := range []string{"window_blocks", "window_group_sums"} {
					if kept, planned := intDetail(st.Details[k+"_kept_max"]), intDetail(st.Details[k+"_planned_max"]); kept > planned {
						t.Errorf("%s: kept %d, planned %d", k, kept, planned)
					}
				}
				checkGradient(t, "", p, dO, g, eps)
			})
		}
	}
}

// TestWindowRandom checks random windows (each side -1, 0, small, a few
// blocks or wider than m), alignments, causal masks, padding, n and m
// against the float64 reference, on the polynomial path or as planned, in
// both element types.
func TestWindowRandom(t *testing.T) {
	count := 60
	if testing.Short() {
		count = 20
	}
	r := rand.New(rand.NewPCG(21, 22))
	side := func() int {
		switch r.IntN(5) {
		case 0:
			return -1
		case 1:
			return 0
		case 2:
			return r.IntN(100)
		case 3:
			return 100 + r.IntN(700)
		}
		return 3000
	}
	polyRows := 0
	for it := range count {
		n, m := 1+r.IntN(1500), 1+r.IntN(1500)
		c := attntest.Case{Heads: 1 + r.IntN(2), N: n, M: m, D: 1 + r.IntN(5), E: 1 + r.IntN(3),
			Causal: r.IntN(2) == 0, Window: &attn.Window{Left: side(), Right: side()}, QScale: 0.4, KScale: 0.4}
		if r.IntN(2) == 0 {
			c.CausalAlign = attn.TopLeft
		}
		if r.IntN(3) == 0 {
			c.KeyLens = make([]int, c.Heads)
			for h := range c.KeyLens {
				c.KeyLens[h] = r.IntN(m + 1)
			}
		}
		eps := []float64{1e-2, 1e-4, 1e-8}[r.IntN(3)]
		testNoExactRows = r.IntN(2) == 0
		p := c.Generate(uint64(it))
		p.Eps = eps
		where := fmt.Sprintf("input %d (n=%d m=%d d=%d heads=%d causal=%v %v window %+v keys %v eps %g force %v)",
			it, n, m, c.D, c.Heads, c.Causal, c.CausalAlign, *c.Window, c.KeyLens, eps, testNoExactRows)
		if err := attntest.Check(Method{Workers: 1 + it%3}, p, eps, false); err != nil {
			t.Fatalf("%s float64: %v", where, err)
		}
		if eps >= 1e-4 {
			if err := attntest.Check(Method{}, attntest.To32(p), eps+3e-5, false); err != nil {
				t.Fatalf("%s float32: %v", where, err)
			}
		}
		st, err := Method{}.Forward64(context.Background(), p, attn.NewOutput(p))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range st.Details["rows_per_degree"].(map[int]int) {
			polyRows += k
		}
	}
	testNoExactRows = false
	t.Logf("%d rows on the polynomial path", polyRows)
	if polyRows == 0 {
		t.Fatal("no row took the polynomial path")
	}
}

// TestWindowBackwardRandom checks the windowed gradient on random windows
// against the float64 reference gradient, within eps of each gradient's
// largest entry.
func TestWindowBackwardRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	side := func() int { return []int{-1, 0, 40, 300, 900}[r.IntN(5)] }
	for it := range 12 {
		n, m := 1+r.IntN(1200), 1+r.IntN(1200)
		c := attntest.Case{Heads: 2, KVHeads: 1 + r.IntN(2), N: n, M: m, D: 1 + r.IntN(4), E: 1 + r.IntN(3),
			Causal: r.IntN(2) == 0, Window: &attn.Window{Left: side(), Right: side()}, QScale: 0.4, KScale: 0.4}
		if r.IntN(2) == 0 {
			c.CausalAlign = attn.TopLeft
		}
		if r.IntN(2) == 0 {
			c.Sinks = []float64{r.NormFloat64(), r.NormFloat64()}
		}
		testNoExactRows = r.IntN(2) == 0
		const eps = 1e-4
		p := c.Generate(uint64(it))
		p.Eps = eps
		dO := attntest.GradOutput(p, uint64(it))
		g := attn.NewGradients(p)
		if _, err := (Method{}).Backward64(context.Background(), p, attn.NewOutput(p), dO, g); err != nil {
			t.Fatal(err)
		}
		checkGradient(t, fmt.Sprintf("input %d (n=%d m=%d %+v causal=%v %v force %v): ", it, n, m, *c.Window, c.Causal, c.CausalAlign, testNoExactRows), p, dO, g, eps)
	}
	testNoExactRows = false
}

// checkGradient fails t where a gradient in g is further from the float64
// reference gradient than eps times the reference's largest entry.
func checkGradient(t *testing.T, where string, p *attn.Problem[float64], dO []float64, g *attn.Gradients[float64], eps float64) {
	t.Helper()
	ref := reference.Gradient(p, dO)
	for _, pair := range []struct {
		name      string
		got, want []float64
	}{{"dQ", g.DQ, ref.DQ}, {"dK", g.DK, ref.DK}, {"dV", g.DV, ref.DV}, {"dSinks", g.DSinks, ref.DSinks}} {
		var errMax, scale float64
		for i := range pair.got {
			errMax = max(errMax, math.Abs(pair.got[i]-pair.want[i]))
			scale = max(scale, math.Abs(pair.want[i]))
		}
		if scale > 0 && errMax > eps*scale {
			t.Errorf("%s%s relative error %.3g > eps %g", where, pair.name, errMax/scale, eps)
		}
	}
}
