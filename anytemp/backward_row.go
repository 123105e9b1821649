package anytemp

import (
	"math"

	"github.com/fastattn/fastattn/attn"
)

// The backward pass, phase 1: each row walks its trees, sums its window
// (dQ) and deposits its share of dK and dV into local expansions.

// bwdCounters are what the backward pass reports.
type bwdCounters struct {
	rows, visited, pruned, expanded int64
	brute, dropped, expandedKeys    int64
	tail, flops, maxDegreeUsed      int64
	deposits, expandedTerms         int64
}

func (c *bwdCounters) add(o *bwdCounters) {
	c.rows += o.rows
	c.visited += o.visited
	c.pruned += o.pruned
	c.expanded += o.expanded
	c.brute += o.brute
	c.dropped += o.dropped
	c.expandedKeys += o.expandedKeys
	c.tail += o.tail
	c.flops += o.flops
	c.deposits += o.deposits
	c.expandedTerms += o.expandedTerms
	c.maxDegreeUsed = max(c.maxDegreeUsed, o.maxDegreeUsed)
}

// bwdWorker is one goroutine's state.
type bwdWorker[T attn.Float] struct {
	p   *attn.Problem[T]
	g   *attn.Gradients[T]
	dO  []T
	rcs map[*params]*rowCtx
	rc  *rowCtx

	head int
	hb   *bwdHead[T]
	buf  []float64 // l*(d+e): this worker's dK, dV for the head, original order

	// The current row. Delta_i = dO_i.O_i is computed by the walk itself
	// (num/den: sum_j P_ij dO_i.v_j and sum_j P_ij over the keys it keeps),
	// not taken from the forward's output, which may lack a far key whose
	// huge value the backward keeps; so the parts of dQ and dK that are
	// multiplied by Delta_i wait for the end of the row: dqB (sum_j P_ij
	// (k_j - mu)), the kept keys' (j, P_ij, dO_i.v_j) and the expansions
	// the row deposits.
	num, den   float64
	dqB        []float64
	kept       []keptKey
	deposits   []pendingDeposit[T]
	ecs        []float64 // the deposits' coefficients, back to back
	lse, delta float64
	lref       float64   // log of the row's reference value magnitude (see bwdHead.vlog)
	do         []float64 // e: dO_i
	sqf        []float64 // d: s q_i
	dq         []float64 // d: sum_j P_ij c_ij (k_j - mu)
	coef       []float64 // Taylor coefficients to degree G+1
	coefOK     bool
	mc         []float64

	psink  float64   // P_i,sink = exp(sink - LSE_i), 0 without a sink
	dsinks []float64 // this worker's share of g.DSinks

	// Causal: the trees of the last prefix (al: its aligned part); windows:
	// those of the last cover of [al, ar).
	al, ar int
	trees  []*bwdTree[T]

	c bwdCounters
}

// startHead points the worker at head hb, with an empty buffer.
func (w *bwdWorker[T]) startHead(hb *bwdHead[T]) {
	w.head, w.hb = hb.h, hb
	n := len(hb.acc)
	if cap(w.buf) < n {
		w.buf = make([]float64, n)
	}
	w.buf = w.buf[:n]
	clear(w.buf)
	pr := hb.hr.pr
	w.rc = w.rcs[pr]
	if w.rc == nil {
		w.rc = newRowCtx(pr)
		w.rcs[pr] = w.rc
	}
	d, e := hb.d, hb.e
	if len(w.sqf) < d {
		w.sqf, w.dq = make([]float64, d), make([]float64, d)
	}
	if len(w.do) < e {
		w.do = make([]float64, e)
	}
	if hb.expand {
		nt := hb.mo.terms(hb.deg + 1)
		if len(w.coef) < nt {
			w.coef, w.mc = make([]float64, nt), make([]float64, nt)
		}
	}
	w.al, w.trees = -1, w.trees[:0]
}

// flush adds the worker's buffer into its head's.
func (w *bwdWorker[T]) flush() {
	if w.head < 0 {
		return
	}
	hb := w.hb
	hb.amu.Lock()
	for x, v := range w.buf {
		hb.acc[x] += v
	}
	hb.amu.Unlock()
	w.head, w.hb = -1, nil
}

// keptKey is a key summed directly by the current row.
type keptKey struct {
	j      int // index in the head's keys, original order
	pw, dp float64
}

// pendingDeposit is an expansion the current row adds to node i of bt once
// Delta_i is known: coefficients ecs[off:off+n].
type pendingDeposit[T attn.Float] struct {
	bt     *bwdTree[T]
	i      int
	off, n int
}

// row computes dQ_i and adds row i's share of dK and dV.
func (w *bwdWorker[T]) row(i int) {
	hb, p := w.hb, w.p
	hd := hb.hr.hd
	h, d, e, r := hb.h, hb.d, hb.e, hd.r
	lo, lim := p.KeyRange(h, i)
	lse := hb.lse[i]
	if lim <= lo || math.IsInf(lse, -1) || math.IsNaN(lse) {
		return // no valid key: dQ_i stays zero
	}
	rc := w.rc
	rc.start(hd.q[i*r:(i+1)*r], p.Scale, lim-lo)
	w.c.rows++
	row := h*p.N + i
	w.lse, w.delta, w.lref = lse, hb.delta[i], hb.lref[i]
	w.psink = 0
	if sink := p.Sink(h); !math.IsInf(sink, -1) {
		w.psink = math.Exp(sink - (lse + hd.lseShift[i])) // the forward's LSE includes the sink
	}
	w.num, w.den = 0, 0
	w.kept, w.deposits, w.ecs = w.kept[:0], w.deposits[:0], w.ecs[:0]
	if len(w.dqB) < d {
		w.dqB = make([]float64, d)
	}
	clear(w.dqB[:d])
	for c := range e {
		w.do[c] = float64(w.dO[row*e+c])
	}
	for t := range d {
		w.sqf[t] = p.Scale * float64(p.Q[row*d+t])
	}
	clear(w.dq[:d])
	w.coefOK = false
	var tails [2][2]int // keys summed directly, original order: [a, b) twice
	if leftBounded(p) {
		tails = w.windowTrees(lo, lim)
	} else if ranged(p) {
		al := lim / minTreeBlock * minTreeBlock
		tails[0] = [2]int{al, lim}
		if al != w.al {
			w.al = al
			w.trees = w.trees[:0]
			pos := 0
			for bit := 62; bit >= 0; bit-- {
				size := 1 << bit
				if size < minTreeBlock || al&size == 0 {
					continue
				}
				w.trees = append(w.trees, hb.block(pos, size))
				pos += size
			}
		}
	} else {
		w.trees = append(w.trees[:0], hb.root)
	}
	low := lse - rc.t
	if w.psink > 0 {
		// The window hangs from the keys' largest logit, not from an LSE
		// the sink may dominate (by more than float64 resolves): the
		// gradient's terms are relative to the keys' own weights.
		low = min(low, w.maxLogit(tails)-rc.t)
	}
	for _, bt := range w.trees {
		w.runTree(bt, low)
	}
	for _, tl := range tails {
		w.tail(tl[0], tl[1], low)
	}
	delta := w.finishRow()
	if w.psink > 0 {
		// The sink's logit: dL/dsink = -P_i,sink Delta_i.
		w.dsinks[h%len(w.dsinks)] -= w.psink * delta
	}
	dq := w.g.DQ[row*d : (row+1)*d]
	for t := range d {
		dq[t] = T(p.Scale * w.dq[t])
	}
}

// maxLogit returns the current row's largest logit over its trees (by
// branch and bound on the reduced keys, within the rank truncation of the
// true one; runTree's margin covers it) and the keys of tails (causal tail,
// window edges).
func (w *bwdWorker[T]) maxLogit(tails [2][2]int) float64 {
	rc, hb := w.rc, w.hb
	r, d := rc.r, hb.d
	best := math.Inf(-1)
	for _, tl := range tails {
		for j := tl[0]; j < tl[1]; j++ {
			best = max(best, dot(w.sqf[:d], hb.kc[j*d:(j+1)*d]))
		}
	}
	for _, bt := range w.trees {
		tr := bt.tr
		walk(rc, tr, func(en entry, lo, hi int, leaf bool) bool {
			if en.xz+en.rhb <= best {
				return false
			}
			if leaf {
				for x := lo; x < hi; x++ {
					best = max(best, dot(rc.sq, tr.keys[x*r:(x+1)*r]))
				}
			}
			return true
		})
	}
	return best
}

// finishRow applies the row's own Delta_i (num/(den + P_i,sink); the
// forward's when nothing was kept) to dQ_i and to the row's deferred
// shares of dK, and returns it.
func (w *bwdWorker[T]) finishRow() float64 {
	hb := w.hb
	d, e := hb.d, hb.e
	delta := w.delta
	if w.den > 0 {
		delta = w.num / (w.den + w.psink)
	}
	for t := range d {
		w.dq[t] -= delta * w.dqB[t]
	}
	if w.psink > 0 {
		// dQ_i = s sum_j P_ij c_ij (k_j - mu) + s mu sum_j P_ij c_ij, and
		// with a sink sum_j P_ij c_ij = P_i,sink Delta_i is not 0: the
		// keys' share, num - Delta_i den, is added.
		mu := hb.hr.hd.mu
		for t := range d {
			w.dq[t] += (w.num - delta*w.den) * mu[t]
		}
	}
	wd := d + e
	for _, kk := range w.kept {
		a := w.buf[kk.j*wd : kk.j*wd+d]
		pc := kk.pw * (kk.dp - delta)
		for t := range a {
			a[t] += pc * w.sqf[t]
		}
	}
	for _, pd := range w.deposits {
		ntB := hb.mo.terms(hb.deg + 1)
		pd.bt.locks[pd.i].Lock()
		loc := pd.bt.loc[pd.i]
		if loc == nil {
			loc = make([]float64, ntB*(e+1))
			pd.bt.loc[pd.i] = loc
		}
		deposit(loc, ntB, e, w.ecs[pd.off:pd.off+pd.n], w.do, delta)
		pd.bt.locks[pd.i].Unlock()
	}
	return delta
}

// runTree adds the keys of bt to the current row.
func (w *bwdWorker[T]) runTree(bt *bwdTree[T], low float64) {
	rc, hb := w.rc, w.hb
	tr := bt.tr
	low -= hb.margin
	walk(rc, tr, func(en entry, lo, hi int, leaf bool) bool {
		i := int(en.i)
		w.c.visited++
		cnt := hi - lo
		if en.xz+en.rhb+max(0, bt.charge[i]-w.lref) < low {
			w.c.pruned++
			w.c.dropped += int64(cnt)
			return false
		}
		if hb.expand {
			if g := rc.degree(en.rho); g >= 0 && float64(cnt) >= hb.cut[g] {
				w.expandNode(bt, i, g, en.xz, cnt)
				return false
			}
		}
		if leaf {
			w.bruteTree(bt, lo, hi, low+hb.margin)
			return false
		}
		w.c.flops += int64(8 * rc.r)
		return true
	})
}

// expandNode adds node i of bt through its moments (dQ) and its local
// expansion (dK, dV), at degree g.
func (w *bwdWorker[T]) expandNode(bt *bwdTree[T], i, g int, xz float64, cnt int) {
	hb := w.hb
	tr, mo := bt.tr, hb.mo
	d, e := hb.d, hb.e
	gb := hb.deg + 1
	ntB := mo.terms(gb)
	nt, nt1 := mo.terms(g), mo.terms(g+1)
	if !w.coefOK {
		mo.coefficients(w.rc.sq, gb, w.coef)
		w.coefOK = true
	}
	mom := tr.moments(i)
	f := math.Exp(xz - w.lse)
	// Mc = sum_c dO_c M[v_c] (the dO.v_j part) and M[1] (the part
	// multiplied by Delta, applied in finishRow), to degree g+1.
	mc := w.mc[:nt1]
	contract(mc, mom, tr.ld, e, w.do, 0)
	mb := mom[e*tr.ld : e*tr.ld+nt1]
	coef := w.coef[:nt]
	s0, s0b := dotU(coef, mc[:nt]), dotU(coef, mb[:nt])
	w.num += f * s0
	w.den += f * s0b
	z := tr.centre[i*d : (i+1)*d]
	for t := range d {
		up := hb.up[t*ntB : t*ntB+nt]
		var s1, s1b float64
		for a, ca := range coef {
			s1 += ca * mc[up[a]]
			s1b += ca * mb[up[a]]
		}
		w.dq[t] += f * (z[t]*s0 + s1)
		w.dqB[t] += f * (z[t]*s0b + s1b)
	}
	// The row's share of the node's local expansion, to degree g+1,
	// deposited in finishRow.
	off := len(w.ecs)
	for _, ca := range w.coef[:nt1] {
		w.ecs = append(w.ecs, f*ca)
	}
	w.deposits = append(w.deposits, pendingDeposit[T]{bt, i, off, nt1})
	w.c.expanded++
	w.c.expandedKeys += int64(cnt)
	w.c.deposits++
	w.c.expandedTerms += int64(nt1 * (e + 1))
	w.c.flops += int64(4*nt1*(e+1) + 2*(d+1)*nt + nt1)
	w.c.maxDegreeUsed = max(w.c.maxDegreeUsed, int64(g))
}

// contract sets mc[a] = sum_c w[c] mom[c*stride+a] + wLast mom[e*stride+a]
// for a < len(mc): the moments of the row's key weights dO.v_j - Delta.
func contract(mc, mom []float64, stride, e int, w []float64, wLast float64) {
	n := len(mc)
	last := mom[e*stride : e*stride+n]
	switch e {
	case 1:
		m0, w0 := mom[:n], w[0]
		for a := range mc {
			mc[a] = w0*m0[a] + wLast*last[a]
		}
	case 2:
		m0, m1, w0, w1 := mom[:n], mom[stride:stride+n], w[0], w[1]
		for a := range mc {
			mc[a] = w0*m0[a] + w1*m1[a] + wLast*last[a]
		}
	case 3:
		m0, m1, m2 := mom[:n], mom[stride:stride+n], mom[2*stride:2*stride+n]
		w0, w1, w2 := w[0], w[1], w[2]
		for a := range mc {
			mc[a] = w0*m0[a] + w1*m1[a] + w2*m2[a] + wLast*last[a]
		}
	default:
		for a, x := range last {
			mc[a] = wLast * x
		}
		for c := range e {
			axpy(mc, mom[c*stride:c*stride+n], w[c])
		}
	}
}

// deposit adds ec[a] (w[c], wLast) to the columns of loc (stride stride).
func deposit(loc []float64, stride, e int, ec, w []float64, wLast float64) {
	n := len(ec)
	last := loc[e*stride : e*stride+n]
	switch e {
	case 1:
		l0, w0 := loc[:n], w[0]
		for a, x := range ec {
			l0[a] += x * w0
			last[a] += x * wLast
		}
	case 2:
		l0, l1, w0, w1 := loc[:n], loc[stride:stride+n], w[0], w[1]
		for a, x := range ec {
			l0[a] += x * w0
			l1[a] += x * w1
			last[a] += x * wLast
		}
	case 3:
		l0, l1, l2 := loc[:n], loc[stride:stride+n], loc[2*stride:2*stride+n]
		w0, w1, w2 := w[0], w[1], w[2]
		for a, x := range ec {
			l0[a] += x * w0
			l1[a] += x * w1
			l2[a] += x * w2
			last[a] += x * wLast
		}
	default:
		for c := range e {
			axpy(loc[c*stride:c*stride+n], ec, w[c])
		}
		axpy(last, ec, wLast)
	}
}

// bruteTree adds keys lo..hi-1 (tree order) of bt one by one, exactly.
func (w *bwdWorker[T]) bruteTree(bt *bwdTree[T], lo, hi int, low float64) {
	hb := w.hb
	d, e := hb.d, hb.e
	tr := bt.tr
	for x := lo; x < hi; x++ {
		k := bt.kf[x*d : (x+1)*d]
		var lg float64
		switch d {
		case 1:
			lg = w.sqf[0] * k[0]
		case 2:
			lg = w.sqf[0]*k[0] + w.sqf[1]*k[1]
		case 3:
			lg = w.sqf[0]*k[0] + w.sqf[1]*k[1] + w.sqf[2]*k[2]
		default:
			lg = dot(w.sqf[:d], k)
		}
		if lg < low && lg+max(0, hb.vlog[tr.perm[x]]-w.lref) < low {
			w.c.dropped++
			continue
		}
		w.addKey(int(tr.perm[x]), k, tr.vals[x*e:(x+1)*e], math.Exp(lg-w.lse))
	}
	w.c.brute += int64(hi - lo)
	w.c.flops += int64((hi - lo) * (4*(d+e) + 2*d + 20))
}

// addKey adds key j (original order; centred coordinates k, value v, weight
// pw = P_ij) to the current row: its dV share now, its dQ share split into
// the parts before and after Delta_i, its dK share at the row's end.
func (w *bwdWorker[T]) addKey(j int, k []float64, v []T, pw float64) {
	var dp float64
	for c, vc := range v {
		dp += w.do[c] * float64(vc)
	}
	w.num += pw * dp
	w.den += pw
	for t, kt := range k {
		w.dq[t] += pw * dp * kt
		w.dqB[t] += pw * kt
	}
	w.kept = append(w.kept, keptKey{j, pw, dp})
	d := len(k)
	acc := w.buf[j*(d+len(v))+d : (j+1)*(d+len(v))]
	for c := range acc {
		acc[c] += pw * w.do[c]
	}
}

// tail adds keys a..b-1 (original order) one by one (causal prefixes).
func (w *bwdWorker[T]) tail(a, b int, low float64) {
	hb := w.hb
	d, e := hb.d, hb.e
	v := hb.hr.v
	for j := a; j < b; j++ {
		k := hb.kc[j*d : (j+1)*d]
		lg := dot(w.sqf[:d], k)
		if lg < low && lg+max(0, hb.vlog[j]-w.lref) < low {
			w.c.dropped++
			continue
		}
		w.addKey(j, k, v[j*e:(j+1)*e], math.Exp(lg-w.lse))
	}
	w.c.tail += int64(b - a)
	w.c.flops += int64((b - a) * (4*(d+e) + 2*d + 20))
}
