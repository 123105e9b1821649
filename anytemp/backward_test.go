package anytemp

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
	"github.com/fastattn/fastattn/internal/reference"
)

// gradTol is the stated tolerance of the backward pass: every entry of
// dQ, dK and dV is within gradTol * eps of the exact gradient, relative to
// the largest term magnitude of its head (reference.Grad's Mag, the
// measure of the conformance suite). Observed: at most 0.4 eps (the
// forward's log-sum-exp error, which every weight inherits).
const gradTol = 10

// gradResult is what one comparison measured: for dQ, dK and dV, the
// largest error relative to the head's largest magnitude (rel) and to the
// head's largest entry (plain), maximised over heads.
type gradResult struct {
	rel, plain [3]float64
	st         attn.Stats
}

func (r gradResult) String() string {
	return fmt.Sprintf("dQ %.2g dK %.2g dV %.2g (plain %.2g %.2g %.2g)", r.rel[0], r.rel[1], r.rel[2], r.plain[0], r.plain[1], r.plain[2])
}

// runGrad runs m's forward and backward on p and compares the gradients
// with the float64 reference.
func runGrad[T attn.Float](t *testing.T, m Method, p *attn.Problem[T], dO []T) gradResult {
	t.Helper()
	out := attn.NewOutput(p)
	if _, err := attn.Forward(context.Background(), m, p, out); err != nil {
		t.Fatalf("forward: %v", err)
	}
	g := attn.NewGradients(p)
	st, err := attn.Backward(context.Background(), m, p, out, dO, g)
	if err != nil {
		t.Fatalf("backward: %v", err)
	}
	ref := reference.Gradient(p, dO)
	res := compare(p, [3][]T{g.DQ, g.DK, g.DV}, ref)
	res.st = st
	return res
}

func compare[T attn.Float](p *attn.Problem[T], got [3][]T, ref *reference.Grad) gradResult {
	var res gradResult
	want := [3][]float64{ref.DQ, ref.DK, ref.DV}
	mag := [3][]float64{ref.MagQ, ref.MagK, ref.MagV}
	per := [3]int{p.N * p.D, p.M * p.D, p.M * p.E}
	heads := [3]int{p.Heads, p.KVHeadCount(), p.KVHeadCount()} // dK, dV per key/value head
	for x := range 3 {
		for h := range heads[x] {
			var em, mm, rm float64
			for i := h * per[x]; i < (h+1)*per[x]; i++ {
				d := math.Abs(float64(got[x][i]) - want[x][i])
				if !(d <= em) {
					em = d
					if math.IsNaN(d) {
						em = math.Inf(1)
					}
				}
				mm = max(mm, mag[x][i])
				rm = max(rm, math.Abs(want[x][i]))
			}
			if mm > 0 {
				res.rel[x] = max(res.rel[x], em/mm)
			} else if em > 0 {
				res.rel[x] = math.Inf(1)
			}
			if rm >= 1e-3*mm && rm > 0 {
				res.plain[x] = max(res.plain[x], em/rm)
			}
		}
	}
	return res
}

// checkGrad runs p in float64 and float32 and fails if an error exceeds
// gradTol * eps (plus float32's own rounding for float32).
func checkGrad(t *testing.T, m Method, p *attn.Problem[float64], eps float64) (r64, r32 gradResult) {
	t.Helper()
	p.Eps = eps
	dO := attntest.GradOutput(p, 7)
	r64 = runGrad(t, m, p, dO)
	r32 = runGrad(t, m, attntest.To32(p), to32(dO))
	for x, name := range []string{"dQ", "dK", "dV"} {
		if !(r64.rel[x] <= gradTol*eps) {
			t.Errorf("float64 %s error %.3g > %g eps (%v)", name, r64.rel[x], float64(gradTol), r64.st.Details)
		}
		if !(r32.rel[x] <= gradTol*eps+1e-5) {
			t.Errorf("float32 %s error %.3g > %g eps (%v)", name, r32.rel[x], float64(gradTol), r32.st.Details)
		}
	}
	return r64, r32
}

func to32(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

// TestGradConformance runs the shared gradient suite. The backward pass
// computes the gradient of exact attention (with the forward's LSE and O),
// not the derivative of the forward's approximation, so the finite
// differences are those of the reference attention (FDReference).
func TestGradConformance(t *testing.T) {
	for _, eps := range []float64{1e-3, 1e-4} {
		t.Run(fmt.Sprint(eps), func(t *testing.T) {
			cfg := attntest.GradConfig{Eps: eps, Tol64: gradTol * eps, Tol32: gradTol * eps, FDTol: gradTol * eps, FDReference: true, AllowUnsupported: true}
			sum := attntest.RunGrad(t, Method{}, cfg)
			t.Logf("eps %g: float64 %v; float32 %v; finite differences %v", eps, sum.Ref64, sum.Ref32, sum.FD)
		})
	}
}

// TestGradRandom: d in {1,2,3,4}, entry scales 0.1 (nearly uniform
// attention, every key in every window, expansions everywhere) to 100
// (nearly one-hot), eps from 1e-2 to 1e-6.
func TestGradRandom(t *testing.T) {
	m := 1500
	if testing.Short() {
		m = 500
	}
	var expanded, pruned, brute, evaluated int64
	var worst [3]gradResult // by eps
	defer func() {
		if expanded == 0 || pruned == 0 || brute == 0 || evaluated == 0 {
			t.Errorf("paths not exercised: %d expanded, %d pruned, %d brute, %d evaluated", expanded, pruned, brute, evaluated)
		}
		for k, eps := range []float64{1e-2, 1e-3, 1e-6} {
			t.Logf("eps %g, worst relative to eps: %v", eps, worst[k])
		}
	}()
	for _, d := range []int{1, 2, 3, 4} {
		for _, qk := range []float64{0.1, 1, 3, 10, 100} {
			for k, eps := range []float64{1e-2, 1e-3, 1e-6} {
				g := gen{n: 200, m: m, d: d, e: 3, qk: qk, scale: 1}
				t.Run(fmt.Sprintf("d=%d/qk=%g/eps=%g", d, qk, eps), func(t *testing.T) {
					r64, r32 := checkGrad(t, Method{}, g.make(uint64(100*d+k)+uint64(qk*7)), eps)
					t.Logf("float64 %v, float32 %v", r64, r32)
					st := r64.st
					expanded += st.Details["nodes_expanded"].(int64)
					pruned += st.Details["nodes_pruned"].(int64)
					brute += st.Details["keys_brute_forced"].(int64)
					evaluated += st.Details["keys_evaluated"].(int64)
					for x := range 3 {
						worst[k].rel[x] = max(worst[k].rel[x], r64.rel[x]/eps, r32.rel[x]/eps)
						worst[k].plain[x] = max(worst[k].plain[x], r64.plain[x]/eps)
					}
				})
			}
		}
	}
}

// TestGradShapes covers inputs a treecode gets wrong first: repeated keys,
// tight clusters far from the origin, collinear keys, a dominant key.
func TestGradShapes(t *testing.T) {
	shapes := map[string]func(r *rand.Rand, p *attn.Problem[float64]){
		"duplicates": func(r *rand.Rand, p *attn.Problem[float64]) {
			for j := range p.M {
				src := r.IntN(5)
				copy(p.K[j*p.D:(j+1)*p.D], p.K[src*p.D:(src+1)*p.D])
			}
		},
		"far-clusters": func(r *rand.Rand, p *attn.Problem[float64]) {
			c := make([]float64, 4*p.D)
			for i := range c {
				c[i] = 20*r.NormFloat64() + 100
			}
			for j := range p.M {
				k := r.IntN(4)
				for t := range p.D {
					p.K[j*p.D+t] = c[k*p.D+t] + 1e-3*r.NormFloat64()
				}
			}
		},
		"collinear": func(r *rand.Rand, p *attn.Problem[float64]) {
			for j := range p.M {
				a := 5 * r.NormFloat64()
				for t := range p.D {
					p.K[j*p.D+t] = 1 + a*float64(t+1)
				}
			}
		},
		"dominant": func(r *rand.Rand, p *attn.Problem[float64]) {
			for t := range p.D {
				p.K[t] = 50
			}
		},
	}
	for name, sh := range shapes {
		for _, d := range []int{1, 2, 3} {
			for _, qk := range []float64{0.2, 3} {
				g := gen{n: 100, m: 800, d: d, e: 2, qk: qk, scale: 1, shape: sh}
				t.Run(fmt.Sprintf("%s/d=%d/qk=%g", name, d, qk), func(t *testing.T) {
					r64, r32 := checkGrad(t, Method{}, g.make(uint64(d)), 1e-3)
					t.Logf("float64 %v, float32 %v", r64, r32)
				})
			}
		}
	}
}

// TestGradLogits1e6: logits of order 1e6 (entries of 1000).
func TestGradLogits1e6(t *testing.T) {
	for _, d := range []int{1, 2, 3, 4} {
		g := gen{n: 100, m: 600, d: d, e: 2, qk: 1000, scale: 1}
		t.Run(fmt.Sprint(d), func(t *testing.T) {
			r64, r32 := checkGrad(t, Method{}, g.make(uint64(d)), 1e-3)
			t.Logf("d=%d: float64 %v, float32 %v", d, r64, r32)
		})
	}
}

// TestGradLowRank: heads the forward reduces to rank r < d prune with the
// reduced tree and sum the window's keys exactly in d dimensions.
func TestGradLowRank(t *testing.T) {
	for _, d := range []int{16, 64} {
		for _, rank := range []int{1, 2, 3} {
			for _, qk := range []float64{0.3, 1, 10} {
				g := gen{n: 100, m: 600, d: d, e: 4, qk: qk, scale: qk, shape: lowRank(rank, 0)}
				t.Run(fmt.Sprintf("d=%d/rank=%d/scale=%g", d, rank, qk), func(t *testing.T) {
					r64, r32 := checkGrad(t, Method{}, g.make(uint64(d+rank)), 1e-3)
					if got := r64.st.Details["effective_dim"].(int); got != rank {
						t.Errorf("effective dimension %d, want %d", got, rank)
					}
					t.Logf("float64 %v, float32 %v, pruned %v", r64, r32, r64.st.Details["nodes_pruned"])
				})
			}
		}
	}
	// Rank 3 plus a tiny full-rank perturbation: reduced, truncation charged.
	g := gen{n: 100, m: 600, d: 64, e: 4, scale: 0.125, shape: lowRank(3, 1e-9)}
	r64, _ := checkGrad(t, Method{}, g.make(9), 1e-3)
	if got := r64.st.Details["effective_dim"].(int); got != 3 {
		t.Errorf("noisy rank 3: effective dimension %d", got)
	}
}

// TestGradCausalAndPadding: causal prefixes cut into blocks (several
// block sizes), decoding shapes, padding, batched heads.
func TestGradCausalAndPadding(t *testing.T) {
	for _, d := range []int{1, 2, 3} {
		for _, qk := range []float64{0.3, 3, 30} {
			for _, c := range []gen{
				{heads: 2, n: 300, m: 300, causal: true},
				{heads: 1, n: 40, m: 700, causal: true},
				{heads: 1, n: 200, m: 150, causal: true},
				{heads: 3, n: 50, m: 400, keyLens: []int{400, 129, 0}},
				{heads: 2, n: 150, m: 400, causal: true, keyLens: []int{333, 64}},
			} {
				c.d, c.e, c.qk, c.scale = d, 3, qk, 1
				t.Run(fmt.Sprintf("d=%d/qk=%g/n=%d/m=%d/causal=%v", d, qk, c.n, c.m, c.causal), func(t *testing.T) {
					checkGrad(t, Method{}, c.make(uint64(d*1000+c.n)), 1e-3)
				})
			}
		}
	}
}

// TestGradCausalLarge checks sampled rows of a long causal problem (blocks
// up to 2048 keys) against the reference.
func TestGradCausalLarge(t *testing.T) {
	n := 4000
	if testing.Short() {
		n = 1200
	}
	for _, d := range []int{1, 2, 3} {
		for _, qk := range []float64{0.3, 3} {
			g := gen{heads: 1, n: n, m: n, d: d, e: 2, qk: qk, scale: 1, causal: true}
			t.Run(fmt.Sprintf("d=%d/qk=%g", d, qk), func(t *testing.T) {
				checkGradSampled(t, g.make(uint64(d*10)+uint64(qk)))
			})
		}
	}
}

// checkGradSampled checks every 97th row of dQ, dK and dV of head 0 of p
// (eps 1e-3) against the reference.
func checkGradSampled(t *testing.T, p *attn.Problem[float64]) {
	n, d := p.N, p.D
	p.Eps = 1e-3
	dO := attntest.GradOutput(p, 3)
	out := attn.NewOutput(p)
	if _, err := (Method{}).Forward64(context.Background(), p, out); err != nil {
		t.Fatal(err)
	}
	gr := attn.NewGradients(p)
	st, err := (Method{}).Backward64(context.Background(), p, out, dO, gr)
	if err != nil {
		t.Fatal(err)
	}
	var rows []int
	for i := 0; i < n; i += 97 {
		rows = append(rows, i)
	}
	rows = append(rows, n-1)
	dq := reference.GradientQueryRows(p, dO, 0, rows)
	dk, dv := reference.GradientKeyRows(p, dO, 0, nil, nil, rows)
	check := func(name string, got, want []float64, w int) {
		var scale, worst float64
		for _, x := range want {
			scale = max(scale, math.Abs(x))
		}
		for s, i := range rows {
			for c := range w {
				worst = max(worst, math.Abs(got[i*w+c]-want[s*w+c]))
			}
		}
		t.Logf("%s: max error %.3g relative to the sample's largest entry", name, worst/scale)
		if !(worst <= gradTol*p.Eps*scale) {
			t.Errorf("%s error %.3g > %g eps * %.3g", name, worst, float64(gradTol), scale)
		}
	}
	check("dQ", gr.DQ, dq, d)
	check("dK", gr.DK, dk, d)
	check("dV", gr.DV, dv, p.E)
	t.Logf("expanded %v brute %v tails %v", st.Details["nodes_expanded"], st.Details["keys_brute_forced"], st.Details["keys_in_tails"])
}

// TestGradDownward forces expansions on every node narrow enough (no
// count threshold), so local expansions are deposited high in the tree
// and translated down many levels, and checks that the result does not
// depend on the number of workers (the split of the downward pass).
func TestGradDownward(t *testing.T) {
	bwdForceExpand = true
	defer func() { bwdForceExpand = false }()
	for _, d := range []int{1, 2, 3} {
		for _, qk := range []float64{0.05, 0.5, 2} {
			g := gen{heads: 2, n: 150, m: 3000, d: d, e: 2, qk: qk, scale: 1}
			t.Run(fmt.Sprintf("d=%d/qk=%g", d, qk), func(t *testing.T) {
				p := g.make(uint64(d))
				r64, _ := checkGrad(t, Method{}, p, 1e-3)
				if r64.st.Details["local_nodes"].(int64) == 0 {
					t.Fatalf("no local expansion: %v", r64.st.Details)
				}
				t.Logf("%v, local nodes %v", r64, r64.st.Details["local_nodes"])
				var res [2]*attn.Gradients[float64]
				dO := attntest.GradOutput(p, 7)
				out := attn.NewOutput(p)
				if _, err := (Method{}).Forward64(context.Background(), p, out); err != nil {
					t.Fatal(err)
				}
				for k, w := range []int{1, 5} {
					res[k] = attn.NewGradients(p)
					if _, err := (Method{Workers: w}).Backward64(context.Background(), p, out, dO, res[k]); err != nil {
						t.Fatal(err)
					}
				}
				for x, pair := range [][2][]float64{{res[0].DQ, res[1].DQ}, {res[0].DK, res[1].DK}, {res[0].DV, res[1].DV}} {
					var scale, diff float64
					for i := range pair[0] {
						scale = max(scale, math.Abs(pair[0][i]))
						diff = max(diff, math.Abs(pair[0][i]-pair[1][i]))
					}
					if diff > 1e-12*scale {
						t.Errorf("gradient %d differs between 1 and 5 workers by %g (scale %g)", x, diff, scale)
					}
				}
			})
		}
	}
}

// TestLocalShift checks the re-centring of local expansions against
// direct evaluation of the polynomial.
func TestLocalShift(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, d := range []int{1, 2, 3, 4} {
		hb := &bwdHead[float64]{d: d, e: 1, deg: 5}
		hb.mo = newMonomials(d, 6)
		nt := hb.mo.terms(6)
		hb.up = upTable(hb.mo, d, 6)
		loc := make([]float64, 2*nt)
		for i := range loc {
			loc[i] = r.NormFloat64()
		}
		a := make([]float64, d)
		y := make([]float64, d)
		for t := range d {
			a[t] = r.NormFloat64()
			y[t] = r.NormFloat64()
		}
		eval := func(l, y []float64) float64 {
			pk := make([]float64, nt)
			hb.mo.powers(y, 6, pk)
			return dotU(l[:nt], pk)
		}
		// Polynomial in y about z_p; at the same point k, y' = y - a.
		want := eval(loc, y)
		shifted := slices.Clone(loc)
		hb.localShift(shifted, a, make([]float64, 8))
		yp := make([]float64, d)
		for t := range d {
			yp[t] = y[t] - a[t]
		}
		if got := eval(shifted, yp); math.Abs(got-want) > 1e-10*(1+math.Abs(want)) {
			t.Errorf("d=%d: shifted %g, want %g", d, got, want)
		}
	}
}

// TestGradBadInput: wrong sizes are rejected, inputs are not modified,
// eps below the floor is unsupported.
func TestGradBadInput(t *testing.T) {
	p := gen{n: 10, m: 20, d: 2, e: 2, qk: 1, scale: 1}.make(1)
	p.Eps = 1e-3
	out := attn.NewOutput(p)
	if _, err := (Method{}).Forward64(context.Background(), p, out); err != nil {
		t.Fatal(err)
	}
	dO := attntest.GradOutput(p, 1)
	g := attn.NewGradients(p)
	if _, err := (Method{}).Backward64(context.Background(), p, out, dO[1:], g); !errors.Is(err, attn.ErrBadProblem) {
		t.Errorf("short dO: %v", err)
	}
	bad := *out
	bad.LSE = bad.LSE[1:]
	if _, err := (Method{}).Backward64(context.Background(), p, &bad, dO, g); !errors.Is(err, attn.ErrBadProblem) {
		t.Errorf("short LSE: %v", err)
	}
	q := *p
	q.Eps = 1e-12
	if _, err := (Method{}).Backward64(context.Background(), &q, out, dO, g); !errors.Is(err, attn.ErrUnsupported) {
		t.Errorf("eps 1e-12: %v", err)
	}
}

// TestGradCancelMidRun cancels long backward passes after they started.
func TestGradCancelMidRun(t *testing.T) {
	for _, causal := range []bool{false, true} {
		p := gen{heads: 1, n: 30000, m: 30000, d: 3, e: 2, qk: 1, scale: 1, causal: causal}.make(5)
		p.Eps = 1e-3
		out := attn.NewOutput(p)
		// A fake forward output is enough to time the cancellation.
		for i := range out.LSE {
			out.LSE[i] = 10
		}
		dO := attntest.GradOutput(p, 1)
		ctx, cancel := context.WithCancel(context.Background())
		var once sync.Once
		go func() { time.Sleep(50 * time.Millisecond); once.Do(cancel) }()
		start := time.Now()
		_, err := (Method{}).Backward64(ctx, p, out, dO, attn.NewGradients(p))
		once.Do(cancel)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("causal=%v: got %v after %v, want context.Canceled", causal, err, time.Since(start))
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("causal=%v: cancellation took %v", causal, el)
		}
	}
}

// TestGradGQASinks: grouped-query heads and sinks on problems large enough
// for trees and expansions (d = 2, 2048 keys), causal or not, with sinks
// below, near and far above the rows' logits (a sink of 40 leaves the keys
// weights of e^-40 that the gradient must still resolve), against the
// float64 reference in units of the terms' magnitude.
func TestGradGQASinks(t *testing.T) {
	if testing.Short() {
		t.Skip("large")
	}
	for _, causal := range []bool{false, true} {
		for _, sc := range []float64{1, 4} {
			c := attntest.Case{Name: "gqa-sinks", Heads: 4, KVHeads: 2, N: 1024, M: 2048, D: 2, E: 3, Causal: causal,
				QScale: sc, KScale: sc, Sinks: []float64{-2, 0.5, 3, 40}}
			p := c.Generate(5)
			p.Eps = 1e-3
			dO := attntest.GradOutput(p, 6)
			e, err := attntest.CheckGrad(Method{}, p, dO, gradTol*p.Eps, false)
			if err != nil {
				t.Errorf("causal %v, scale %g: %v", causal, sc, err)
			}
			t.Logf("causal %v, scale %g: %v", causal, sc, e)
		}
	}
}
