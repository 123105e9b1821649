package poly

import (
	"fmt"
	"math"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/accurate"
	"github.com/fastattn/fastattn/internal/kernels"
	"github.com/fastattn/fastattn/internal/lsebound"
	"github.com/fastattn/fastattn/internal/sinkshift"
	"github.com/fastattn/fastattn/polyexp"
)

// Decoding with the polynomial method keeps, per key/value head, the key
// moments sum_j u_j^alpha [v_j, 1] of the keys seen so far (u = (k - mu)/R
// about a centre mu fixed when the state is built), so a new token costs
// O(r e) whatever the context length: its key adds one term to every
// moment, and each query's polynomial is evaluated against the moments.
//
// The certificate of a row needs its range beta = s |q| max_j |k_j - mu|
// over every key whose terms were ever summed into the moments (those that
// left a sliding window or a truncation were subtracted, and their rounding
// stays). When a row needs a higher degree than the moments hold, the state
// is rebuilt from the cached keys at that degree (plus one, as headroom), or,
// when that rank is too large, the row is left to the caller to compute
// exactly (DecodeStep.Fallback).

// DecodeChunk is the most new tokens one DecodeState.Step takes.
const DecodeChunk = keyBlock

// KeySource reads the cached keys and values of one head (in the order
// they were appended).
type KeySource[T attn.Float] interface {
	Len() int
	Key(j int, dst []float64)
	Value(j int) []T
}

// DecodeWorkspace holds what the decoding states of one cache share: the
// error target, the degree table and polynomials, and scratch space. It is
// not safe for concurrent use.
type DecodeWorkspace[T attn.Float] struct {
	d, e        int
	scale, eps  float64
	uOut        float64
	maxRank     int
	deg         *degreeTable
	mono        *monomials
	s           *scratch
	sRank       int
	ut, uk, key []float64 // a chunk's normalised keys, variable- and key-major
	vals        []T       // a chunk's values (rebuilds)
	idx, lim    []int     // rows evaluated and their keys in the chunk
	degrees     []int     // per row of a Step
}

// DefaultDecodeMaxRank caps the rank r = C(d+g, g) a decoding state may
// hold: above it a rebuild would cost more memory than it is worth, so the
// rows go to exact attention instead.
const DefaultDecodeMaxRank = 1 << 15

// NewDecodeWorkspace returns a workspace for heads of key dimension d and
// value dimension e, scale s and error target eps; maxRank caps the states'
// rank (0 means DefaultDecodeMaxRank).
func NewDecodeWorkspace[T attn.Float](d, e int, scale, eps float64, maxRank int) (*DecodeWorkspace[T], error) {
	minEps, uOut := MinEps64, 0x1p-53
	if attn.DTypeName[T]() == "float32" {
		minEps, uOut = MinEps32, 0x1p-24
	}
	if eps < minEps {
		return nil, unsupported("eps = %g is below the smallest error this method certifies for %s (%g); use exact", eps, attn.DTypeName[T](), minEps)
	}
	if maxRank <= 0 {
		maxRank = DefaultDecodeMaxRank
	}
	return &DecodeWorkspace[T]{d: d, e: e, scale: scale, eps: eps, uOut: uOut, maxRank: maxRank,
		deg: newDegreeTable(PolyShare * eps), mono: newMonomials(d, 0),
		ut: make([]float64, d*keyBlock), uk: make([]float64, keyBlock*d), key: make([]float64, d),
		vals: make([]T, keyBlock*e)}, nil
}

// DegreeFor is the lowest degree certified for rows of range beta, and its
// rank; an error wrapping attn.ErrUnsupported if none is.
func (ws *DecodeWorkspace[T]) DegreeFor(beta float64) (degree, rank int, err error) {
	g, err := ws.deg.degreeFor(beta)
	if err != nil {
		return 0, 0, err
	}
	return g, Rank(ws.d, g), nil
}

// reserve makes the monomial table and scratch hold rank r.
func (ws *DecodeWorkspace[T]) reserve(g int) {
	if ws.mono.g < g {
		ws.mono = newMonomials(ws.d, g)
	}
	r := Rank(ws.d, g)
	if ws.sRank < r {
		ws.s, ws.sRank = newScratch(r, ws.e+1, ws.d), r
	}
}

// DecodeState is the polynomial state of one key/value head.
type DecodeState[T attn.Float] struct {
	ws      *DecodeWorkspace[T]
	built   bool
	mu      []float64 // centre
	radius  float64   // R: u = (k - mu)/R
	maxDist float64   // >= |k - mu| of every key summed since the build
	degree  int       // of the moments held
	r       int
	moments []float64 // r x (e+1)
	lo, hi  int       // the moments cover keys lo <= j < hi
	added   int       // key terms summed in since the build
	removed int       // key terms subtracted since the build
}

// NewDecodeState returns an empty state using ws.
func NewDecodeState[T attn.Float](ws *DecodeWorkspace[T]) *DecodeState[T] {
	return &DecodeState[T]{ws: ws}
}

// Reset empties the state; the next Step builds it again.
func (st *DecodeState[T]) Reset() { st.built, st.lo, st.hi = false, 0, 0 }

// Built reports whether the state holds moments.
func (st *DecodeState[T]) Built() bool { return st.built }

// Degree is the degree of the moments held.
func (st *DecodeState[T]) Degree() int { return st.degree }

// Covers returns the key range lo <= j < hi the moments sum.
func (st *DecodeState[T]) Covers() (lo, hi int) { return st.lo, st.hi }

// DecodeStep describes one Step.
type DecodeStep struct {
	// PolyRows were computed from the moments, FallbackRows were left to
	// the caller (Fallback marks them).
	PolyRows, FallbackRows int
	// Rebuilds counts rebuilds of the moments from the cached keys (a
	// higher degree was needed, or cancellation had grown).
	Rebuilds int
	// Degree and Rank of the polynomial used; Beta the largest row range.
	Degree, Rank int
	Beta         float64
	// Bound is the certified entrywise bound of the rows computed,
	// relative to max_l |V_lj| over each row's keys.
	Bound float64
	// LSEBound bounds, in nats, the error of the computed rows'
	// log-sum-exps (attn.Stats.LSEBound).
	LSEBound float64
}

// DecodeRows are the queries of one Step: heads blocks (the query heads
// sharing this key/value head) of Stride rows each, of which the first n
// (the chunk's tokens) are used; row i of a block is the token at position
// start + i and sees keys lo <= j <= start + i.
type DecodeRows[T attn.Float] struct {
	Q             []T       // heads*Stride x D
	Out           []T       // heads*Stride x E
	LSE           []float64 // heads*Stride
	Heads, Stride int
	// Sinks, when not nil, holds one logit per head joining its rows'
	// denominators.
	Sinks []float64
	// Fallback (heads*Stride) is set for the rows this Step did not
	// compute: the caller computes them exactly.
	Fallback []bool
}

// Step attends the rows of one chunk of n <= DecodeChunk new tokens, whose
// keys k (n x D) and values v (n x E) are the last n keys of src, against
// the keys lo <= j of src, causally; then it adds the chunk to the moments.
// Keys below lo that the moments hold are subtracted first (sliding
// windows). With a lower bound lo that moves within the chunk, call Step
// token by token.
func (st *DecodeState[T]) Step(src KeySource[T], lo int, k, v []T, n int, rows *DecodeRows[T]) (DecodeStep, error) {
	ws := st.ws
	d, e := ws.d, ws.e
	start := src.Len() - n
	var res DecodeStep
	if n < 1 || n > DecodeChunk || start < lo || len(k) < n*d || len(v) < n*e {
		return res, fmt.Errorf("poly: decode step of %d tokens at %d (keys from %d) is out of range", n, start, lo)
	}
	build := !st.built || st.hi != start || lo < st.lo
	if build {
		// A new state, or one that does not match the cache (truncated
		// and refilled): it is built from the cached keys below.
		st.centre(src, lo, start, k, n)
		st.maxDist = st.scan(src, lo, start, k, n)
	} else {
		if lo > st.lo {
			st.remove(src, st.lo, min(lo, st.hi))
		}
		st.maxDist = max(st.maxDist, st.scan(src, 0, 0, k, n))
	}
	gmax := st.rowDegrees(rows, n, &res)
	// One degree of headroom, so that a slowly widening stream does not
	// rebuild every step, unless that rank is too large.
	want := gmax
	if Rank(d, gmax+1) <= ws.maxRank {
		want = gmax + 1
	}
	for want > 0 && Rank(d, want) > ws.maxRank {
		want--
	}
	switch {
	case build:
		st.rebuild(src, lo, start, want, k, n)
		res.Rebuilds++
	case gmax > st.degree && want > st.degree,
		// Subtractions cancel and their rounding stays in the bound;
		// keys far beyond the normalisation radius make the moments
		// badly scaled: start again from the keys in view.
		st.removed > 3*(st.hi-st.lo) && st.hi > st.lo,
		st.maxDist > 2*st.radius:
		st.rebuild(src, st.lo, st.hi, max(want, st.degree), k, n)
		res.Rebuilds++
	}
	if res.Rebuilds > 0 {
		// The centre and the radius moved: the ranges again.
		st.rowDegrees(rows, n, &res)
	}
	a, err := st.choose(rows, n, &res)
	if err != nil {
		return res, err
	}
	if res.FallbackRows > 0 && st.removed > 0 && res.Rebuilds == 0 && st.scan(src, st.lo, st.hi, k, n) < st.maxDist/(1+1e-9) {
		// Keys that widened the range have left (window, truncation):
		// rebuilt from the keys in view, the range may shrink back.
		st.rebuild(src, st.lo, st.hi, max(want, st.degree), k, n)
		res.Rebuilds++
		st.rowDegrees(rows, n, &res)
		if a, err = st.choose(rows, n, &res); err != nil {
			return res, err
		}
	}
	hk := st.chunkKeys(k, v, n)
	if res.FallbackRows < rows.Heads*n {
		terms, seen := st.added+st.removed+n, st.hi-st.lo+1
		for h := range rows.Heads {
			for i0 := 0; i0 < n; i0 += queryBlock {
				cnt, err := st.evaluate(&hk, a, rows, h, i0, min(i0+queryBlock, n))
				if err != nil {
					return res, err
				}
				res.PolyRows += cnt
			}
		}
		res.LSEBound = st.lseBound(rows, n, a.RelErr+decodeRounding(a, terms, seen, res.Rank))
	}
	// The chunk joins the moments.
	hk.addMoments(ws.s, 0, n, st.moments)
	st.hi += n
	st.added += n
	return res, nil
}

// choose picks the polynomial of a Step and marks the rows it leaves to the
// caller: rows the moments' degree cannot certify, and rows whose rounding
// (which grows like e^(2 beta)) would exceed eps. Every other row uses the
// polynomial of the largest degree left. Every term ever summed into the
// moments, and the chunk's keys, count for the rounding; the first row
// sees the fewest keys.
func (st *DecodeState[T]) choose(rows *DecodeRows[T], n int, res *DecodeStep) (polyexp.Approx, error) {
	ws := st.ws
	terms, seen := st.added+st.removed+n, st.hi-st.lo+1
	sink := st.sinkCost(rows, n, res.Beta, st.hi-st.lo+n)
	limit := st.degree
	var a polyexp.Approx
	res.Degree, res.Rank, res.Bound, res.FallbackRows = 0, 0, 0, 0
	for {
		g := -1
		for _, dg := range ws.degrees {
			if dg <= limit {
				g = max(g, dg)
			}
		}
		if g < 0 {
			res.Degree, res.Rank, res.Bound = 0, 0, 0
			break
		}
		var err error
		if a, err = ws.deg.polynomial(g); err != nil {
			return a, err
		}
		res.Degree, res.Rank = g, Rank(ws.d, g)
		if res.Bound = decodeBound(a, terms, seen, res.Rank, ws.uOut) + sink; res.Bound <= ws.eps {
			break
		}
		limit = g - 1
	}
	for h := range rows.Heads {
		for i := range n {
			x := h*rows.Stride + i
			rows.Fallback[x] = ws.degrees[h*n+i] > limit
			if rows.Fallback[x] {
				res.FallbackRows++
			}
		}
	}
	return a, nil
}

// sinkCost is what the sinks of the chunk's n rows cost on keys centred on
// mu (package sinkshift): evaluate weighs a sink against s q.mu + log den,
// whose second term is at most beta + log of the keys a row sees (keys).
func (st *DecodeState[T]) sinkCost(rows *DecodeRows[T], n int, beta float64, keys int) float64 {
	if rows.Sinks == nil {
		return 0
	}
	d := st.ws.d
	logSum := beta + math.Log(float64(max(keys, 1)))
	var delta float64
	for h, sink := range rows.Sinks[:rows.Heads] {
		if math.IsInf(sink, -1) {
			continue
		}
		for i := range n {
			x := h*rows.Stride + i
			delta = max(delta, sinkshift.Delta(rows.Q[x*d:(x+1)*d], st.mu, st.ws.scale, sink, logSum))
		}
	}
	return sinkshift.Cost(delta)
}

// Append adds a chunk of n <= DecodeChunk new keys k (n x D) and values v
// (n x E), the last n keys of src, without queries, subtracting the keys
// below lo first. A state that is not built, or does not match src, stays
// so: the next Step builds it from src.
func (st *DecodeState[T]) Append(src KeySource[T], lo int, k, v []T, n int) {
	start := src.Len() - n
	if !st.built || st.hi != start || lo < st.lo || n < 1 || n > DecodeChunk {
		st.built = false
		return
	}
	if lo > st.lo {
		st.remove(src, st.lo, min(lo, st.hi))
	}
	st.maxDist = max(st.maxDist, st.scan(src, 0, 0, k, n))
	hk := st.chunkKeys(k, v, n)
	hk.addMoments(st.ws.s, 0, n, st.moments)
	st.hi += n
	st.added += n
}

// evaluate computes rows i0..i1-1 of head h of the chunk (those not marked
// Fallback) with polynomial a: the moments plus the chunk's keys up to each
// row's own, summed directly. It returns how many rows it computed.
func (st *DecodeState[T]) evaluate(hk *headKeys[T], a polyexp.Approx, rows *DecodeRows[T], h, i0, i1 int) (int, error) {
	ws := st.ws
	s := ws.s
	d, e, e1 := ws.d, ws.e, ws.e+1
	rg := Rank(d, a.Degree)
	m := ws.mono
	idx, lim := ws.idx[:0], ws.lim[:0]
	for i := i0; i < i1; i++ {
		if !rows.Fallback[h*rows.Stride+i] {
			idx = append(idx, i)
			lim = append(lim, i+1)
		}
	}
	ws.idx, ws.lim = idx, lim
	cnt := len(idx)
	if cnt == 0 {
		return 0, nil
	}
	w := s.w[:cnt*d]
	hbuf := s.h[:cnt*rg]
	for k, i := range idx {
		q := rows.Q[(h*rows.Stride+i)*d : (h*rows.Stride+i+1)*d]
		for t := range d {
			w[k*d+t] = ws.scale * st.radius * float64(q[t])
		}
		row := hbuf[k*rg : (k+1)*rg]
		m.eval(w[k*d:(k+1)*d], row, rg)
		for al := range rg {
			row[al] *= a.Coeffs[m.degree[al]] * m.multi[al]
		}
	}
	y := s.y[:cnt*e1]
	clear(y)
	if st.hi > st.lo {
		kernels.GemmNN64(cnt, e1, rg, hbuf, rg, st.moments, e1, y, e1)
	}
	// The chunk's keys 0..i of row i, directly (|w.u| <= beta too).
	hk.addExact(s, w, lim, 0, y)
	for k, i := range idx {
		x := h*rows.Stride + i
		yr := y[k*e1 : (k+1)*e1]
		den := yr[e]
		if !(den > 0) || math.IsInf(den, 0) {
			return 0, fmt.Errorf("poly: internal error: decode row %d has denominator %g", i, den)
		}
		lse := accurate.ScaledDot(rows.Q[x*d:(x+1)*d], st.mu, ws.scale) + math.Log(den)
		f := 1 / den
		if rows.Sinks != nil {
			sink := rows.Sinks[h]
			top := max(lse, sink)
			total := top + math.Log(math.Exp(lse-top)+math.Exp(sink-top))
			f *= math.Exp(lse - total)
			lse = total
		}
		o := rows.Out[x*e : (x+1)*e]
		for c := range e {
			o[c] = T(yr[c] * f)
		}
		rows.LSE[x] = lse
	}
	return cnt, nil
}

// decodeBound is bound (Lemma 3.6 plus rounding) for a row whose sums have
// terms terms (keys added and subtracted) of which seen remain: the
// rounding is relative to the sum of the terms' magnitudes, at most terms
// times the largest, while the denominator is at least seen times the
// smallest.
func decodeBound(a polyexp.Approx, terms, seen, r int, uOut float64) float64 {
	return perturbed(a.RelErr, decodeRounding(a, terms, seen, r), uOut)
}

// decodeRounding is f of decodeBound: the sums' rounding relative to the
// denominator.
func decodeRounding(a polyexp.Approx, terms, seen, r int) float64 {
	const u = 0x1p-53
	k := float64(2*a.Degree+8+terms+r) * u
	return k / (1 - k) * a.AbsSum * math.Exp(a.Radius) * float64(terms) / float64(max(seen, 1))
}

// lseBound is DecodeStep.LSEBound of the chunk's n rows computed here (not
// Fallback), whose denominators are within a relative eta of exact
// (eps_A + f of decodeBound): package lsebound, on keys centred on mu.
func (st *DecodeState[T]) lseBound(rows *DecodeRows[T], n int, eta float64) float64 {
	d := st.ws.d
	var worst float64
	for h := range rows.Heads {
		sink := math.Inf(-1)
		if rows.Sinks != nil {
			sink = rows.Sinks[h]
		}
		for i := range n {
			x := h*rows.Stride + i
			if !rows.Fallback[x] {
				worst = max(worst, lsebound.Rounding(rows.Q[x*d:(x+1)*d], st.mu, st.ws.scale, sink, rows.LSE[x], st.hi-st.lo+n))
			}
		}
	}
	return lsebound.SumError(eta) + worst
}

// centre sets mu to the mean of the keys a (re)built state starts from
// (the cached keys lo..start-1 and the chunk's); it stays fixed until the
// next rebuild.
func (st *DecodeState[T]) centre(src KeySource[T], lo, start int, k []T, n int) {
	ws := st.ws
	d := ws.d
	st.mu = append(st.mu[:0], make([]float64, d)...)
	for j := lo; j < start; j++ {
		src.Key(j, ws.key)
		for t := range d {
			st.mu[t] += ws.key[t]
		}
	}
	for j := range n {
		for t := range d {
			st.mu[t] += float64(k[j*d+t])
		}
	}
	for t := range d {
		st.mu[t] /= float64(start - lo + n)
	}
}

// dist returns |key - mu|, rounded up.
func (st *DecodeState[T]) dist(key []float64) float64 {
	var s float64
	for t, x := range key {
		y := x - st.mu[t]
		s += y * y
	}
	return math.Sqrt(s) * (1 + 1e-12)
}

// rowDegrees sets ws.degrees[h*n+i] to the lowest degree certified for
// the range of row i of head h (MaxInt: none), records the largest range
// in res and returns the largest degree.
func (st *DecodeState[T]) rowDegrees(rows *DecodeRows[T], n int, res *DecodeStep) int {
	ws := st.ws
	d := ws.d
	ws.degrees = ws.degrees[:0]
	gmax := 0
	res.Beta = 0
	for h := range rows.Heads {
		for i := range n {
			x := h*rows.Stride + i
			var nq float64
			for _, y := range rows.Q[x*d : (x+1)*d] {
				nq += float64(y) * float64(y)
			}
			b := ws.scale * math.Sqrt(nq) * st.maxDist * (1 + 1e-12)
			res.Beta = max(res.Beta, b)
			g, err := ws.deg.degreeFor(b)
			if err != nil {
				g = math.MaxInt
			} else {
				gmax = max(gmax, g)
			}
			ws.degrees = append(ws.degrees, g)
		}
	}
	return gmax
}

// scan returns the largest distance from the centre of the cached keys
// lo..hi-1 and the chunk's n keys k.
func (st *DecodeState[T]) scan(src KeySource[T], lo, hi int, k []T, n int) float64 {
	ws := st.ws
	var r float64
	for j := lo; j < hi; j++ {
		src.Key(j, ws.key)
		r = max(r, st.dist(ws.key))
	}
	for j := range n {
		for t := range ws.d {
			ws.key[t] = float64(k[j*ws.d+t])
		}
		r = max(r, st.dist(ws.key))
	}
	return r
}

// rebuild sums the moments of the cached keys lo..hi-1 afresh at degree
// g, with the normalisation radius set to the largest distance from the
// centre of those keys and of the coming chunk k (n keys).
func (st *DecodeState[T]) rebuild(src KeySource[T], lo, hi, g int, k []T, n int) {
	ws := st.ws
	st.centre(src, lo, hi, k, n)
	st.maxDist = st.scan(src, lo, hi, k, n)
	st.radius = radiusFloor(st.mu, st.maxDist)
	st.degree, st.r = g, Rank(ws.d, g)
	ws.reserve(g)
	e1 := ws.e + 1
	if cap(st.moments) < st.r*e1 {
		st.moments = make([]float64, st.r*e1)
	}
	st.moments = st.moments[:st.r*e1]
	clear(st.moments)
	st.sum(src, lo, hi, st.moments)
	st.built, st.lo, st.hi = true, lo, hi
	st.added, st.removed = hi-lo, 0
}

// remove subtracts the moments of cached keys lo..hi-1.
func (st *DecodeState[T]) remove(src KeySource[T], lo, hi int) {
	if hi <= lo {
		return
	}
	m := st.ws.s.moments[:len(st.moments)]
	clear(m)
	st.sum(src, lo, hi, m)
	for i, x := range m {
		st.moments[i] -= x
	}
	st.removed += hi - lo
	st.lo = hi
}

// sum adds the moments of cached keys lo..hi-1 to dst, a block at a time.
func (st *DecodeState[T]) sum(src KeySource[T], lo, hi int, dst []float64) {
	ws := st.ws
	d, e := ws.d, ws.e
	for j0 := lo; j0 < hi; j0 += keyBlock {
		bs := min(keyBlock, hi-j0)
		for j := range bs {
			src.Key(j0+j, ws.key)
			copy(ws.vals[j*e:(j+1)*e], src.Value(j0+j))
			for t := range d {
				ws.ut[t*bs+j] = (ws.key[t] - st.mu[t]) / st.radius
			}
		}
		hk := headKeys[T]{ut: ws.ut[:d*bs], L: bs, mono: ws.mono, r: st.r, vals: ws.vals[:bs*e], e: e}
		hk.addMoments(ws.s, 0, bs, dst)
	}
}

// chunkKeys normalises the chunk's keys (n x d, with values v).
func (st *DecodeState[T]) chunkKeys(k, v []T, n int) headKeys[T] {
	ws := st.ws
	d := ws.d
	for j := range n {
		for t := range d {
			u := (float64(k[j*d+t]) - st.mu[t]) / st.radius
			ws.ut[t*n+j], ws.uk[j*d+t] = u, u
		}
	}
	return headKeys[T]{ut: ws.ut[:d*n], uk: ws.uk[:n*d], L: n, mono: ws.mono, r: st.r, vals: v[:n*ws.e], e: ws.e}
}
