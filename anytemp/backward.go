package anytemp

import (
	"cmp"
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/parallel"
	"github.com/fastattn/fastattn/internal/vscale"
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
// directly; rows of a sliding window, the forward's cover of their key
// range (window.go) with its two edges summed directly.
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

	// Value charges: a key whose value is R times row i's reference
	// magnitude ref_i = max(|O_i|_inf, eps max|V|) is dropped only R times
	// further below the row's maximum (its logit bound is raised by
	// log R), so that a far key with a huge value, negligible in the
	// output, is not dropped from the gradient it dominates.
	vlog []float64 // l, original order: log |v_j|_inf (-Inf for zero)
	lref []float64 // n: log ref_i

	shiftFlops, evalFlops int64 // one re-centring of a local expansion; one key's evaluation

	root *bwdTree[T] // non-causal: the tree over all keys

	bmu    sync.Mutex
	blocks map[[2]int]*bwdBlock[T] // causal: the trees of the aligned blocks

	amu sync.Mutex
	acc []float64 // l*(d+e): dK (scaled) and dV of each key, original order
}

// bwdTree is a tree with the local expansions its nodes receive.
type bwdTree[T attn.Float] struct {
	tr     *tree[T]
	charge []float64 // per node: the largest log |v_j|_inf of its keys
	kf     []float64 // n*d: centred keys in d dimensions, tree order
	loc    [][]float64
	locks  []sync.Mutex
}

type bwdBlock[T attn.Float] struct {
	once sync.Once
	bt   *bwdTree[T]
}

func backward[T attn.Float](ctx context.Context, m Method, p *attn.Problem[T], out *attn.Output[T], dO []T, g *attn.Gradients[T], f32 bool) (attn.Stats, error) {
	if err := p.Validate(); err != nil {
		return attn.Stats{}, err
	}
	if err := attn.CheckGradientSizes(p, out, dO, g); err != nil {
		return attn.Stats{}, err
	}
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}
	// The same reduction and budget as the forward that produced out.
	runs, b, err := plan(ctx, m, p, f32, vscale.SubnormalOutput(p))
	if err != nil {
		return attn.Stats{}, err
	}
	clear(g.DQ)
	clear(g.DK)
	clear(g.DV)
	clear(g.DSinks)
	workers := m.workers()
	hbs := make([]*bwdHead[T], p.Heads)
	parallel.For(ctx, workers, p.Heads, func(h int) {
		hbs[h] = newBwdHead(p, runs[h], out, dO)
		hb := hbs[h]
		if !ranged(p) && hb.hr.hd.l > 0 {
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
	ws := make([]*bwdWorker[T], workers)
	for x := range ws {
		ws[x] = &bwdWorker[T]{p: p, g: g, dO: dO, head: -1, rcs: map[*params]*rowCtx{}, dsinks: make([]float64, len(p.Sinks))}
	}
	parallel.ForEach(ctx, ws, 0, len(items), func(w *bwdWorker[T], k int) {
		it := items[k]
		if it.h != w.head {
			w.flush()
			w.startHead(hbs[it.h])
		}
		for i := it.a; i < it.b; i++ {
			row := i
			if !ranged(p) {
				row = int(w.hb.hr.order[i])
			}
			w.row(row)
		}
	})
	var total bwdCounters
	for _, w := range ws {
		w.flush()
		total.add(&w.c)
		for x, v := range w.dsinks {
			g.DSinks[x] += v
		}
	}
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}

	// Local expansions down to the keys, then dK and dV out.
	var locNodes, evalKeys, downFlops atomic.Int64
	parallel.For(ctx, workers, p.Heads, func(h int) {
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
	})
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}
	writeKV(ctx, workers, p, hbs, g)
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
		// The forward's centring in d dimensions; the reduced tree serves
		// only to prune, and its truncation error is added to every bound.
		keys, mu := p.K[p.KVHead(hd.h)*p.M*d:], hd.mu
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
	hb.vlog = make([]float64, l)
	var vmax float64
	for j := range l {
		var x float64
		for _, y := range hr.v[j*e : (j+1)*e] {
			x = max(x, math.Abs(float64(y)))
		}
		hb.vlog[j] = math.Log(x)
		vmax = max(vmax, x)
	}
	hb.lref = make([]float64, n)
	for i := range n {
		row := hd.h*n + i
		ref := p.Eps * vmax
		for _, y := range out.O[row*e : (row+1)*e] {
			ref = max(ref, math.Abs(float64(y)))
		}
		if ref == 0 {
			ref = 1 // every value is 0: no charge
		}
		hb.lref[i] = math.Log(ref)
	}
	return hb
}

// chargeNodes sets each node's largest log value magnitude.
func (bt *bwdTree[T]) chargeNodes(charge []float64) {
	tr := bt.tr
	bt.charge = make([]float64, len(tr.lo))
	for i := len(tr.lo) - 1; i >= 0; i-- {
		if i >= tr.firstLeaf {
			bt.charge[i] = math.Inf(-1)
			for x := tr.lo[i]; x < tr.hi[i]; x++ {
				bt.charge[i] = max(bt.charge[i], charge[tr.perm[x]])
			}
			continue
		}
		bt.charge[i] = max(bt.charge[2*i+1], bt.charge[2*i+2])
	}
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
	bt.chargeNodes(hb.vlog)
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

// writeKV writes dK and dV: each key/value head's are the sums, in
// float64, of the accumulations of the query heads that read it
// (grouped-query attention; one query head per key/value head otherwise).
func writeKV[T attn.Float](ctx context.Context, workers int, p *attn.Problem[T], hbs []*bwdHead[T], g *attn.Gradients[T]) {
	d, e := p.D, p.E
	w := d + e
	parallel.For(ctx, workers, p.KVHeadCount(), func(kv int) {
		var sum []float64
		for _, hb := range hbs {
			if p.KVHead(hb.h) != kv {
				continue
			}
			l := hb.hr.hd.l
			if sum == nil {
				sum = make([]float64, p.M*w)
			}
			for x, a := range hb.acc[:l*w] {
				sum[x] += a
			}
		}
		for j := range len(sum) / w {
			a := sum[j*w : (j+1)*w]
			dk := g.DK[(kv*p.M+j)*d : (kv*p.M+j+1)*d]
			for t := range d {
				dk[t] = T(a[t])
			}
			dv := g.DV[(kv*p.M+j)*e : (kv*p.M+j+1)*e]
			for c := range e {
				dv[c] = T(a[d+c])
			}
		}
	})
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
