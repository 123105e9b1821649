package anytemp

import (
	"math"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/kernels"
)

// counters are what a worker tallies for the report.
type counters struct {
	rows, cellRows          int64
	visited, expanded       int64
	pruned, dropped         int64
	brute, expandedKeys     int64
	cells, maxDegreeUsed    int64
	flops, maxVisitedPerRow int64
	shifts                  int64
	expTerms                int64 // sum over expansions of terms * (e+1)
}

func (c *counters) add(o *counters) {
	c.rows += o.rows
	c.cellRows += o.cellRows
	c.visited += o.visited
	c.expanded += o.expanded
	c.pruned += o.pruned
	c.dropped += o.dropped
	c.brute += o.brute
	c.expandedKeys += o.expandedKeys
	c.cells += o.cells
	c.flops += o.flops
	c.shifts += o.shifts
	c.expTerms += o.expTerms
	c.maxDegreeUsed = max(c.maxDegreeUsed, o.maxDegreeUsed)
	c.maxVisitedPerRow = max(c.maxVisitedPerRow, o.maxVisitedPerRow)
}

// params are the per-head constants of the traversal.
type params struct {
	r, e   int
	g      int
	mo     *monomials
	b      *budget
	rhoMax []float64 // rhoMax[deg]: widest node expandable at degree deg
	cut    []float64 // cut[deg]: fewest keys for which expanding beats brute force
	// countScale multiplies node counts in the expansion rule (the
	// planner's pilot, on a sample of the keys); 1 in Forward.
	countScale float64
	delta      float64 // 1-D cell width in logit units, 2 ln(1 + epsT)
}

func newParams(r, e, g int, mo *monomials, b *budget) *params {
	pr := &params{r: r, e: e, g: g, mo: mo, b: b, countScale: 1}
	pr.rhoMax = taylorRho(b.epsT, b.rhoCap, g)
	pr.cut = make([]float64, g+1)
	for d := range pr.cut {
		pr.cut[d] = float64(mo.terms(d)*(e+1)) / float64(r+e+12)
	}
	pr.delta = 2 * math.Log1p(b.epsT)
	return pr
}

func (pr *params) degree(rho float64) int {
	rm := pr.rhoMax
	if !(rho <= rm[len(rm)-1]) {
		return -1
	}
	// The smallest d with rho <= rhoMax[d], rhoMax increasing with d: the
	// number of d with rhoMax[d] < rho, counted without branches (the
	// sign of rhoMax[d] - rho; a binary search mispredicted about half
	// its branches).
	n := 0
	for _, x := range rm {
		n += int(math.Float64bits(x-rho) >> 63)
	}
	return n
}

type entry struct {
	i            int32
	xz, rho, rhb float64 // centre logit, box bound, branch-and-bound radius
}

// rowCtx is one worker's state for the row being computed: the scaled
// query, the running lower bound mcur on the row's largest logit, and the
// sums N and D relative to the accumulation base exp(base).
type rowCtx struct {
	*params
	sq, aq  []float64 // s q', |s q'|
	qn      float64   // |s q'|_2
	nCoef   int       // terms(g) rounded up to 8: the stride of the rows' Taylor coefficients (s q')^alpha / alpha!
	coefDeg int       // the current row's are in its slot of coefs up to this degree (-1: none)
	yk      []float64 // the current row's s q_t / k (quotients), r rows of g+1
	t       float64   // window width
	tKeyed  float64   // the window for tKeys keys at key scale tScale
	tKeys   int
	tScale  float64
	mcur    float64

	started      bool
	base0, base  float64
	baseK        int
	sum          float64
	acc          []float64
	xbuf         []float64 // bruteBlock logits, then weights
	cand         []float64 // key of the largest logit seen: a warm start for the next row
	haveCand     bool
	stack        []entry
	visitedStart int64
	c            counters

	// The batch: rows walked but not finished (their sums so far, in
	// slots), the expansions they recorded (pend, in row order) and each
	// row's Taylor coefficients (coefs, terms(g) per slot, filled up to
	// the degrees the row used). flush evaluates the expansions node by
	// node, then finishes the rows.
	slots  []rowState
	saccs  []float64 // e per slot
	coefs  []float64
	pend   []pending
	groups map[*float64]int32
	gcount []int32
	gorder []int32
	gid    []int32
	res    []float64 // (e+1) per pending expansion

	stage rowStage // plainRows' gathered queries and staged outputs
}

// rowState is a parked row: its sums relative to exp(base).
type rowState struct {
	row         int
	started     bool
	base0, base float64
	baseK       int
	sum         float64
}

// pending is an expansion recorded during a row's walk.
type pending struct {
	mom    []float64 // the node's moments, column-major with stride stride
	stride int
	g      int
	xz     float64
	slot   int32
}

// batchRows is the number of rows walked before their expansions are
// evaluated together.
const batchRows = 256

func newRowCtx(pr *params) *rowCtx {
	return &rowCtx{
		params: pr,
		sq:     make([]float64, pr.r), aq: make([]float64, pr.r),
		nCoef:  alignedStride(pr.mo.terms(pr.g)),
		acc:    make([]float64, pr.e),
		xbuf:   make([]float64, bruteBlock),
		cand:   make([]float64, pr.r),
		yk:     make([]float64, pr.r*(pr.mo.maxDeg+1)),
		groups: map[*float64]int32{},
		tKeys:  -1, // no window cached
	}
}

// slotCoef returns the Taylor coefficients of slot's row.
func (rc *rowCtx) slotCoef(slot int) []float64 {
	nt := rc.nCoef
	if need := (slot + 1) * nt; len(rc.coefs) < need {
		c := alignedFloats(max(need, 2*len(rc.coefs)))
		copy(c, rc.coefs)
		rc.coefs = c
	}
	return rc.coefs[slot*nt : (slot+1)*nt]
}

// park ends the walk of the current row (row: its index, for flush's
// callback) and keeps its sums in a slot until flush.
func (rc *rowCtx) park(row int) {
	v := rc.c.visited - rc.visitedStart
	rc.c.maxVisitedPerRow = max(rc.c.maxVisitedPerRow, v)
	rc.slots = append(rc.slots, rowState{row, rc.started, rc.base0, rc.base, rc.baseK, rc.sum})
	rc.saccs = append(rc.saccs, rc.acc...)
}

// resetBatch drops parked rows (a cancelled walk).
func (rc *rowCtx) resetBatch() {
	rc.slots, rc.saccs, rc.pend = rc.slots[:0], rc.saccs[:0], rc.pend[:0]
}

// flush evaluates the parked rows' expansions, adds them to their rows
// and calls fin(row) for each parked row in order, with its sums in rc.
// Expansions are evaluated node by node (the node's moments stay in cache
// while its rows read them), each as the e+1 dot products of the row's
// Taylor coefficients with the moment columns in one kernels.MultiDot64
// call; the rounding bound of a dot product holds in any order of
// summation, so the certified budget is unchanged.
func (rc *rowCtx) flush(fin func(row int)) {
	e := rc.e
	w := e + 1
	np := len(rc.pend)
	if cap(rc.res) < np*w {
		rc.res = make([]float64, np*w)
	}
	res := rc.res[:np*w]
	// Group the expansions by node (counting sort on first appearance).
	clear(rc.groups)
	rc.gcount, rc.gid = rc.gcount[:0], rc.gid[:0]
	for k := range rc.pend {
		key := &rc.pend[k].mom[0]
		gi, ok := rc.groups[key]
		if !ok {
			gi = int32(len(rc.gcount))
			rc.groups[key] = gi
			rc.gcount = append(rc.gcount, 0)
		}
		rc.gcount[gi]++
		rc.gid = append(rc.gid, gi)
	}
	off := int32(0)
	for g, c := range rc.gcount {
		rc.gcount[g] = off
		off += c
	}
	if cap(rc.gorder) < np {
		rc.gorder = make([]int32, np)
	}
	order := rc.gorder[:np]
	for k, g := range rc.gid {
		order[rc.gcount[g]] = int32(k)
		rc.gcount[g]++
	}
	nt0 := rc.nCoef
	for _, k := range order {
		p := &rc.pend[k]
		nt := rc.mo.terms(p.g)
		coef := rc.coefs[int(p.slot)*nt0 : int(p.slot)*nt0+nt]
		kernels.MultiDot64(res[int(k)*w:int(k+1)*w], coef, p.mom, p.stride)
	}
	k := 0
	for slot, st := range rc.slots {
		rc.started, rc.base0, rc.base, rc.baseK, rc.sum = st.started, st.base0, st.base, st.baseK, st.sum
		copy(rc.acc, rc.saccs[slot*e:(slot+1)*e])
		for ; k < np && int(rc.pend[k].slot) == slot; k++ {
			t := res[k*w : (k+1)*w]
			f := rc.weight(rc.pend[k].xz)
			rc.sum += f * t[e]
			for col := range rc.acc {
				rc.acc[col] += f * t[col]
			}
		}
		fin(st.row)
	}
	rc.resetBatch()
}

// start begins row q (reduced, unscaled) attending to keys keys.
func (rc *rowCtx) start(q []float64, s float64, keys int) {
	for t, x := range q {
		rc.sq[t] = s * x
		rc.aq[t] = math.Abs(s * x)
	}
	rc.qn = math.Sqrt(dot(rc.sq, rc.sq)) * (1 + float64(2*len(q)+8)*u64)
	rc.coefDeg = -1
	if keys != rc.tKeys || rc.b.keyScale != rc.tScale {
		// The window depends on the row's number of keys alone (and the
		// budget's key scale, which the planner's pilot sets): rows of one
		// block share it.
		rc.tKeys, rc.tScale, rc.tKeyed = keys, rc.b.keyScale, rc.b.window(keys)
	}
	rc.t = rc.tKeyed
	rc.mcur = math.Inf(-1)
	if rc.haveCand {
		rc.mcur = dot(rc.sq, rc.cand)
	}
	rc.started = false
	rc.sum = 0
	clear(rc.acc)
	rc.visitedStart = rc.c.visited
	rc.c.rows++
}

func dot(a, b []float64) float64 {
	var s float64
	for t, x := range a {
		s += x * b[t]
	}
	return s
}

// weight returns exp(x - base), moving the base up by a whole number of
// ln 2 (rescaling the sums by an exact power of two) when x is far above
// it, so no weight overflows and rescaling adds no rounding.
func (rc *rowCtx) weight(x float64) float64 {
	if rc.started && x-rc.base <= 16 {
		return math.Exp(x - rc.base)
	}
	return rc.weightSlow(x)
}

func (rc *rowCtx) weightSlow(x float64) float64 {
	rc.rebase(x)
	return math.Exp(x - rc.base)
}

// rebase starts the base at x, or moves it up when x is more than 16 above
// it, so that exp(x - base) and every smaller weight stay below e^16.
func (rc *rowCtx) rebase(x float64) {
	if !rc.started {
		rc.started = true
		rc.base0, rc.base, rc.baseK = x, x, 0
	} else if x-rc.base > 16 {
		k := int(math.Ceil((x - 8 - rc.base0) / math.Ln2))
		sh := k - rc.baseK
		rc.sum = math.Ldexp(rc.sum, -sh)
		for c := range rc.acc {
			rc.acc[c] = math.Ldexp(rc.acc[c], -sh)
		}
		rc.baseK = k
		rc.base = rc.base0 + float64(k)*math.Ln2
		rc.c.shifts++
	}
}

// finish writes the row's output and LSE (shift is s q.mu). A sink
// (-Inf: none) adds exp(sink) to the denominator exactly: the output
// shrinks by exp(LSE without it - LSE with it).
func finish[T attn.Float](rc *rowCtx, o []T, lse *float64, shift, sink float64) {
	if !rc.started || !(rc.sum > 0) {
		clear(o)
		*lse = sink
		return
	}
	l := rc.base + math.Log(rc.sum) + shift
	inv := 1 / rc.sum
	if !math.IsInf(sink, -1) {
		both := max(l, sink) + math.Log1p(math.Exp(-math.Abs(l-sink)))
		inv *= math.Exp(l - both)
		l = both
	}
	for c, a := range rc.acc {
		o[c] = T(a * inv)
	}
	*lse = l
}

// rootBound returns the upper bound of s q.k over a tree.
func rootBound[T attn.Float](rc *rowCtx, tr *tree[T]) float64 {
	r := rc.r
	_, bound := nodeRho(rc, tr, 0)
	return dot(rc.sq, tr.centre[:r]) + bound
}

// nodeRho returns two bounds for node i: box = sum_t |s q_t| h_t, which
// bounds sum_t |s q_t| |k_t - z_t| and so |s q.(k - z)| and every monomial
// sum of the expansion (it decides expansions), and the tighter
// min(box, |s q|_2 R) for the branch and bound (R the node's ball radius;
// Cauchy-Schwarz).
func nodeRho[T attn.Float](rc *rowCtx, tr *tree[T], i int) (box, bound float64) {
	r := rc.r
	nd := tr.nd[i*(2*r+1) : (i+1)*(2*r+1)]
	box = dot(rc.aq, nd[r:2*r])
	return box, min(box, rc.qn*nd[2*r])
}

func mkEntry[T attn.Float](rc *rowCtx, tr *tree[T], i int) entry {
	switch rc.r {
	case 2:
		nd := tr.nd[i*5 : i*5+5]
		box := rc.aq[0]*nd[2] + rc.aq[1]*nd[3]
		return entry{int32(i), rc.sq[0]*nd[0] + rc.sq[1]*nd[1], box, min(box, rc.qn*nd[4])}
	case 3:
		nd := tr.nd[i*7 : i*7+7]
		box := rc.aq[0]*nd[3] + rc.aq[1]*nd[4] + rc.aq[2]*nd[5]
		return entry{int32(i), rc.sq[0]*nd[0] + rc.sq[1]*nd[1] + rc.sq[2]*nd[2], box, min(box, rc.qn*nd[6])}
	}
	r := rc.r
	nd := tr.nd[i*(2*r+1) : (i+1)*(2*r+1)]
	box := dot(rc.aq, nd[r:2*r])
	return entry{int32(i), dot(rc.sq, nd[:r]), box, min(box, rc.qn*nd[2*r])}
}

// walk visits the non-empty nodes of tr depth first from the root, for
// the row of rc, the child with the larger upper bound on the logits
// first: visit(en, lo, hi, leaf) handles node en.i (its keys lo..hi-1 in
// tree order) and returns whether to go on to its children (ignored for
// a leaf). The forward pass, the backward pass and maxLogit share it.
func walk[T attn.Float](rc *rowCtx, tr *tree[T], visit func(en entry, lo, hi int, leaf bool) bool) {
	rc.stack = append(rc.stack[:0], mkEntry(rc, tr, 0))
	for len(rc.stack) > 0 {
		en := rc.stack[len(rc.stack)-1]
		rc.stack = rc.stack[:len(rc.stack)-1]
		i := int(en.i)
		lo, hi := int(tr.lo[i]), int(tr.hi[i])
		if hi == lo {
			continue
		}
		if leaf := i >= tr.firstLeaf; !visit(en, lo, hi, leaf) || leaf {
			continue
		}
		ea, eb := mkEntry(rc, tr, 2*i+1), mkEntry(rc, tr, 2*i+2)
		if ea.xz+ea.rhb > eb.xz+eb.rhb {
			ea, eb = eb, ea
		}
		rc.stack = append(rc.stack, ea, eb) // the better child is popped first
	}
}

// runTree adds the keys of tr to the row: branch and bound for the
// maximum, nodes below the window dropped, narrow nodes expanded, leaves
// summed directly.
func runTree[T attn.Float](rc *rowCtx, tr *tree[T]) {
	r, e := rc.r, rc.e
	walk(rc, tr, func(en entry, lo, hi int, leaf bool) bool {
		rc.c.visited++
		cnt := hi - lo
		if en.xz+en.rhb < rc.mcur-rc.t {
			rc.c.pruned++
			rc.c.dropped += int64(cnt)
			return false
		}
		if lb := en.xz - en.rhb; lb > rc.mcur {
			rc.mcur = lb
		}
		if g := rc.degree(en.rho); g >= 0 && float64(cnt)*rc.countScale >= rc.cut[g] {
			expand(rc, tr, int(en.i), g, en.xz, cnt)
			return false
		}
		if leaf {
			brute(rc, tr.keys[lo*r:hi*r], tr.vals[lo*e:hi*e])
			return false
		}
		rc.c.flops += int64(8 * r)
		return true
	})
}

// expand records node i for the row, to be added through its moments in
// flush: exp(s q.z) times sum_{|alpha|<=g} (s q)^alpha/alpha! sum_j
// (k_j - z)^alpha (v_j, 1).
func expand[T attn.Float](rc *rowCtx, tr *tree[T], i, g int, xz float64, cnt int) {
	mom := tr.moments(i)
	w := rc.e + 1
	nt := rc.mo.terms(g)
	slot := len(rc.slots)
	if g > rc.coefDeg {
		// Only the degrees the row's expansions use so far.
		rc.mo.quotients(rc.sq, rc.coefDeg, g, rc.yk)
		rc.mo.coefficientsFrom(rc.yk, rc.coefDeg, g, rc.slotCoef(slot))
		rc.coefDeg = g
	}
	rc.pend = append(rc.pend, pending{mom, tr.ld, g, xz, int32(slot)})
	rc.c.expanded++
	rc.c.expTerms += int64(nt * w)
	rc.c.expandedKeys += int64(cnt)
	rc.c.flops += int64(2 * nt * w)
	rc.c.maxDegreeUsed = max(rc.c.maxDegreeUsed, int64(g))
}

// brute adds keys directly (keys: c*r reduced, vals: c*e), a block of
// at most bruteBlock at a time: the logits, then their exponentials in one
// call of kernels.ExpShiftSum64 (within 2 units of float64 rounding, as
// math.Exp: the budget's 4u per weight covers either), then the values.
// Keys below the window are summed too: it only removes their share of
// the dropped mass.
func brute[T attn.Float](rc *rowCtx, keys []float64, vals []T) {
	r, e := rc.r, rc.e
	n := len(keys) / r
	for a := 0; a < n; a += bruteBlock {
		b := min(a+bruteBlock, n)
		bruteBlockAdd(rc, keys[a*r:b*r], vals[a*e:b*e])
	}
	rc.c.brute += int64(n)
	rc.c.flops += int64(n * 2 * (r + e))
}

// bruteBlock is the most keys brute sums per exponential call.
const bruteBlock = 64

func bruteBlockAdd[T attn.Float](rc *rowCtx, keys []float64, vals []T) {
	r, e := rc.r, rc.e
	n := len(keys) / r
	if n == 0 {
		return
	}
	xs := rc.xbuf[:n]
	switch r {
	case 1:
		s0 := rc.sq[0]
		for j := range xs {
			xs[j] = s0 * keys[j]
		}
	case 2:
		s0, s1 := rc.sq[0], rc.sq[1]
		for j := range xs {
			xs[j] = s0*keys[2*j] + s1*keys[2*j+1]
		}
	case 3:
		s0, s1, s2 := rc.sq[0], rc.sq[1], rc.sq[2]
		for j := range xs {
			xs[j] = s0*keys[3*j] + s1*keys[3*j+1] + s2*keys[3*j+2]
		}
	default:
		for j := range xs {
			xs[j] = dot(rc.sq, keys[j*r:(j+1)*r])
		}
	}
	best, mx := 0, xs[0]
	for j, x := range xs {
		if x > mx {
			best, mx = j, x
		}
	}
	if mx < rc.mcur-rc.t {
		rc.c.dropped += int64(n)
		return
	}
	if mx > rc.mcur {
		rc.mcur = mx
		copy(rc.cand, keys[best*r:(best+1)*r])
		rc.haveCand = true
	}
	rc.rebase(mx) // every exponent <= 16
	rc.sum += kernels.ExpShiftSum64(xs, 1, rc.base)
	acc := rc.acc
	if e == 8 {
		acc = acc[:8]
		for j, f := range xs {
			v := vals[j*8 : j*8+8]
			acc[0] += f * float64(v[0])
			acc[1] += f * float64(v[1])
			acc[2] += f * float64(v[2])
			acc[3] += f * float64(v[3])
			acc[4] += f * float64(v[4])
			acc[5] += f * float64(v[5])
			acc[6] += f * float64(v[6])
			acc[7] += f * float64(v[7])
		}
		return
	}
	for j, f := range xs {
		for c, vc := range vals[j*e : (j+1)*e] {
			acc[c] += f * float64(vc)
		}
	}
}

// cellCut is the largest number of 1-D cells for which a row uses the
// cell method rather than the tree.
var cellCut = 64.0

// forceCells makes every 1-D row use cells (tests use the cell method as
// a reference for the tree).
var forceCells = false

// runCells1D computes a row of a 1-D problem by the paper's illustration:
// the relevance window below the exact maximum M cut into cells of width
// delta = 2 ln(1 + epsT) in logit; every key of a cell gets the weight of
// the cell's logarithmic midpoint (relative error <= epsT), and a cell's
// count and value sum come from prefix sums, so each non-empty cell costs
// one binary search. It returns false, having done nothing, when the tree
// would be cheaper (more than cellCut cells).
func runCells1D[T attn.Float](rc *rowCtx, trees []*tree[T], tailK []float64, tailV []T) bool {
	sq := rc.sq[0]
	m := math.Inf(-1)
	for _, tr := range trees {
		if tr.n > 0 {
			m = max(m, sq*tr.keys[0], sq*tr.keys[tr.n-1])
		}
	}
	for _, k := range tailK {
		m = max(m, sq*k)
	}
	lowest := m - rc.t
	// Window counts.
	var inWindow int
	for _, tr := range trees {
		a, b := windowRange(tr, sq, lowest)
		inWindow += b - a
	}
	nCells := min(float64(inWindow), math.Ceil(rc.t/rc.delta)+1)
	if !forceCells && nCells > cellCut {
		return false
	}
	rc.c.cellRows++
	rc.mcur = m
	e := rc.e
	if sq == 0 {
		// Every logit is 0: plain sums, no cells.
		f := rc.weight(0)
		for _, tr := range trees {
			rc.sum += f * float64(tr.n)
			for c := range e {
				rc.acc[c] += f * tr.rangeSum(0, tr.n, c)
			}
		}
	} else {
		for _, tr := range trees {
			a, b := windowRange(tr, sq, lowest)
			rc.c.dropped += int64(tr.n - (b - a))
			cellsWalk(rc, tr, sq, m, a, b)
		}
	}
	brute(rc, tailK, tailV)
	return true
}

// windowRange returns the index range [a, b) of the sorted keys of tr
// whose logit sq*k is >= lowest.
func windowRange[T attn.Float](tr *tree[T], sq, lowest float64) (int, int) {
	switch {
	case sq > 0:
		lim := lowest / sq
		return sortSearch(tr.keys, func(k float64) bool { return k >= lim }), tr.n
	case sq < 0:
		lim := lowest / sq
		return 0, sortSearch(tr.keys, func(k float64) bool { return k > lim })
	}
	return 0, tr.n
}

func sortSearch(keys []float64, f func(float64) bool) int {
	lo, hi := 0, len(keys)
	for lo < hi {
		h := int(uint(lo+hi) >> 1)
		if !f(keys[h]) {
			lo = h + 1
		} else {
			hi = h
		}
	}
	return lo
}

// cellsWalk sums the window [a, b) of tr cell by cell, from the key with
// the largest logit down.
func cellsWalk[T attn.Float](rc *rowCtx, tr *tree[T], sq, m float64, a, b int) {
	e := rc.e
	delta := rc.delta
	keys := tr.keys
	if sq > 0 {
		p := b - 1
		for p >= a {
			x := sq * keys[p]
			c := math.Floor((m - x) / delta)
			lower := (m - (c+1)*delta) / sq // keys > lower are in the cell
			q := a + sortSearch(keys[a:p], func(k float64) bool { return k > lower })
			addCell(rc, tr, m-(c+0.5)*delta, q, p+1, e)
			p = q - 1
		}
		return
	}
	p := a
	for p < b {
		x := sq * keys[p]
		c := math.Floor((m - x) / delta)
		upper := (m - (c+1)*delta) / sq // keys < upper are in the cell
		q := p + 1 + sortSearch(keys[p+1:b], func(k float64) bool { return k >= upper })
		addCell(rc, tr, m-(c+0.5)*delta, p, q, e)
		p = q
	}
}

func addCell[T attn.Float](rc *rowCtx, tr *tree[T], rep float64, a, b, e int) {
	f := rc.weight(rep)
	rc.sum += f * float64(b-a)
	for c := range e {
		rc.acc[c] += f * tr.rangeSum(a, b, c)
	}
	rc.c.cells++
	rc.c.brute += 0
	rc.c.flops += int64(2*e + 40)
}

// rowOrder returns the rows of a head in an order that keeps queries of
// similar direction together (a Morton order of the quantised q'/|q'|,
// then |q'|), so each row's warm start, the previous row's best key, is
// close to its maximum.
func rowOrder(q []float64, n, r int) []int32 {
	bits := 60 / max(r, 1)
	if bits > 20 {
		bits = 20
	}
	scale := float64(uint64(1)<<bits - 1)
	// key in the high 32 bits (bits*r <= 60, keep the top 32), row in
	// the low 32: one sort of integers.
	keys := make([]uint64, n)
	for i := range n {
		var s2 float64
		for t := range r {
			s2 += q[i*r+t] * q[i*r+t]
		}
		inv := 0.0
		if s2 > 0 {
			inv = 1 / math.Sqrt(s2)
		}
		var key uint64
		if r == 2 {
			c0 := uint64((q[i*2]*inv + 1) * 0.5 * scale)
			c1 := uint64((q[i*2+1]*inv + 1) * 0.5 * scale)
			key = spread2(c0) | spread2(c1)<<1
		} else {
			for t := range r {
				c := uint64((q[i*r+t]*inv + 1) * 0.5 * scale)
				for b := range bits {
					key |= (c >> b & 1) << (b*r + t)
				}
			}
		}
		keys[i] = key>>(bits*r-min(bits*r, 32))<<32 | uint64(i)
	}
	sortHigh32(keys)
	order := make([]int32, n)
	for i, k := range keys {
		order[i] = int32(uint32(k))
	}
	return order
}

// sortHigh32 sorts x by its high 32 bits, keeping the order of equal
// ones: for x in ascending order of the low 32 bits (rowOrder's row
// indices), the same order as sorting the whole words. A least
// significant digit radix sort, a byte per pass (passes where every word
// has the same byte skipped): a few linear passes instead of a
// comparison sort's n log n branches.
func sortHigh32(x []uint64) {
	if len(x) < 2 {
		return
	}
	var counts [4][256]int
	for _, v := range x {
		counts[0][byte(v>>32)]++
		counts[1][byte(v>>40)]++
		counts[2][byte(v>>48)]++
		counts[3][byte(v>>56)]++
	}
	tmp := make([]uint64, len(x))
	src, dst := x, tmp
	for pass := range 4 {
		c := &counts[pass]
		shift := 32 + 8*uint(pass)
		if c[byte(src[0]>>shift)] == len(src) {
			continue
		}
		off := 0
		for b, k := range c {
			c[b] = off
			off += k
		}
		for _, v := range src {
			b := byte(v >> shift)
			dst[c[b]] = v
			c[b]++
		}
		src, dst = dst, src
	}
	if &src[0] != &x[0] {
		copy(x, src)
	}
}

// spread2 moves bit b of x (below 2^32) to bit 2b: one coordinate of a
// two-dimensional Morton key.
func spread2(x uint64) uint64 {
	x &= 0xFFFFFFFF
	x = (x | x<<16) & 0x0000FFFF0000FFFF
	x = (x | x<<8) & 0x00FF00FF00FF00FF
	x = (x | x<<4) & 0x0F0F0F0F0F0F0F0F
	x = (x | x<<2) & 0x3333333333333333
	return (x | x<<1) & 0x5555555555555555
}
