package anytemp

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/check"
	"github.com/fastattn/fastattn/internal/lsebound"
	"github.com/fastattn/fastattn/internal/parallel"
	"github.com/fastattn/fastattn/internal/sinkshift"
	"github.com/fastattn/fastattn/internal/vscale"
)

// Method is any-temperature attention (Gupta et al., 2025) for small or
// low-rank head dimension. Its zero value is ready to use.
type Method struct {
	// Workers caps the goroutines used; 0 means GOMAXPROCS.
	Workers int
	// Samples is the number of rows per call recomputed with the accurate
	// reference of internal/check and checked against the bound (a
	// violation is an error); 0 means DefaultSamples, a negative value none.
	Samples int
	// NoReduce disables the low-rank reduction (all d dimensions are kept).
	NoReduce bool
}

// Method implements the contract's method, planner and gradient interfaces;
// dropping one would silently take it out of auto or Gradient.
var (
	_ attn.Method         = Method{}
	_ attn.Planner        = Method{}
	_ attn.Differentiable = Method{}
)

// DefaultSamples is the number of rows per call checked against the
// reference when Method.Samples is 0.
const DefaultSamples = check.DefaultRows

// Name returns "anytemp".
func (Method) Name() string { return "anytemp" }

// Supports lists the options beyond plain attention the forward handles:
// grouped-query attention (each query head reads its key/value head, no
// copies), top-left causal alignment (rows attend prefixes either way) and
// sinks (an exact term of the denominator) and sliding windows (each row's
// key range covered by aligned blocks with their own trees). Mask tensors
// are declined.
func (Method) Supports() attn.Feature {
	return attn.GQA | attn.TopLeftAlign | attn.AttentionSinks | attn.SlidingWindow
}

// BackwardSupports lists the options the backward pass handles: those of
// the forward (grouped-query attention, with dK and dV summed over the
// query heads of a group; top-left alignment; sinks, with their gradient;
// sliding windows).
func (m Method) BackwardSupports() attn.Feature { return m.Supports() }

// Forward32 computes float32 attention (internally in float64).
func (m Method) Forward32(ctx context.Context, p *attn.Problem[float32], out *attn.Output[float32]) (attn.Stats, error) {
	return forward(ctx, m, p, out, true)
}

// Forward64 computes float64 attention.
func (m Method) Forward64(ctx context.Context, p *attn.Problem[float64], out *attn.Output[float64]) (attn.Stats, error) {
	return forward(ctx, m, p, out, false)
}

func (m Method) workers() int {
	if m.Workers > 0 {
		return m.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// minTreeBlock is the smallest key block that gets a tree in the causal
// decomposition; shorter ranges (the tail of a prefix) are summed key by key.
const minTreeBlock = 64

// headRun is one head ready to compute: reduced data, parameters, and for
// non-causal problems the tree over all its keys and the row order.
type headRun[T attn.Float] struct {
	hd    *head
	pr    *params
	v     []T // the head's values, original order (m x e)
	tree  *tree[T]
	order []int32

	// Causal: trees of the large aligned blocks, shared by the chunks of
	// rows (each is built once, by the first chunk that needs it).
	mu     sync.Mutex
	shared map[[2]int]*sharedBlock[T]
}

// sharedBlockMin is the smallest block shared between chunks of rows.
const sharedBlockMin = 4096

type sharedBlock[T attn.Float] struct {
	once sync.Once
	tr   *tree[T]
}

// block returns the tree of keys start..start+size-1, shared if large.
func (hr *headRun[T]) block(e, start, size int) *tree[T] {
	if size < sharedBlockMin {
		return buildTree(hr.hd, hr.v, e, start, size, hr.pr.g, hr.pr.mo, false)
	}
	hr.mu.Lock()
	if hr.shared == nil {
		hr.shared = map[[2]int]*sharedBlock[T]{}
	}
	sb := hr.shared[[2]int{start, size}]
	if sb == nil {
		sb = &sharedBlock[T]{}
		hr.shared[[2]int{start, size}] = sb
	}
	hr.mu.Unlock()
	sb.once.Do(func() { sb.tr = buildTree(hr.hd, hr.v, e, start, size, hr.pr.g, hr.pr.mo, false) })
	return sb.tr
}

// sinkShift is what the heads' sinks cost on keys centred on their means
// (package sinkshift): finish weighs a sink against the row's log-sum-exp
// in the centred frame, at most lambdaMax + theta + log L in magnitude,
// plus s q.mu.
func sinkShift[T attn.Float](p *attn.Problem[T], hs []*head) float64 {
	var b float64
	for h, hd := range hs {
		logSum := hd.lambdaMax + hd.theta + math.Log(float64(max(hd.l, 1)))
		b = max(b, sinkshift.Bound(p, h, hd.mu, func(int) float64 { return logSum }))
	}
	return b
}

// plan prepares the heads and the budget: the part of Forward before any
// row is computed. Estimate uses it too on a sample.
// outExtra is the bound's share for subnormal outputs (of the values before
// any scaling: vscale.SubnormalOutput).
func plan[T attn.Float](ctx context.Context, m Method, p *attn.Problem[T], f32 bool, outExtra float64) ([]*headRun[T], *budget, error) {
	if err := checkEps(p.Eps, f32); err != nil {
		return nil, nil, err
	}
	allowance := rankAllowance(p.Eps, f32, outExtra)
	hs := make([]*head, p.Heads)
	perHead := max(1, m.workers()/p.Heads)
	parallel.For(ctx, m.workers(), p.Heads, func(h int) {
		hs[h] = prepare(p, h, allowance, !m.NoReduce, perHead)
	})
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	var theta, kBase float64
	lMax := 1
	for _, hd := range hs {
		theta = max(theta, hd.theta)
		lMax = max(lMax, hd.l)
		g, mo := degreeFor(hd.r, p.E, true)
		kBase = max(kBase, kNodeBase(hd.r, g, mo, hd.l))
	}
	b, err := newBudget(p.Eps, f32, outExtra+sinkShift(p, hs), theta, lMax, kBase)
	if err != nil {
		return nil, nil, err
	}
	runs := make([]*headRun[T], p.Heads)
	type key struct {
		r    int
		wide bool
	}
	mos := map[key]*params{}
	for h, hd := range hs {
		k := key{hd.r, hd.wideWindows(p.Scale, b.window(hd.l))}
		pr, ok := mos[k]
		if !ok {
			g, mo := degreeFor(hd.r, p.E, k.wide)
			pr = newParams(hd.r, p.E, g, mo, b)
			mos[k] = pr
		}
		kh := p.KVHead(h)
		runs[h] = &headRun[T]{hd: hd, pr: pr, v: p.V[kh*p.M*p.E : (kh+1)*p.M*p.E]}
	}
	return runs, b, nil
}

// Values whose column maxima lie outside [valueLo, valueHi] are scaled by
// powers of two first (package vscale): float64 sums of up to 2^34 terms
// times expansion factors stay finite, and subnormal values keep their
// digits.
const valueLo, valueHi = 0x1p-900, 0x1p900

func forward[T attn.Float](ctx context.Context, m Method, p *attn.Problem[T], out *attn.Output[T], f32 bool) (attn.Stats, error) {
	if err := p.Validate(); err != nil {
		return attn.Stats{}, err
	}
	return vscale.Run("anytemp", p, out, valueLo, valueHi, func(q *attn.Problem[T], subnormal float64) (attn.Stats, error) {
		return compute(ctx, m, q, out, f32, subnormal)
	})
}

// compute is forward on values in range.
func compute[T attn.Float](ctx context.Context, m Method, p *attn.Problem[T], out *attn.Output[T], f32 bool, outExtra float64) (attn.Stats, error) {
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}
	runs, b, err := plan(ctx, m, p, f32, outExtra)
	if err != nil {
		return attn.Stats{}, err
	}
	workers := m.workers()
	var depth int
	if !ranged(p) {
		// One tree per head; heads in parallel, a lone head's tree built
		// with parallel recursion.
		parallel.For(ctx, workers, p.Heads, func(h int) {
			hr := runs[h]
			var wg sync.WaitGroup
			if p.Heads < workers {
				// A spare worker orders the rows while the tree is built.
				wg.Go(func() { hr.order = rowOrder(hr.hd.q, p.N, hr.hd.r) })
			} else {
				hr.order = rowOrder(hr.hd.q, p.N, hr.hd.r)
			}
			if hr.hd.l > 0 {
				hr.tree = buildTree(hr.hd, hr.v, p.E, 0, hr.hd.l, hr.pr.g, hr.pr.mo, p.Heads < workers)
			}
			wg.Wait()
		})
		for _, hr := range runs {
			if hr.tree != nil {
				depth = max(depth, hr.tree.depth)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}

	// Work items: chunks of rows of one head.
	type item struct{ h, a, b int }
	var items []item
	chunk := batchRows
	if ranged(p) {
		// Each causal or windowed chunk rebuilds the blocks of its first range, so
		// fewer, longer chunks: about 4 per worker over all heads.
		per := max(1, (4*workers+p.Heads-1)/p.Heads)
		chunk = max(minTreeBlock, (p.N+per-1)/per)
	}
	for h := range p.Heads {
		for a := 0; a < p.N; a += chunk {
			items = append(items, item{h, a, min(a+chunk, p.N)})
		}
	}
	// One state per worker: its row contexts (one per parameter set) and
	// the deepest causal tree it built.
	type fwdWorker struct {
		rcs   map[*params]*rowCtx
		depth int
	}
	ws := make([]*fwdWorker, workers)
	for x := range ws {
		ws[x] = &fwdWorker{rcs: map[*params]*rowCtx{}}
	}
	parallel.ForEach(ctx, ws, 0, len(items), func(w *fwdWorker, k int) {
		it := items[k]
		hr := runs[it.h]
		rc := w.rcs[hr.pr]
		if rc == nil {
			rc = newRowCtx(hr.pr)
			w.rcs[hr.pr] = rc
		}
		rc.haveCand = false
		rc.resetBatch()
		if leftBounded(p) {
			w.depth = max(w.depth, windowRows(ctx, rc, p, hr, out, it.a, it.b))
		} else if ranged(p) {
			w.depth = max(w.depth, causalRows(ctx, rc, p, hr, out, it.a, it.b))
		} else {
			plainRows(rc, p, hr, out, it.a, it.b)
		}
	})
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}
	var total counters
	for _, w := range ws {
		for _, rc := range w.rcs {
			total.add(&rc.c)
		}
		if ranged(p) {
			depth = max(depth, w.depth)
		}
	}
	st := stats(p, runs, b, &total, depth)
	// Every row's sum of weights is within eta of exact, as its numerators.
	st.LSEBound = lsebound.Bound(p, out.LSE, lsebound.SumError(b.eta), func(h int) []float64 { return runs[h].hd.mu })
	var mn, mf int64
	for _, hr := range runs {
		if hr.tree != nil {
			mn += hr.tree.momNodes.Load()
			mf += hr.tree.momFlops.Load()
		}
		for _, sb := range hr.shared {
			if sb.tr != nil {
				mn += sb.tr.momNodes.Load()
				mf += sb.tr.momFlops.Load()
			}
		}
	}
	st.Details["moment_nodes"] = mn
	st.Details["moment_flops"] = mf
	st.Flops += float64(mf)
	chk, err := check.Forward(p, out, b.bound, m.Samples)
	st.SampledRows, st.ObservedError = chk.Rows, chk.Observed
	if err != nil {
		return st, fmt.Errorf("anytemp: %w", err)
	}
	return st, nil
}

// plainRows computes rows order[a:b] of a head without causal mask.
// The rows come in rowOrder's order, scattered in memory: their queries
// and shifts are gathered first and their outputs staged and scattered
// after each flush, in tight loops whose cache misses overlap, instead of
// one at a time inside the walk.
func plainRows[T attn.Float](rc *rowCtx, p *attn.Problem[T], hr *headRun[T], out *attn.Output[T], a, b int) {
	hd := hr.hd
	r, e, h := hd.r, p.E, hd.h
	var trees []*tree[T]
	if hr.tree != nil {
		trees = []*tree[T]{hr.tree}
	}
	sink := p.Sink(h)
	for c := a; c < b; c += batchRows {
		rows := hr.order[c:min(c+batchRows, b)]
		st := rc.stageFor(len(rows), r, e)
		for x, i32 := range rows {
			i := int(i32)
			if r == 2 { // a call of copy per row cost more than the move
				st.q[2*x], st.q[2*x+1] = hd.q[2*i], hd.q[2*i+1]
			} else {
				copy(st.q[x*r:(x+1)*r], hd.q[i*r:(i+1)*r])
			}
			st.shift[x] = hd.lseShift[i]
		}
		o := stageOut[T](st, len(rows)*e)
		if hd.l == 0 {
			clear(o)
			for x := range rows {
				st.lse[x] = sink // -Inf without a sink
			}
		} else {
			for x := range rows {
				rc.start(st.q[x*r:(x+1)*r], p.Scale, hd.l)
				if r != 1 || !runCells1D(rc, trees, nil, []T(nil)) {
					runTree(rc, hr.tree)
				}
				rc.park(x)
			}
			rc.flush(func(x int) {
				finish(rc, o[x*e:(x+1)*e], &st.lse[x], st.shift[x], sink)
			})
		}
		for x, i32 := range rows {
			row := h*p.N + int(i32)
			copy(out.O[row*e:(row+1)*e], o[x*e:(x+1)*e])
			out.LSE[row] = st.lse[x]
		}
	}
}

// rowStage is plainRows' buffers for one batch of rows in walk order.
type rowStage struct {
	q, shift, lse []float64
	out           any // []T
}

// stageFor returns the stage sized for n rows.
func (rc *rowCtx) stageFor(n, r, e int) *rowStage {
	st := &rc.stage
	if cap(st.shift) < n {
		st.q = make([]float64, n*r)
		st.shift = make([]float64, n)
		st.lse = make([]float64, n)
	}
	st.q, st.shift, st.lse = st.q[:n*r], st.shift[:n], st.lse[:n]
	return st
}

// stageOut returns the stage's output buffer of n elements.
func stageOut[T attn.Float](st *rowStage, n int) []T {
	o, _ := st.out.([]T)
	if cap(o) < n {
		o = make([]T, n)
		st.out = o
	}
	return o[:n]
}

// blockSet is the causal decomposition of a prefix [0, lim) of one head's
// keys: aligned power-of-two blocks of at least minTreeBlock keys, each
// with its own tree, plus a tail of fewer than minTreeBlock keys summed
// directly. Advancing lim reuses the blocks that stay (a binary counter:
// each block is built once per carry), so a chunk of consecutive rows
// costs O(L log^2 L) to build at worst.
type blockSet[T attn.Float] struct {
	hr     *headRun[T]
	e      int
	blocks []block[T]
	lim    int
	depth  int
}

type block[T attn.Float] struct {
	start, size int
	tr          *tree[T]
}

func (bs *blockSet[T]) advance(lim int) {
	if lim == bs.lim {
		return
	}
	bs.lim = lim
	al := lim / minTreeBlock * minTreeBlock
	var want []block[T]
	pos := 0
	for bit := 62; bit >= 0; bit-- {
		size := 1 << bit
		if size < minTreeBlock || al&size == 0 {
			continue
		}
		want = append(want, block[T]{start: pos, size: size})
		pos += size
	}
	for i := range want {
		for _, old := range bs.blocks {
			if old.start == want[i].start && old.size == want[i].size {
				want[i].tr = old.tr
			}
		}
		if want[i].tr == nil {
			hr := bs.hr
			want[i].tr = hr.block(bs.e, want[i].start, want[i].size)
			bs.depth = max(bs.depth, want[i].tr.depth)
		}
	}
	bs.blocks = want
}

// causalRows computes rows a..b-1 of a head with the causal mask; it
// returns the deepest tree built.
func causalRows[T attn.Float](ctx context.Context, rc *rowCtx, p *attn.Problem[T], hr *headRun[T], out *attn.Output[T], a, b int) int {
	hd := hr.hd
	r, e := hd.r, p.E
	bs := &blockSet[T]{hr: hr, e: e}
	rangeRows(ctx, rc, p, hr, out, a, b, func(i int) (int, []block[T], []float64, []T) {
		lim := p.KeyLimit(hd.h, i)
		if lim == 0 {
			return 0, nil, nil, nil
		}
		bs.advance(lim)
		tail := bs.lim / minTreeBlock * minTreeBlock
		return lim, bs.blocks, hd.k[tail*r : lim*r], hr.v[tail*e : lim*e]
	})
	return bs.depth
}

// stats builds the report.
func stats[T attn.Float](p *attn.Problem[T], runs []*headRun[T], b *budget, c *counters, depth int) attn.Stats {
	var rMax, rankLo int
	var rankErr, lambda float64
	sides := map[string]bool{}
	rankLo = math.MaxInt
	for _, hr := range runs {
		rMax = max(rMax, hr.hd.r)
		rankLo = min(rankLo, hr.hd.r)
		rankErr = max(rankErr, hr.hd.rankErr)
		lambda = max(lambda, hr.hd.lambdaMax)
		sides[hr.hd.side] = true
	}
	side := ""
	for _, s := range []string{"none", "keys", "queries"} {
		if sides[s] {
			if side != "" {
				side += "+"
			}
			side += s
		}
	}
	rows := max(c.rows, 1)
	pr := runs[0].pr
	return attn.Stats{
		Flops:      float64(c.flops),
		ErrorBound: b.bound,
		Details: map[string]any{
			"effective_dim":       rMax,
			"effective_dim_min":   rankLo,
			"reduction":           side,
			"rank_error":          rankErr,
			"window_width":        b.window(b.lMax),
			"tree_depth":          depth,
			"nodes_visited":       c.visited,
			"nodes_expanded":      c.expanded,
			"nodes_pruned":        c.pruned,
			"keys_brute_forced":   c.brute,
			"keys_in_expansions":  c.expandedKeys,
			"expansion_terms":     c.expTerms,
			"keys_dropped":        c.dropped,
			"cells":               c.cells,
			"rows_by_cells":       c.cellRows,
			"visited_per_row":     float64(c.visited) / float64(rows),
			"max_visited_per_row": c.maxVisitedPerRow,
			"max_degree":          pr.g,
			"max_degree_used":     c.maxDegreeUsed,
			"rho_cap":             b.rhoCap,
			"eps_taylor":          b.epsT,
			"eps_drop":            b.epsDrop,
			"exponent_error":      b.theta,
			"logit_magnitude":     lambda,
			"eta":                 b.eta,
			"a_priori_bound":      b.bound,
		},
	}
}
