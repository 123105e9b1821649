package anytemp

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/fastattn/fastattn/attn"
)

// The backward pass runs the forward's treecode once more, on the same
// trees, with the weights fixed by the forward's log-sum-exp. With
// P_ij = exp(s q_i.k_j - LSE_i), c_ij = dO_i.v_j - Delta_i and
// Delta_i = dO_i.O_i (docs/ALGORITHMS.md section 5),
//
//	dQ_i = s sum_j P_ij c_ij (k_j - mu)     (mu: the key mean; sum_j P_ij c_ij = 0)
//	dV_j = sum_i P_ij dO_i
//	dK_j = s sum_i P_ij c_ij q_i
//
// Each row walks its tree(s) as in the forward, but its window is known
// in advance (keys with s q.k < LSE_i - t carry at most eps_drop together
// and are dropped; t = ln(L/eps_drop)), so there is no branch and bound.
// A node below the window is pruned, a leaf is summed key by key, exactly
// (dQ_i accumulated, dK_j and dV_j scattered into the worker's buffer),
// and a node narrow enough in the row's direction (rho <= rhoMax[g], the
// forward's rule) goes through expansions about its centre z:
//
//   - dQ (a sum over keys, like the forward): with
//     u_j = s q.(k_j - z) and the Taylor coefficients a_alpha = (s q)^alpha/alpha!,
//     sum_j P_ij c_ij (k_j - mu) = E [ z S_0 + S_1 ],  E = exp(s q.z - LSE_i),
//     S_0 = sum_alpha a_alpha Mc_alpha,  (S_1)_t = sum_alpha a_alpha Mc_(alpha+e_t),
//     where Mc = sum_c dO_ic M[v_c] - Delta_i M[1] contracts the node's
//     moments M[f]_beta = sum_j (k_j - z)^beta f_j (the forward's moments,
//     one degree higher): |alpha| <= g, |beta| <= g+1.
//   - dV and dK (sums over queries: the transposed problem): the row adds
//     its share E a_alpha (dO_i, Delta_i) to the node's local expansion,
//     the polynomials F_c(k) = sum_|alpha|<=g+1 L_alpha,c (k - z)^alpha with
//     F(k) = sum_i exp(s q_i.k - LSE_i) (dO_i, Delta_i) (truncated). After
//     every row, local expansions are translated down the tree (exact
//     re-centring of polynomials, bounded terms as a child's box lies in
//     its parent's) and evaluated at each key of the leaves:
//     dV_j = F_dO(k_j) and dK_j = grad_k [F_dO(k).v_j - F_Delta(k)] at k_j,
//     since grad_k exp(s q.k) = s q exp(s q.k). The derivative of the
//     degree-(g+1) truncation is s q times the degree-g truncation, so
//     every weight P_ij the gradient uses, in dQ, dK or dV, is
//     P_ij (1 + delta_ij) with |delta_ij| <= eps_T (the forward's Taylor
//     rule), whatever the size of the logits.
//
// Expansions need the key coordinates of the tree to be the keys
// themselves (up to the centring): heads that the forward reduced to a
// lower rank (r < d) use their reduced tree for pruning only, with the
// rank truncation added to every node's upper bound, and sum every key of
// the window exactly in d dimensions. Causal rows use the forward's
// decomposition of a prefix into aligned power-of-two blocks (each block's
// tree built once per head and shared by all rows) plus a tail summed
// directly.
//
// All arithmetic is in float64 (float32 inputs are converted); the
// exponents are s q.k - LSE_i <= O(eps) and s q.z - LSE_i <= rho + O(eps)
// for any size of the logits, so nothing overflows.

// Backward32 computes the gradients of attention with respect to Q, K and
// V (float32 in and out, float64 inside); see the comment above.
func (m Method) Backward32(ctx context.Context, p *attn.Problem[float32], out *attn.Output[float32], dO []float32, g *attn.Gradients[float32]) (attn.Stats, error) {
	return backward(ctx, m, p, out, dO, g, true)
}

// Backward64 computes the gradients of attention with respect to Q, K and
// V in float64.
func (m Method) Backward64(ctx context.Context, p *attn.Problem[float64], out *attn.Output[float64], dO []float64, g *attn.Gradients[float64]) (attn.Stats, error) {
	return backward(ctx, m, p, out, dO, g, false)
}

// bwdMaxExpandDim is the largest dimension whose trees use expansions in
// the backward pass (beyond it the monomial tables are larger than a
// leaf's keys).
const bwdMaxExpandDim = 6

// bwdChunk is the number of rows in one work item.
const bwdChunk = 64

// bwdHead is one head's backward state.
type bwdHead[T attn.Float] struct {
	hr     *headRun[T]
	h      int
	d, e   int
	expand bool
	deg    int        // largest expansion degree G (the forward's); moments and local expansions go to G+1
	mo     *monomials // degree G+1
	up     []int32    // up[t*terms(G+1)+a]: index of alpha_a + e_t, -1 beyond degree G+1
	cut    []float64  // cut[g]: fewest keys for which an expansion of degree g beats summing them
	kc     []float64  // l*d: centred keys in d dimensions, original order
	lse    []float64  // n: LSE_i less the centring shift s q_i.mu
	delta  []float64  // n: dO_i . O_i
	margin float64    // added to node upper bounds before pruning: the rank truncation

	shiftFlops, evalFlops int64 // one re-centring of a local expansion; one key's evaluation

	root *bwdTree[T] // non-causal: the tree over all keys

	bmu    sync.Mutex
	blocks map[[2]int]*bwdBlock[T] // causal: the trees of the aligned blocks

	amu sync.Mutex
	acc []float64 // l*(d+e): dK (scaled) and dV of each key, original order
}

// bwdTree is a tree with the local expansions its nodes receive.
type bwdTree[T attn.Float] struct {
	tr    *tree[T]
	kf    []float64 // n*d: centred keys in d dimensions, tree order
	loc   [][]float64
	locks []sync.Mutex
}

type bwdBlock[T attn.Float] struct {
	once sync.Once
	bt   *bwdTree[T]
}

// checkGradSizes checks the slices Backward gets against p.
func checkGradSizes[T attn.Float](p *attn.Problem[T], out *attn.Output[T], dO []T, g *attn.Gradients[T]) error {
	if out == nil || g == nil {
		return fmt.Errorf("%w: nil output or gradients", attn.ErrBadProblem)
	}
	for _, c := range []struct {
		name   string
		got, n int
	}{
		{"O", len(out.O), p.Heads * p.N * p.E},
		{"LSE", len(out.LSE), p.Heads * p.N},
		{"dO", len(dO), p.Heads * p.N * p.E},
		{"DQ", len(g.DQ), len(p.Q)},
		{"DK", len(g.DK), len(p.K)},
		{"DV", len(g.DV), len(p.V)},
	} {
		if c.got != c.n {
			return fmt.Errorf("%w: %s has %d entries, want %d", attn.ErrBadProblem, c.name, c.got, c.n)
		}
	}
	return nil
}

func backward[T attn.Float](ctx context.Context, m Method, p *attn.Problem[T], out *attn.Output[T], dO []T, g *attn.Gradients[T], f32 bool) (attn.Stats, error) {
	if err := p.Validate(); err != nil {
		return attn.Stats{}, err
	}
	if err := checkGradSizes(p, out, dO, g); err != nil {
		return attn.Stats{}, err
	}
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}
	// The same reduction and budget as the forward that produced out.
	runs, b, err := plan(ctx, m, p, f32)
	if err != nil {
		return attn.Stats{}, err
	}
	clear(g.DQ)
	clear(g.DK)
	clear(g.DV)
	workers := m.workers()
	hbs := make([]*bwdHead[T], p.Heads)
	parallelFor(ctx, workers, p.Heads, func(h int) {
		hbs[h] = newBwdHead(p, runs[h], out, dO)
		hb := hbs[h]
		if !p.Causal && hb.hr.hd.l > 0 {
			hb.root = hb.buildTree(0, hb.hr.hd.l, p.Heads < workers)
			hb.hr.order = rowOrder(hb.hr.hd.q, p.N, hb.hr.hd.r)
		}
	})
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}

	// Rows: chunks of one head, head after head, so that a worker merges
	// its buffer into a head's at most once.
	type item struct{ h, a, b int }
	var items []item
	for h := range p.Heads {
		if hbs[h].hr.hd.l == 0 {
			continue
		}
		for a := 0; a < p.N; a += bwdChunk {
			items = append(items, item{h, a, min(a+bwdChunk, p.N)})
		}
	}
	var next atomic.Int64
	var cmu sync.Mutex
	var total bwdCounters
	var wg sync.WaitGroup
	for range min(workers, len(items)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &bwdWorker[T]{p: p, g: g, dO: dO, head: -1, rcs: map[*params]*rowCtx{}}
			defer func() {
				w.flush()
				cmu.Lock()
				total.add(&w.c)
				cmu.Unlock()
			}()
			for ctx.Err() == nil {
				k := int(next.Add(1) - 1)
				if k >= len(items) {
					return
				}
				it := items[k]
				if it.h != w.head {
					w.flush()
					w.startHead(hbs[it.h])
				}
				for i := it.a; i < it.b; i++ {
					row := i
					if !p.Causal {
						row = int(w.hb.hr.order[i])
					}
					w.row(row)
				}
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}

	// Local expansions down to the keys, then dK and dV out.
	var locNodes, evalKeys, downFlops atomic.Int64
	parallelFor(ctx, workers, p.Heads, func(h int) {
		hb := hbs[h]
		inner := max(1, workers/p.Heads)
		for _, bt := range hb.trees() {
			if ctx.Err() != nil {
				return
			}
			n, k, f := hb.downward(bt, inner)
			locNodes.Add(n)
			evalKeys.Add(k)
			downFlops.Add(f)
		}
		hb.write(p, g)
	})
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}
	total.flops += downFlops.Load()
	return bwdStats(hbs, b, &total, locNodes.Load(), evalKeys.Load()), nil
}

// newBwdHead prepares head hr of p: centred keys in d dimensions, the
// rows' shifted log-sum-exp and Delta, and the expansion tables.
func newBwdHead[T attn.Float](p *attn.Problem[T], hr *headRun[T], out *attn.Output[T], dO []T) *bwdHead[T] {
	hd := hr.hd
	d, e, n, l := p.D, p.E, p.N, hd.l
	hb := &bwdHead[T]{hr: hr, h: hd.h, d: d, e: e}
	hb.expand = hd.r == d && d <= bwdMaxExpandDim && hr.pr.g >= 0
	if hd.r == d {
		hb.kc = hd.k
	} else {
		// The forward's centring (same sums in the same order), in d
		// dimensions; the reduced tree serves only to prune, and its
		// truncation error is added to every bound.
		keys := p.K[hd.h*p.M*d:]
		mu := make([]float64, d)
		for j := range l {
			for t := range d {
				mu[t] += float64(keys[j*d+t])
			}
		}
		for t := range d {
			mu[t] /= float64(l)
		}
		hb.kc = make([]float64, l*d)
		for j := range l {
			for t := range d {
				hb.kc[j*d+t] = float64(keys[j*d+t]) - mu[t]
			}
		}
		hb.margin = hd.theta * 2
	}
	hb.lse = make([]float64, n)
	hb.delta = make([]float64, n)
	for i := range n {
		row := hd.h*n + i
		hb.lse[i] = out.LSE[row] - hd.lseShift[i]
		var s float64
		for c := range e {
			s += float64(dO[row*e+c]) * float64(out.O[row*e+c])
		}
		hb.delta[i] = s
	}
	if hb.expand {
		hb.deg = hr.pr.g
		hb.mo = newMonomials(d, hb.deg+1)
		hb.up = upTable(hb.mo, d, hb.deg+1)
		ntB, nt := hb.mo.terms(hb.deg+1), hb.mo.terms(hb.deg)
		for t := range d {
			for a := range ntB {
				for j := hb.up[t*ntB+a]; j >= 0; j = hb.up[t*ntB+int(j)] {
					hb.shiftFlops += int64(3 * (e + 1))
				}
			}
		}
		hb.evalFlops = int64(ntB + 2*(2*e+1)*ntB + 3*d*nt)
		// Costs in flops: an expansion of degree g contracts the
		// moments (e+1 columns of terms(g+1)), forms S_0 and S_1
		// (d+1 dot products of terms(g)) and deposits terms(g+1) x (e+1);
		// a key summed directly costs its logit, an exponential (~20)
		// and the four updates.
		hb.cut = make([]float64, hb.deg+1)
		for x := range hb.cut {
			exp := float64(4*hb.mo.terms(x+1)*(e+1)+2*(d+1)*hb.mo.terms(x)) + 60
			hb.cut[x] = exp / float64(4*(d+e)+2*d+25)
			if bwdForceExpand {
				hb.cut[x] = 0
			}
		}
	}
	hb.acc = make([]float64, l*(d+e))
	return hb
}

// bwdForceExpand makes every node narrow enough be expanded, whatever its
// number of keys (tests: deep downward passes).
var bwdForceExpand = false

// upTable returns up[t*terms(g)+a], the index of alpha_a + e_t in mo
// (degree g), or -1 when |alpha_a| = g.
func upTable(mo *monomials, d, g int) []int32 {
	nt := mo.terms(g)
	up := make([]int32, d*nt)
	for x := range up {
		up[x] = -1
	}
	all := len(mo.parent)
	for a := range nt {
		for t := range d {
			if mo.exps[a*d+t] > 0 {
				up[t*nt+int(mo.down[t*all+a])] = int32(a)
			}
		}
	}
	return up
}

// buildTree builds the tree of keys start..start+count-1 for the backward
// pass: moments to degree G+1 when the head uses expansions.
func (hb *bwdHead[T]) buildTree(start, count int, parallel bool) *bwdTree[T] {
	hd := hb.hr.hd
	g, mo := 0, hb.mo
	if hb.expand {
		g = hb.deg + 1
	} else {
		mo = newMonomials(hd.r, 0)
	}
	tr := buildTree(hd, hb.hr.v, hb.e, start, count, g, mo, parallel)
	bt := &bwdTree[T]{tr: tr}
	d := hb.d
	if hd.r == d {
		bt.kf = tr.keys
	} else {
		bt.kf = make([]float64, count*d)
		for x, j := range tr.perm {
			copy(bt.kf[x*d:(x+1)*d], hb.kc[int(j)*d:int(j+1)*d])
		}
	}
	if hb.expand {
		nodes := len(tr.lo)
		bt.loc = make([][]float64, nodes)
		bt.locks = make([]sync.Mutex, nodes)
	}
	return bt
}

// block returns the tree of the aligned block start..start+size-1 (causal),
// built on first use and shared by every row.
func (hb *bwdHead[T]) block(start, size int) *bwdTree[T] {
	hb.bmu.Lock()
	if hb.blocks == nil {
		hb.blocks = map[[2]int]*bwdBlock[T]{}
	}
	bl := hb.blocks[[2]int{start, size}]
	if bl == nil {
		bl = &bwdBlock[T]{}
		hb.blocks[[2]int{start, size}] = bl
	}
	hb.bmu.Unlock()
	bl.once.Do(func() { bl.bt = hb.buildTree(start, size, size >= 1<<16) })
	return bl.bt
}

// trees lists the head's trees.
func (hb *bwdHead[T]) trees() []*bwdTree[T] {
	if hb.root != nil {
		return []*bwdTree[T]{hb.root}
	}
	keys := make([][2]int, 0, len(hb.blocks))
	for k, bl := range hb.blocks {
		if bl.bt != nil {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b [2]int) int { return cmp.Or(a[0]-b[0], a[1]-b[1]) })
	out := make([]*bwdTree[T], len(keys))
	for x, k := range keys {
		out[x] = hb.blocks[k].bt
	}
	return out
}

// write copies the head's accumulated dK and dV into g.
func (hb *bwdHead[T]) write(p *attn.Problem[T], g *attn.Gradients[T]) {
	d, e := hb.d, hb.e
	w := d + e
	for j := range hb.hr.hd.l {
		a := hb.acc[j*w : (j+1)*w]
		dk := g.DK[(hb.h*p.M+j)*d : (hb.h*p.M+j+1)*d]
		for t := range d {
			dk[t] = T(a[t])
		}
		dv := g.DV[(hb.h*p.M+j)*e : (hb.h*p.M+j+1)*e]
		for c := range e {
			dv[c] = T(a[d+c])
		}
	}
}

// bwdCounters are what the backward pass reports.
type bwdCounters struct {
	rows, visited, pruned, expanded  int64
	brute, dropped, expandedKeys     int64
	tail, flops, maxDegreeUsed       int64
	deposits, expandedTerms, leafOps int64
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

	// The current row.
	lse, delta float64
	do         []float64 // e: dO_i
	sqf        []float64 // d: s q_i
	dq         []float64 // d: sum_j P_ij c_ij (k_j - mu)
	coef       []float64 // Taylor coefficients to degree G+1
	coefOK     bool
	mc, ec     []float64

	// Causal: the trees of the last prefix.
	al    int
	trees []*bwdTree[T]

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
			w.coef, w.mc, w.ec = make([]float64, nt), make([]float64, nt), make([]float64, nt)
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

// row computes dQ_i and adds row i's share of dK and dV.
func (w *bwdWorker[T]) row(i int) {
	hb, p := w.hb, w.p
	hd := hb.hr.hd
	h, d, e, r := hb.h, hb.d, hb.e, hd.r
	lim := p.KeyLimit(h, i)
	lse := hb.lse[i]
	if lim == 0 || math.IsInf(lse, -1) || math.IsNaN(lse) {
		return // no valid key: dQ_i stays zero
	}
	rc := w.rc
	rc.start(hd.q[i*r:(i+1)*r], p.Scale, lim)
	w.c.rows++
	row := h*p.N + i
	w.lse, w.delta = lse, hb.delta[i]
	for c := range e {
		w.do[c] = float64(w.dO[row*e+c])
	}
	for t := range d {
		w.sqf[t] = p.Scale * float64(p.Q[row*d+t])
	}
	clear(w.dq[:d])
	w.coefOK = false
	low := lse - rc.t
	if !p.Causal {
		w.runTree(hb.root, low)
	} else {
		al := lim / minTreeBlock * minTreeBlock
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
		for _, bt := range w.trees {
			w.runTree(bt, low)
		}
		w.tail(al, lim, low)
	}
	dq := w.g.DQ[row*d : (row+1)*d]
	for t := range d {
		dq[t] = T(p.Scale * w.dq[t])
	}
}

// runTree adds the keys of bt to the current row.
func (w *bwdWorker[T]) runTree(bt *bwdTree[T], low float64) {
	rc, hb := w.rc, w.hb
	tr := bt.tr
	low -= hb.margin
	rc.stack = append(rc.stack[:0], mkEntry(rc, tr, 0))
	for len(rc.stack) > 0 {
		en := rc.stack[len(rc.stack)-1]
		rc.stack = rc.stack[:len(rc.stack)-1]
		i := int(en.i)
		w.c.visited++
		lo, hi := int(tr.lo[i]), int(tr.hi[i])
		cnt := hi - lo
		if cnt == 0 {
			continue
		}
		if en.xz+en.rhb < low {
			w.c.pruned++
			w.c.dropped += int64(cnt)
			continue
		}
		if hb.expand {
			if g := rc.degree(en.rho); g >= 0 && float64(cnt) >= hb.cut[g] {
				w.expandNode(bt, i, g, en.xz, cnt)
				continue
			}
		}
		if i >= tr.firstLeaf {
			w.bruteTree(bt, lo, hi, low+hb.margin)
			continue
		}
		rc.stack = append(rc.stack, mkEntry(rc, tr, 2*i+1), mkEntry(rc, tr, 2*i+2))
		w.c.flops += int64(8 * rc.r)
	}
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
	// Mc = sum_c dO_c M[v_c] - Delta M[1], to degree g+1.
	mc := w.mc[:nt1]
	contract(mc, mom, ntB, e, w.do, -w.delta)
	coef := w.coef[:nt]
	s0 := dotU(coef, mc[:nt])
	z := tr.centre[i*d : (i+1)*d]
	for t := range d {
		up := hb.up[t*ntB : t*ntB+nt]
		var s1 float64
		for a, ca := range coef {
			s1 += ca * mc[up[a]]
		}
		w.dq[t] += f * (z[t]*s0 + s1)
	}
	// The row's share of the node's local expansion, to degree g+1.
	ec := w.ec[:nt1]
	for a, ca := range w.coef[:nt1] {
		ec[a] = f * ca
	}
	bt.locks[i].Lock()
	loc := bt.loc[i]
	if loc == nil {
		loc = make([]float64, ntB*(e+1))
		bt.loc[i] = loc
	}
	deposit(loc, ntB, e, ec, w.do, w.delta)
	bt.locks[i].Unlock()
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
	wd := d + e
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
		if lg < low {
			w.c.dropped++
			continue
		}
		pw := math.Exp(lg - w.lse)
		v := tr.vals[x*e : (x+1)*e]
		var dp float64
		for c, vc := range v {
			dp += w.do[c] * float64(vc)
		}
		pc := pw * (dp - w.delta)
		for t, kt := range k {
			w.dq[t] += pc * kt
		}
		j := int(tr.perm[x])
		a := w.buf[j*wd : (j+1)*wd]
		for t := range d {
			a[t] += pc * w.sqf[t]
		}
		for c := range e {
			a[d+c] += pw * w.do[c]
		}
	}
	w.c.brute += int64(hi - lo)
	w.c.flops += int64((hi - lo) * (4*(d+e) + 2*d + 20))
}

// tail adds keys a..b-1 (original order) one by one (causal prefixes).
func (w *bwdWorker[T]) tail(a, b int, low float64) {
	hb := w.hb
	d, e := hb.d, hb.e
	wd := d + e
	v := hb.hr.v
	for j := a; j < b; j++ {
		k := hb.kc[j*d : (j+1)*d]
		lg := dot(w.sqf[:d], k)
		if lg < low {
			w.c.dropped++
			continue
		}
		pw := math.Exp(lg - w.lse)
		var dp float64
		for c := range e {
			dp += w.do[c] * float64(v[j*e+c])
		}
		pc := pw * (dp - w.delta)
		for t, kt := range k {
			w.dq[t] += pc * kt
		}
		acc := w.buf[j*wd : (j+1)*wd]
		for t := range d {
			acc[t] += pc * w.sqf[t]
		}
		for c := range e {
			acc[d+c] += pw * w.do[c]
		}
	}
	w.c.tail += int64(b - a)
	w.c.flops += int64((b - a) * (4*(d+e) + 2*d + 20))
}

// downward translates the local expansions of bt down to its leaves and
// evaluates them at every key below a node that received one, adding dV
// and dK into the head's accumulator. It returns the number of nodes that
// held an expansion, of keys evaluated and of flops.
func (hb *bwdHead[T]) downward(bt *bwdTree[T], workers int) (held, evaluated, flops int64) {
	if bt.loc == nil {
		return 0, 0, 0
	}
	tr := bt.tr
	nodes := len(tr.lo)
	sub := make([]bool, nodes) // the node or a descendant has an expansion
	for i := nodes - 1; i >= 0; i-- {
		if bt.loc[i] != nil {
			sub[i] = true
			held++
		}
		if i < tr.firstLeaf && (sub[2*i+1] || sub[2*i+2]) {
			sub[i] = true
		}
	}
	if !sub[0] {
		return held, 0, 0
	}
	// Split the top of the tree among the workers: the subtrees below
	// level lv are independent (disjoint keys).
	lv := 0
	for 1<<lv < 4*workers && lv < tr.depth {
		lv++
	}
	if workers == 1 {
		lv = 0
	}
	var nEval, nFlops atomic.Int64
	first := (1 << lv) - 1
	// The complete expansions of the nodes of level lv (their ancestors'
	// translated plus their own), computed serially.
	ds := newDownState(hb, tr.depth)
	starts := make([][]float64, 1<<lv)
	var walk func(i, depth int, cur []float64)
	walk = func(i, depth int, cur []float64) {
		if depth == lv {
			if cur != nil {
				starts[i-first] = append([]float64(nil), cur...)
			}
			return
		}
		z := tr.centre[i*hb.d : (i+1)*hb.d]
		for _, c := range []int{2*i + 1, 2*i + 2} {
			if tr.hi[c] > tr.lo[c] {
				walk(c, depth+1, ds.combine(bt, c, depth+1, cur, z))
			}
		}
	}
	walk(0, 0, ds.combine(bt, 0, 0, nil, nil))
	var wg sync.WaitGroup
	var next atomic.Int64
	for range min(workers, 1<<lv) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := ds
			if lv > 0 {
				st = newDownState(hb, tr.depth)
				defer func() { nFlops.Add(st.flops) }()
			}
			for {
				x := int(next.Add(1) - 1)
				if x >= 1<<lv {
					return
				}
				nEval.Add(st.visit(bt, sub, first+x, lv, starts[x]))
			}
		}()
	}
	wg.Wait()
	return held, nEval.Load(), nFlops.Load() + ds.flops
}

// downState is the scratch space of one downward walk: one expansion per
// depth, and the evaluation tables.
type downState[T attn.Float] struct {
	hb    *bwdHead[T]
	level [][]float64
	a, pw []float64
	y, pk []float64
	comb  []float64
	fac   []float64 // fac[t*terms(G)+a] = alpha_t + 1
	flops int64
}

func newDownState[T attn.Float](hb *bwdHead[T], depth int) *downState[T] {
	ntB := hb.mo.terms(hb.deg + 1)
	ds := &downState[T]{hb: hb, level: make([][]float64, depth+2),
		a: make([]float64, hb.d), pw: make([]float64, hb.deg+2),
		y: make([]float64, hb.d), pk: make([]float64, ntB), comb: make([]float64, ntB)}
	for x := range ds.level {
		ds.level[x] = make([]float64, ntB*(hb.e+1))
	}
	nt := hb.mo.terms(hb.deg)
	ds.fac = make([]float64, hb.d*nt)
	for t := range hb.d {
		for a := range nt {
			ds.fac[t*nt+a] = float64(hb.mo.exps[a*hb.d+t] + 1)
		}
	}
	return ds
}

// combine returns node i's complete expansion: the parent's (about pz)
// translated to node i's centre plus node i's own, in ds.level[depth];
// nil if both are absent.
func (ds *downState[T]) combine(bt *bwdTree[T], i, depth int, parent, pz []float64) []float64 {
	hb := ds.hb
	own := bt.loc[i]
	if parent == nil && own == nil {
		return nil
	}
	cur := ds.level[depth]
	if parent != nil {
		copy(cur, parent)
		z := bt.tr.centre[i*hb.d : (i+1)*hb.d]
		for t := range hb.d {
			ds.a[t] = z[t] - pz[t]
		}
		hb.localShift(cur, ds.a, ds.pw)
		ds.flops += hb.shiftFlops
	} else {
		clear(cur)
	}
	if own != nil {
		for x, v := range own {
			cur[x] += v
		}
		ds.flops += int64(len(own))
	}
	return cur
}

// visit walks the subtree of node i, at the given depth, whose complete
// expansion is cur (nil if none), evaluating at the leaves. Children
// write deeper levels only, so cur stays valid.
func (ds *downState[T]) visit(bt *bwdTree[T], sub []bool, i, depth int, cur []float64) int64 {
	tr := bt.tr
	if cur == nil && !sub[i] {
		return 0
	}
	if i >= tr.firstLeaf {
		if cur == nil {
			return 0
		}
		return ds.evalLeaf(bt, i, cur)
	}
	z := tr.centre[i*ds.hb.d : (i+1)*ds.hb.d]
	var n int64
	for _, c := range []int{2*i + 1, 2*i + 2} {
		if tr.hi[c] > tr.lo[c] && (cur != nil || sub[c]) {
			n += ds.visit(bt, sub, c, depth+1, ds.combine(bt, c, depth+1, cur, z))
		}
	}
	return n
}

// evalLeaf evaluates the expansion loc (about leaf i's centre) at the
// leaf's keys: dV_j += F_dO(k_j), dK_j += grad F_dO(k_j).v_j - grad F_Delta(k_j).
func (ds *downState[T]) evalLeaf(bt *bwdTree[T], i int, loc []float64) int64 {
	hb := ds.hb
	tr := bt.tr
	d, e := hb.d, hb.e
	gb := hb.deg + 1
	ntB := hb.mo.terms(gb)
	nt := hb.mo.terms(hb.deg)
	wd := d + e
	z := tr.centre[i*d : (i+1)*d]
	lo, hi := int(tr.lo[i]), int(tr.hi[i])
	for x := lo; x < hi; x++ {
		for t := range d {
			ds.y[t] = tr.keys[x*d+t] - z[t]
		}
		hb.mo.powers(ds.y, gb, ds.pk)
		j := int(tr.perm[x])
		acc := hb.acc[j*wd : (j+1)*wd]
		v := tr.vals[x*e : (x+1)*e]
		comb := ds.comb
		for a, l := range loc[e*ntB : (e+1)*ntB] {
			comb[a] = -l
		}
		for c := range e {
			col := loc[c*ntB : (c+1)*ntB]
			acc[d+c] += dotU(col, ds.pk)
			axpy(comb, col, float64(v[c]))
		}
		for t := range d {
			up := hb.up[t*ntB : t*ntB+nt]
			fac := ds.fac[t*nt : (t+1)*nt]
			var s float64
			for a, u := range up {
				s += fac[a] * comb[u] * ds.pk[a]
			}
			acc[t] += s
		}
	}
	ds.flops += int64(hi-lo) * hb.evalFlops
	return int64(hi - lo)
}

// localShift re-centres a local expansion (columns of stride
// terms(G+1)): the polynomial sum_alpha L_alpha y^alpha in y = k - z_p is
// rewritten in y' = k - z_c with y = y' + a, a = z_c - z_p, one
// coordinate at a time: L'_beta = sum_m C(beta_t + m, m) a_t^m L_(beta + m e_t).
// Ascending graded order keeps the higher terms unchanged until used.
func (hb *bwdHead[T]) localShift(loc, a, pw []float64) {
	mo := hb.mo
	d := hb.d
	gb := hb.deg + 1
	ntB := mo.terms(gb)
	for t := range d {
		if a[t] == 0 {
			continue
		}
		pw[0] = 1
		for k := 1; k <= gb; k++ {
			pw[k] = pw[k-1] * a[t]
		}
		up := hb.up[t*ntB : (t+1)*ntB]
		for c := range hb.e + 1 {
			col := loc[c*ntB : (c+1)*ntB]
			for be := range ntB {
				bt := int(mo.exps[be*d+t])
				s := col[be]
				j := be
				for m := 1; ; m++ {
					j = int(up[j])
					if j < 0 {
						break
					}
					s += mo.binom[bt+m][m] * pw[m] * col[j]
				}
				col[be] = s
			}
		}
	}
}

// bwdStats builds the report.
func bwdStats[T attn.Float](hbs []*bwdHead[T], b *budget, c *bwdCounters, locNodes, evalKeys int64) attn.Stats {
	var expandHeads, rMax int
	var maxDeg int
	for _, hb := range hbs {
		if hb.expand {
			expandHeads++
			maxDeg = max(maxDeg, hb.deg)
		}
		rMax = max(rMax, hb.hr.hd.r)
	}
	rows := max(c.rows, 1)
	eth := math.Exp(b.theta)
	// Every weight the gradient uses: the forward's LSE (relative error
	// eta on e^LSE), the Taylor truncation and the exponent's rounding.
	weightErr := (1+b.epsT)*eth*(1+4*u64)/(1-b.eta) - 1
	return attn.Stats{
		Flops: float64(c.flops),
		Details: map[string]any{
			"effective_dim":      rMax,
			"expansion_heads":    expandHeads,
			"max_degree":         maxDeg,
			"max_degree_used":    c.maxDegreeUsed,
			"window_width":       b.window(b.lMax),
			"nodes_visited":      c.visited,
			"visited_per_row":    float64(c.visited) / float64(rows),
			"nodes_pruned":       c.pruned,
			"nodes_expanded":     c.expanded,
			"keys_in_expansions": c.expandedKeys,
			"keys_brute_forced":  c.brute,
			"keys_in_tails":      c.tail,
			"keys_dropped":       c.dropped,
			"local_nodes":        locNodes,
			"keys_evaluated":     evalKeys,
			"weight_error":       weightErr,
			"eps_taylor":         b.epsT,
			"eps_drop":           b.epsDrop,
		},
	}
}
