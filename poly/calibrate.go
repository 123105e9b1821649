package poly

import (
	"math"
	"math/rand/v2"
	"sync"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/accurate"
	"github.com/fastattn/fastattn/internal/check"
	"github.com/fastattn/fastattn/internal/timing"
)

// rates are the planner's unit times on one core, measured once per process
// (calibrate) on the loops the forward runs, so that the prediction follows
// the machine (and the kernels' dispatch level) it runs on instead of one
// machine's figures.
type rates struct {
	// keyMonomial is the time per key and monomial of the key moments
	// (building the feature and its row of the moment product): base +
	// perValue (e+1).
	keyBase, keyPerValue float64
	// queryMonomial is the same per query row and monomial.
	queryBase, queryPerValue float64
	// pair is the time per (row, key) pair computed directly, per unit of
	// d + e + 1.
	pair float64
	// ball is the time per key and coordinate of one farthest-key search
	// of the enclosing ball (ballWork).
	ball float64
	// checkKey is the time per key and unit of d + e of a sampled row of
	// the reference check (package accurate).
	checkKey float64
	// checkPlainKey is the same for the plain reference, which serves
	// loose bounds (plainCheckServes) with a head's sampled rows together,
	// on every core.
	checkPlainKey float64
	// setup is the fixed cost of a call: the degree thresholds and the
	// certified polynomials (multi-precision construction).
	setup float64
}

// measuredRates calibrates once, on first use by the planner.
var measuredRates = sync.OnceValue(calibrate)

// calibrate times, on one goroutine, each loop of the forward on a small
// input of its own shape (d = 8, degree 3, a few hundred keys; value
// widths 8 and 64 for the terms linear in e + 1). It takes a few
// milliseconds.
func calibrate() rates {
	const (
		d, g, keys, rows, reps = 8, 3, 2 * keyBlock, queryBlock, 5
	)
	r := rand.New(rand.NewPCG(3, 5))
	mono := newMonomials(d, g)
	rk := len(mono.parent)
	ut := make([]float64, d*keys)
	for x := range ut {
		ut[x] = (2*r.Float64() - 1) / math.Sqrt(d)
	}
	wt := make([]float64, d*rows)
	for x := range wt {
		wt[x] = 2*r.Float64() - 1
	}
	var rt rates
	perValue := func(e int) (key, query, pair float64) {
		e1 := e + 1
		vals := make([]float64, keys*e)
		for x := range vals {
			vals[x] = r.NormFloat64()
		}
		uk := make([]float64, keys*d)
		for j := range keys {
			for t := range d {
				uk[j*d+t] = ut[t*keys+j]
			}
		}
		hk := &headKeys[float64]{ut: ut, uk: uk, L: keys, mono: mono, r: rk, vals: vals, e: e}
		s := newScratch(rk, e1, d)
		key = timing.BestOnThread(reps, func() {
			for j0 := 0; j0 < keys; j0 += keyBlock {
				hk.addMoments(s, j0, j0+keyBlock, s.moments)
			}
		}) / float64(keys*rk)
		scaled := make([]float64, e1*rk)
		for x := range scaled {
			scaled[x] = r.NormFloat64()
		}
		yt := make([]float64, e1*rows)
		query = timing.BestOnThread(reps, func() { hk.queryProducts(s, scaled, wt, rows, rk, yt) }) / float64(rows*rk)
		const direct = 16
		w := make([]float64, direct*d)
		for x := range w {
			w[x] = 2*r.Float64() - 1
		}
		limits := make([]int, direct)
		for x := range limits {
			limits[x] = keys
		}
		y := make([]float64, direct*e1)
		pair = timing.BestOnThread(reps, func() { hk.addExact(s, w, limits, 0, y) }) / float64(direct*keys*(d+e1))
		return key, query, pair
	}
	k8, q8, p8 := perValue(8)
	k64, q64, p64 := perValue(64)
	rt.keyPerValue = max((k64-k8)/56, 0)
	rt.keyBase = max(k8-9*rt.keyPerValue, 0)
	rt.queryPerValue = max((q64-q8)/56, 0)
	rt.queryBase = max(q8-9*rt.queryPerValue, 0)
	rt.pair = min(p8, p64)

	kv := make([]float32, keys*d)
	for x := range kv {
		kv[x] = float32(r.NormFloat64())
	}
	c := make([]float64, d)
	rt.ball = timing.BestOnThread(reps, func() { farthestKey(kv, d, c, math.Inf(1), nil) }) / (keys * d)
	p := &attn.Problem[float32]{Heads: 1, N: 1, M: keys, D: d, E: d, Q: kv[:d], K: kv, V: kv, Scale: 1}
	out := make([]float64, d)
	rt.checkKey = timing.BestOnThread(reps, func() { accurate.Row(p, 0, 0, out) }) / (keys * 2 * d)
	// The plain reference's rows, 16 of 4096 keys (one task of its key
	// blocks, so one core) against a zero output (the check measures every
	// row, then fails).
	const checkRows, checkKeys = 16, 4096
	kc := make([]float32, checkKeys*d)
	for x := range kc {
		kc[x] = float32(r.NormFloat64())
	}
	pc := &attn.Problem[float32]{Heads: 1, N: checkRows, M: checkKeys, D: d, E: d, Q: kc[:checkRows*d], K: kc, V: kc, Scale: 1}
	outc := attn.NewOutput(pc)
	// The plain check spreads its rows over the cores: wall time.
	rt.checkPlainKey = timing.Best(reps, func() { check.Forward(pc, outc, 1e-3, checkRows) }) / (checkRows * checkKeys * 2 * d)
	rt.setup = timing.BestOnThread(2, func() {
		t := newDegreeTable(PolyShare * 1e-3)
		if t.extend(4) == nil {
			for g := range 5 {
				t.polynomial(g)
			}
		}
	})
	return rt
}
