package anytemp

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/kernels"
	"github.com/fastattn/fastattn/internal/timing"
)

// rates are the planner's cost model: seconds per unit of work on one core
// (rows and moments are divided among the workers in estimate), measured
// once per process, on first use (calibrate), on the loops the forward
// runs, so that the prediction follows the machine and the kernels'
// dispatch level it runs on, and auto compares anytemp with exact and
// poly, which calibrate the same way, on one footing.
type rates struct {
	row        float64 // per row: setup, Taylor coefficients, batching, output
	visit      float64 // per tree node visited
	brute      float64 // per key summed directly (logit, vectorised exp, values)
	term       float64 // per term x column of an expansion (coefficients, dot products)
	cell       float64 // per 1-D cell (binary search, prefix sums)
	momentFlop float64 // per flop of node moments (products up to momentDirect keys, then translations)
	build      float64 // per key and tree level (partition, boxes), plus row order
	reduce     float64 // per row x d x d of Q and K: Gram matrices, projection (d >= 2)
}

// fallbackRates are used for a rate whose timing came out unusable (not
// finite, or far outside fallbackSpread of these): the values last fitted
// on the project's 2-core AVX-512 machine under load.
var fallbackRates = rates{row: 330e-9, visit: 13e-9, brute: 13e-9, term: 0.8e-9, cell: 65e-9,
	momentFlop: 0.2e-9, build: 6.4e-9, reduce: 0.6e-9}

const fallbackSpread = 100

// measuredRates calibrates once, on first use by the planner.
var measuredRates = sync.OnceValue(calibrate)

// Calibration shape: d = 2, e = 8, calibrateKeys keys and calibrateRows
// rows, entries N(0, 1) (every key in every row's window, so nothing is
// dropped), best of calibrateReps runs of each loop. A few tens of
// milliseconds.
const (
	calibrateKeys = 4096
	calibrateRows = 256
	calibrateReps = 3
)

// calibrate times, on one goroutine, each loop the cost model prices.
func calibrate() rates {
	r := rand.New(rand.NewPCG(7, 9))
	gen := func(n, d, e int, scale float64) *attn.Problem[float32] {
		f := func(k int) []float32 {
			x := make([]float32, k)
			for i := range x {
				x[i] = float32(r.NormFloat64())
			}
			return x
		}
		return &attn.Problem[float32]{Heads: 1, N: n, M: calibrateKeys, D: d, E: e, Scale: scale, Eps: 1e-3,
			Q: f(n * d), K: f(calibrateKeys * d), V: f(calibrateKeys * e)}
	}
	m := Method{Workers: 1}
	ctx := context.Background()
	var rt rates
	const n, l = calibrateRows, calibrateKeys

	p := gen(n, 2, 8, 1)
	runs, _, err := plan(ctx, m, p, true, 0)
	if err != nil {
		return fallbackRates
	}
	hr := runs[0]
	hd, pr, e := hr.hd, hr.pr, p.E
	levels := math.Max(1, math.Log2(l/leafSize)+1)
	rt.build = timing.BestOnThread(calibrateReps, func() {
		buildTree(hd, hr.v, e, 0, l, pr.g, pr.mo, false)
		rowOrder(hd.q, n, hd.r)
	}) / (l*levels + n*math.Log2(n+1)/4)

	// Moments of the whole tree (the root's, translated from those of its
	// momentDirect-key nodes), on a fresh tree each time.
	rt.momentFlop = math.Inf(1)
	for range calibrateReps {
		tr := buildTree(hd, hr.v, e, 0, l, pr.g, pr.mo, false)
		start := time.Now()
		tr.moments(0)
		rt.momentFlop = min(rt.momentFlop, time.Since(start).Seconds()/float64(tr.momFlops.Load()))
	}
	tr := buildTree(hd, hr.v, e, 0, l, pr.g, pr.mo, false)
	rc := newRowCtx(pr)

	// Keys summed directly: every key of the tree for each of 16 rows.
	const bruteRows = 16
	rt.brute = timing.BestOnThread(calibrateReps, func() {
		for i := range bruteRows {
			rc.start(hd.q[i*hd.r:(i+1)*hd.r], p.Scale, l)
			brute(rc, tr.keys, tr.vals)
		}
	}) / (bruteRows * l)

	// Nodes visited: the walk over the whole tree with the forward's
	// per-node tests.
	var nodes int
	rt.visit = timing.BestOnThread(calibrateReps, func() {
		nodes = 0
		for i := range bruteRows {
			rc.start(hd.q[i*hd.r:(i+1)*hd.r], p.Scale, l)
			walk(rc, tr, func(en entry, lo, hi int, leaf bool) bool {
				nodes++
				if en.xz+en.rhb < rc.mcur-rc.t {
					return false
				}
				rc.mcur = max(rc.mcur, en.xz-en.rhb)
				return rc.degree(en.rho) >= -1 // always: the whole tree
			})
		}
	}) / float64(max(nodes, 1))

	// Expansion terms: each row's coefficients up to the tree's degree and
	// its dot products with the moments of four nodes.
	var nodeMom [4][]float64
	for x := range nodeMom {
		nodeMom[x] = tr.moments(3 + x)
	}
	nt, w := pr.mo.terms(pr.g), e+1
	coef := make([]float64, nt)
	res := make([]float64, w)
	rt.term = timing.BestOnThread(calibrateReps, func() {
		for i := range n {
			rc.start(hd.q[i*hd.r:(i+1)*hd.r], p.Scale, l)
			pr.mo.quotients(rc.sq, -1, pr.g, rc.yk)
			pr.mo.coefficientsFrom(rc.yk, -1, pr.g, coef)
			for _, mom := range nodeMom {
				kernels.MultiDot64(res, coef, mom, tr.ld)
			}
		}
	}) / float64(n*len(nodeMom)*nt*w)

	// Rows: what a full run of the rows costs beyond its nodes, keys and
	// terms at the rates above (the moments are in the tree from the
	// warm-up run), at least the bare cost of a row without a walk.
	out := attn.NewOutput(p)
	hr.tree, hr.order = tr, rowOrder(hd.q, n, hd.r)
	var c counters
	full := timing.BestOnThread(calibrateReps, func() {
		rc.c = counters{}
		plainRows(rc, p, hr, out, 0, n)
		c = rc.c
	})
	st := rc.stageFor(n, hd.r, e)
	o := make([]float32, n*e)
	bare := timing.BestOnThread(calibrateReps, func() {
		for x := range n {
			copy(st.q[x*hd.r:(x+1)*hd.r], hd.q[x*hd.r:(x+1)*hd.r])
			rc.start(st.q[x*hd.r:(x+1)*hd.r], p.Scale, l)
			rc.park(x)
		}
		rc.flush(func(x int) { finish(rc, o[x*e:(x+1)*e], &st.lse[x], 0, math.Inf(-1)) })
	})
	rest := full - rt.visit*float64(c.visited) - rt.brute*float64(c.brute) - rt.term*float64(c.expTerms)
	rt.row = max(bare, rest) / n

	// 1-D cells: low temperature, a few keys per window.
	p1 := gen(n, 1, 8, 30)
	if runs1, _, err := plan(ctx, m, p1, true, 0); err == nil {
		h1 := runs1[0]
		t1 := buildTree(h1.hd, h1.v, p1.E, 0, l, h1.pr.g, h1.pr.mo, false)
		rc1 := newRowCtx(h1.pr)
		trees := []*tree[float32]{t1}
		rt.cell = timing.BestOnThread(calibrateReps, func() {
			rc1.c.cells = 0
			for i := range n {
				rc1.start(h1.hd.q[i:i+1], p1.Scale, l)
				runCells1D(rc1, trees, nil, []float32(nil))
			}
		}) / float64(max(rc1.c.cells, 1))
	}

	// Reduction: the head's preparation at d = 4 (centring, Gram
	// matrices, eigenvectors, projection).
	p4 := gen(n, 4, 8, 0.5)
	rt.reduce = timing.BestOnThread(calibrateReps, func() {
		prepare(p4, 0, rankAllowance(p4.Eps, true, 0), true, 1)
	}) / float64((n+l)*4*4)

	return rt.sane()
}

// sane replaces each rate that is not finite or lies beyond fallbackSpread
// of its fallback (a timing disturbed beyond use) by the fallback.
func (rt rates) sane() rates {
	fix := func(x *float64, fb float64) {
		if !(*x >= fb/fallbackSpread && *x <= fb*fallbackSpread) {
			*x = fb
		}
	}
	fb := fallbackRates
	fix(&rt.row, fb.row)
	fix(&rt.visit, fb.visit)
	fix(&rt.brute, fb.brute)
	fix(&rt.term, fb.term)
	fix(&rt.cell, fb.cell)
	fix(&rt.momentFlop, fb.momentFlop)
	fix(&rt.build, fb.build)
	fix(&rt.reduce, fb.reduce)
	return rt
}
