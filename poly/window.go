package poly

import (
	"context"
	"math"
	"slices"
	"sort"
	"sync/atomic"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/kernels"
	"github.com/fastattn/fastattn/polyexp"
)

// Sliding windows (FlashAttention-2's window_size). Row i attends keys
// [lo_i, hi_i) (attn.Problem.KeyRange), both ends non-decreasing in i. The
// key blocks lying wholly inside that range, [bLo, bHi), contribute through
// their moments; the keys at the two edges, [lo_i, bLo kb) and
// [bHi kb, hi_i), fewer than a block each, are added exactly. A row
// whose range holds no whole block is computed exactly. The blocks are of
// kb = 128 or 256 keys (windowBlock), narrower for narrower windows: the
// edges cost about kb exact keys per row, the sweep one moment matrix per
// block of the window.
//
// The moments of [bLo, bHi) are sums of block moments, never differences
// of prefix sums: a prefix difference cancels, and its rounding error is
// relative to the whole prefix rather than to the row's own keys. The
// ranges slide forward monotonically, so the sum is kept as a queue of two
// stacks (the back stack with its running sum, the front stack as suffix
// sums, refilled from the back when it runs out): each block is added a
// bounded number of times, and a row's moments are a sum of exactly its
// blocks' terms, in some order, so the rounding analysis of bound holds
// with the additions counted by sumTerms. Blocks no later row leaves (from
// the last row's bLo on) go into one plain sum. The sweep runs backwards
// (from the last block) when that keeps fewer block matrices, as for
// windows unbounded on the right.

// windowed reports whether p restricts rows by a sliding window.
func windowed[T attn.Float](p *attn.Problem[T]) bool {
	w := p.Window
	return w != nil && (w.Left >= 0 || w.Right >= 0)
}

// rowKeys is the number of keys row i of head h attends.
func rowKeys[T attn.Float](p *attn.Problem[T], h, i int) int {
	lo, hi := p.KeyRange(h, i)
	return hi - lo
}

// widestRow is the most keys a row of p attends.
func widestRow[T attn.Float](p *attn.Problem[T]) int {
	widest := 0
	for h := range p.Heads {
		for i := range p.N {
			widest = max(widest, rowKeys(p, h, i))
		}
	}
	return widest
}

// fullBlocks returns the blocks of kb keys [bLo, bHi) lying wholly inside
// keys [lo, hi) of a head of L keys (block b holds keys [b kb,
// min((b+1) kb, L))); bLo >= bHi when there is none.
func fullBlocks(lo, hi, L, kb int) (bLo, bHi int) {
	bLo = (lo + kb - 1) / kb
	bHi = hi / kb
	if hi == L {
		bHi = (L + kb - 1) / kb
	}
	return bLo, bHi
}

// blockKeys is the number of keys in blocks [bLo, bHi) of kb keys of a
// head of L keys.
func blockKeys(bLo, bHi, L, kb int) int {
	if bLo >= bHi {
		return 0
	}
	return min(bHi*kb, L) - bLo*kb
}

// windowBlock is the block size of a window whose widest row range is
// width keys: 128 keys up to 16384, keyBlock beyond. Narrower blocks add
// fewer edge keys exactly but make smaller groups of rows, whose fixed
// costs (moment sums, scaled moments, small products) then dominate: at
// n = 2^15, d = 8, causal window 1024, blocks of 64 took 77 ms of CPU, of
// 128 66 ms and of 256 67 ms (4096: 75, 63, 64 ms).
func windowBlock(width int) int {
	if width <= 16384 {
		return 128
	}
	return keyBlock
}

// windowPlan is what the planner knows of a windowed head's sweep.
type windowPlan struct {
	block    int     // keys per block (windowBlock)
	usedKeys int     // keys of the blocks whose moments are built
	edgeKeys float64 // keys the polynomial rows add exactly at their edges
	stored   int     // most block moment matrices the sweep keeps at once
	groups   int     // groups of rows sharing their blocks
	reverse  bool    // sweep from the last block down (keeps fewer)
	// backward: planned for the backward pass, whose second queue (over
	// groups of rows) keeps at most keyStored matrices.
	backward  bool
	keyStored int
}

// keyQueuePeak is the most matrices the backward's queue over groups
// keeps, for groups of position ranges spans (in the sweep's order): at
// position t the groups [a, b) read it, and those from keep on (reading
// the last position) are never removed.
func keyQueuePeak(spans [][2]int) int {
	if len(spans) == 0 {
		return 0
	}
	tEnd := spans[len(spans)-1][1]
	keep := sort.Search(len(spans), func(x int) bool { return spans[x][1] > tEnd-1 })
	peak, a, b := 0, 0, 0
	for t := spans[0][0]; t < tEnd; t++ {
		for a < len(spans) && spans[a][1] <= t {
			a++
		}
		for b < len(spans) && spans[b][0] <= t {
			b++
		}
		peak = max(peak, min(b, keep)-a)
	}
	return peak
}

// planWindow makes the rows of a windowed head whose range holds no whole
// key block exact and, with capRows, picks the degree cap that minimises
// the head's flops, as capDegree does without a window: key moments cost
// about 2 K r_cap (e+1) over the K keys of the blocks used, a polynomial
// row of degree g 2 r_g (e+1) plus its edge keys exactly, 2 (d+e) each, and
// an exact row 2 (d+e) per key of its range. A row is also exact where its
// whole blocks hold fewer keys than its polynomial costs.
func planWindow[T attn.Float](p *attn.Problem[T], h int, hp *headPlan, capRows, backward bool) {
	L, d, e := hp.keys, p.D, p.E
	lo, hi := make([]int, p.N), make([]int, p.N)
	width := 0
	for i := range p.N {
		lo[i], hi[i] = p.KeyRange(h, i)
		width = max(width, hi[i]-lo[i])
	}
	kb := windowBlock(width)
	for i := range p.N {
		if bLo, bHi := fullBlocks(lo[i], hi[i], L, kb); bLo >= bHi {
			hp.degree[i] = exactRow
		}
	}
	polyRow := func(i, capG int) bool {
		g := hp.degree[i]
		if g == exactRow || g > capG {
			return false
		}
		bLo, bHi := fullBlocks(lo[i], hi[i], L, kb)
		return float64(blockKeys(bLo, bHi, L, kb)*(d+e)) > RankFloat(d, g)*float64(e+1)
	}
	if capRows {
		gmax := exactRow
		for _, g := range hp.degree {
			gmax = max(gmax, g)
		}
		best, bestCost := gmax, math.Inf(1)
		for capG := gmax; capG >= exactRow; capG-- {
			var cost float64
			used, covered := 0, 0
			for i := range p.N {
				w := hi[i] - lo[i]
				if !polyRow(i, capG) {
					cost += 2 * float64(w*(d+e))
					continue
				}
				bLo, bHi := fullBlocks(lo[i], hi[i], L, kb)
				cost += 2*RankFloat(d, hp.degree[i])*float64(e+1) + 2*float64((w-blockKeys(bLo, bHi, L, kb))*(d+e))
				used += blockKeys(max(bLo, covered), bHi, L, kb)
				covered = max(covered, bHi)
			}
			if capG >= 0 {
				cost += float64(used) * RankFloat(d, capG) * float64(2*(e+1)+1)
			}
			if cost < bestCost {
				best, bestCost = capG, cost
			}
		}
		for i := range hp.degree {
			if !polyRow(i, best) {
				hp.degree[i] = exactRow
			}
		}
	}
	win := &windowPlan{block: kb, backward: backward}
	var spans [][2]int
	covered := 0
	for i, g := range hp.degree {
		if g == exactRow {
			continue
		}
		bLo, bHi := fullBlocks(lo[i], hi[i], L, kb)
		win.edgeKeys += float64(hi[i] - lo[i] - blockKeys(bLo, bHi, L, kb))
		win.usedKeys += blockKeys(max(bLo, covered), bHi, L, kb)
		covered = max(covered, bHi)
		if n := len(spans); n == 0 || spans[n-1] != [2]int{bLo, bHi} {
			spans = append(spans, [2]int{bLo, bHi})
		}
	}
	win.groups = len(spans)
	if len(spans) > 0 {
		// The matrices kept are the blocks of the queue that a later range
		// leaves: forwards, those below the last range's start; backwards,
		// those at or above the first range's end.
		var fwd, rev int
		keepF, keepR := spans[len(spans)-1][0], spans[0][1]
		for _, s := range spans {
			fwd = max(fwd, min(s[1], keepF)-s[0])
			rev = max(rev, s[1]-max(s[0], keepR))
		}
		win.reverse = rev < fwd
		win.stored = min(fwd, rev)
		if backward {
			nb := (L + kb - 1) / kb
			if win.reverse {
				slices.Reverse(spans)
				for x, s := range spans {
					spans[x] = [2]int{nb - s[1], nb - s[0]}
				}
			}
			win.keyStored = keyQueuePeak(spans)
		}
	}
	hp.win = win
}

// sumTerms is the number of additions charged along a term's path in the
// rounding bounds (bound, exactBound): the head's L keys without a window.
// A window's sums take other paths: a block's moments (< kb <= keyBlock
// terms), the sweep's stacks (at most one addition per block, plus two),
// the polynomial's products, then the two edges (< kb terms each) added
// onto the result; rows computed exactly sum at most L keys plus one
// partial sum per block of keyBlock. Charging L + 3 keyBlock + blocks of kb
// + 8 covers both.
func (hp *headPlan) sumTerms() int {
	if hp.win == nil {
		return hp.keys
	}
	return hp.keys + 3*keyBlock + (hp.keys+hp.win.block-1)/hp.win.block + 8
}

// momentKeys is the number of keys whose moments the head builds.
func (hp *headPlan) momentKeys() int {
	if hp.win != nil {
		return hp.win.usedKeys
	}
	return hp.keys
}

// edgePairs is the number of (row, key) pairs the polynomial rows of a
// windowed head add exactly at their edges.
func (hp *headPlan) edgePairs() float64 {
	if hp.win == nil {
		return 0
	}
	return hp.win.edgeKeys
}

// groupRows is the cost of a windowed head's groups of rows in units of
// polynomial rows of rank r: each group's moments summed (three matrix
// additions) and scaled for each degree (about two), r x (e+1) each, like
// a row's product with the moments.
func (hp *headPlan) groupRows() float64 {
	if hp.win == nil {
		return 0
	}
	return 5 * float64(hp.win.groups)
}

// edgeFlops is the flops of edgePairs.
func (hp *headPlan) edgeFlops(d, e int) float64 { return 2 * hp.edgePairs() * float64(d+e) }

// windowWave is the number of row groups whose moments a windowed head
// sums before computing their rows in parallel.
func windowWave(workers int) int { return max(4*workers, 8) }

// windowBatch is the number of key blocks whose moments are built at once.
func windowBatch(workers int) int { return 2 * max(workers, 1) }

// windowMatrices is the most r x (e+1) matrices a windowed head holds at
// once beyond those of the plain forward: the sweep's kept blocks, a batch
// of new blocks, its three sums and a wave's scaled moments (two degrees
// per group, as a margin), and the backward's.
func windowMatrices(plans []*headPlan, workers int) int {
	most := 0
	for _, hp := range plans {
		if w := hp.win; w != nil {
			n := w.stored + windowBatch(workers) + 3 + 2*windowWave(workers)
			if w.backward {
				// The groups' moments and sums, the key queue and a
				// batch of its sums with their transposes.
				n += w.keyStored + 2*windowWave(workers) + 2*windowBatch(workers) + 3
			}
			most = max(most, n)
		}
	}
	return most
}

// directChunkEnd returns the end of the chunk of rows[c0:] that directRows
// computes together: queryBlock rows, and, with a window, no more than
// spans twice its widest row's range (a chunk reads every key block
// between its first row's start and its last row's end).
func (run *runner[T]) directChunkEnd(h int, rows []int, c0 int) int {
	p := run.p
	end := min(c0+queryBlock, len(rows))
	if !windowed(p) {
		return end
	}
	lo0, _ := p.KeyRange(h, rows[c0])
	widest := keyBlock
	for c := c0; c < end; c++ {
		lo, hi := p.KeyRange(h, rows[c])
		widest = max(widest, hi-lo)
		if c > c0 && hi-lo0 > 2*widest {
			return c
		}
	}
	return end
}

// rowStarts returns the first key of each row's range, or nil without a
// window (every range starts at 0).
func (run *runner[T]) rowStarts(h int, rows []int) []int {
	if !windowed(run.p) {
		return nil
	}
	starts := make([]int, len(rows))
	for k, i := range rows {
		starts[k], _ = run.p.KeyRange(h, i)
	}
	return starts
}

// addExactRange adds sum_j exp(w_k . u_j) [v_j, 1] over keys
// max(from, starts_k)..limit_k-1 of each row k to y (rows x (e+1)), tile by
// tile as exact attention does (starts nil: from on): the range of every
// exponent is within [-beta_i, beta_i], so no shift is needed.
func (hk *headKeys[T]) addExactRange(s *scratch, w []float64, starts, limits []int, from int, y []float64) {
	cnt, e1 := len(limits), hk.e+1
	hk.exactBlocks(w, starts, limits, from, s.scores, func(j0, j1 int, p []float64) {
		kernels.GemmNN64(cnt, e1, j1-j0, p, j1-j0, hk.valueBlock(s, j0, j1), e1, y, e1)
	})
}

// exactBlocks calls f for each block of keys j0..j1-1 (keyBlock at a time,
// from `from` to the largest limit) with p (rows x (j1-j0), in buf) holding
// exp(w_k . u_j) for the keys each row k takes, max(from, starts_k) <= j <
// limit_k, and zeros elsewhere: the exact terms the forward adds and the
// backward differentiates.
func (hk *headKeys[T]) exactBlocks(w []float64, starts, limits []int, from int, buf []float64, f func(j0, j1 int, p []float64)) {
	cnt := len(limits)
	d := len(w) / cnt
	end := 0
	for _, l := range limits {
		end = max(end, l)
	}
	for j0 := from; j0 < end; j0 += keyBlock {
		j1 := min(j0+keyBlock, end)
		bs := j1 - j0
		p := hk.exactWeights(buf[:cnt*bs], w, d, limits, j0, j1)
		clearBefore(p, bs, starts, j0)
		f(j0, j1, p)
	}
}

// leftEdges adds the keys [lo_i, cStart) of each row of group (scaled
// queries w) to y exactly, and returns their flops.
func (run *runner[T]) leftEdges(s *scratch, h int, hk *headKeys[T], w []float64, group []int, cStart int, y []float64) uint64 {
	cnt := len(group)
	starts := make([]int, 2*cnt)
	ends := starts[cnt:]
	from, keys := cStart, 0
	for k, i := range group {
		starts[k], _ = run.p.KeyRange(h, i)
		ends[k] = cStart
		from = min(from, starts[k])
		keys += cStart - starts[k]
	}
	if from < cStart {
		hk.addExactRange(s, w, starts[:cnt], ends, from, y)
	}
	return uint64(keys * (2*run.p.D + 2*hk.e + 3))
}

// rowGroup is consecutive polynomial rows of a windowed head that share
// their whole key blocks [bLo, bHi), and the moments of those blocks
// scaled per degree (scaledMoments).
type rowGroup struct {
	rows     []int
	bLo, bHi int
	scaled   map[int][]float64
	mom      []float64 // backward: the moments
	dSum     []float64 // backward: sum of H_i^T dy_i over the rows
}

// windowSweep walks the row groups of a windowed head in the sweep's
// order and sums each group's block moments through a momentQueue, the
// blocks built in parallel batches ahead of the sweep. Positions are key
// blocks in the sweep's order (mirrored when it runs backwards), so that
// the groups' position ranges are non-decreasing at both ends.
type windowSweep[T attn.Float] struct {
	run    *runner[T]
	hk     *headKeys[T]
	groups []rowGroup // in the sweep's order
	rev    bool
	kb, nb int // keys per block, blocks
	q      *momentQueue
	need   []int // the positions pushed, in order
	next   int   // need[next] is the next position to build
	ready  map[int][]float64
}

// newSweep groups the polynomial rows (ascending, none exactRow, each with
// a whole block in its range) of a windowed head by their blocks.
func (run *runner[T]) newSweep(h int, hp *headPlan, hk *headKeys[T], rows []int) *windowSweep[T] {
	p := run.p
	kb := hp.win.block
	sw := &windowSweep[T]{run: run, hk: hk, rev: hp.win.reverse, kb: kb, nb: (hk.L + kb - 1) / kb, ready: map[int][]float64{}}
	for _, i := range rows {
		lo, hi := p.KeyRange(h, i)
		bLo, bHi := fullBlocks(lo, hi, hk.L, kb)
		if n := len(sw.groups); n > 0 && sw.groups[n-1].bLo == bLo && sw.groups[n-1].bHi == bHi {
			sw.groups[n-1].rows = append(sw.groups[n-1].rows, i)
		} else {
			sw.groups = append(sw.groups, rowGroup{rows: []int{i}, bLo: bLo, bHi: bHi})
		}
	}
	if sw.rev {
		slices.Reverse(sw.groups)
	}
	keep := 0
	if n := len(sw.groups); n > 0 {
		keep, _ = sw.span(&sw.groups[n-1])
	}
	sw.q = newMomentQueue(hk.r*(p.E+1), keep)
	top := 0
	for x := range sw.groups {
		a, b := sw.span(&sw.groups[x])
		for t := max(a, top); t < b; t++ {
			sw.need = append(sw.need, t)
		}
		top = max(top, b)
	}
	return sw
}

// span is group g's range of positions.
func (sw *windowSweep[T]) span(g *rowGroup) (int, int) {
	if sw.rev {
		return sw.nb - g.bHi, sw.nb - g.bLo
	}
	return g.bLo, g.bHi
}

// keys is the range of keys of position t's block.
func (sw *windowSweep[T]) keys(t int) (int, int) {
	b := t
	if sw.rev {
		b = sw.nb - 1 - t
	}
	return b * sw.kb, min((b+1)*sw.kb, sw.hk.L)
}

// moments writes group g's moments (the groups in the sweep's order) to
// dst.
func (sw *windowSweep[T]) moments(ctx context.Context, g *rowGroup, dst []float64) {
	q := sw.q
	a, b := sw.span(g)
	if a >= q.hi {
		q.reset(a)
	}
	for q.lo < a {
		q.pop()
	}
	for q.hi < b {
		q.push(sw.block(ctx, q.hi))
	}
	q.sum(dst)
}

// block returns position t's moments, building the next batch of
// positions in parallel when t is not built yet.
func (sw *windowSweep[T]) block(ctx context.Context, t int) []float64 {
	if _, ok := sw.ready[t]; !ok {
		ts := sw.need[sw.next:min(sw.next+windowBatch(sw.run.workers), len(sw.need))]
		sw.next += len(ts)
		mats := make([][]float64, len(ts))
		for x := range mats {
			mats[x] = sw.q.get()
		}
		sw.run.parallelBlocks(ctx, 0, len(ts), func(s *scratch, x int) {
			j0, j1 := sw.keys(ts[x])
			sw.hk.addMoments(s, j0, j1, mats[x])
		}, nil, sw.hk.r)
		for x, u := range ts {
			sw.ready[u] = mats[x]
		}
	}
	m := sw.ready[t]
	delete(sw.ready, t)
	return m
}

// rows runs work on the rows of the wave's groups, a block of up to
// queryBlock rows of one group per task, in parallel; work gets the keys
// [cStart, cEnd) of its group's whole blocks.
func (sw *windowSweep[T]) rows(ctx context.Context, wave []rowGroup, work func(s *scratch, g *rowGroup, blk []int, cStart, cEnd int) error) error {
	type task struct {
		g   *rowGroup
		blk []int
	}
	var tasks []task
	for x := range wave {
		g := &wave[x]
		for b0 := 0; b0 < len(g.rows); b0 += queryBlock {
			tasks = append(tasks, task{g, g.rows[b0:min(b0+queryBlock, len(g.rows))]})
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var failed atomic.Value
	sw.run.parallelBlocks(ctx, 0, len(tasks), func(s *scratch, x int) {
		t := tasks[x]
		if err := work(s, t.g, t.blk, t.g.bLo*sw.kb, min(t.g.bHi*sw.kb, sw.hk.L)); err != nil {
			failed.Store(err)
		}
	}, nil, sw.hk.r)
	if err, ok := failed.Load().(error); ok {
		return err
	}
	return ctx.Err()
}

// splitRows returns the head's rows on the polynomial path and those
// computed exactly, each ascending.
func (hp *headPlan) splitRows() (polyRows, direct []int) {
	for i, g := range hp.degree {
		if g == exactRow {
			direct = append(direct, i)
		} else {
			polyRows = append(polyRows, i)
		}
	}
	return polyRows, direct
}

// finish records the sweep's matrix additions, its most kept blocks and,
// in the backward pass, the second queue's (kq) most kept group sums, each
// with the planner's figure (hp.win).
func (sw *windowSweep[T]) finish(hp *headPlan, kq *momentQueue) {
	run := sw.run
	run.mu.Lock()
	defer run.mu.Unlock()
	run.flops += float64(sw.q.adds) * float64(sw.q.size)
	most := func(key string, n int) { run.details[key] = max(n, intDetail(run.details[key])) }
	most("window_blocks_kept_max", sw.q.peak)
	most("window_blocks_planned_max", hp.win.stored)
	if kq != nil {
		run.flops += float64(kq.adds) * float64(kq.size)
		most("window_group_sums_kept_max", kq.peak)
		most("window_group_sums_planned_max", hp.win.keyStored)
	}
}

// window computes the polynomial rows of a windowed head: in waves of
// groups, each group's moments summed by the sweep and scaled per degree,
// then the wave's rows in parallel.
func (run *runner[T]) window(ctx context.Context, h int, hp *headPlan, hk *headKeys[T], polys map[int]polyexp.Approx, rows []int) error {
	sw := run.newSweep(h, hp, hk, rows)
	sum := make([]float64, sw.q.size)
	var flops atomic.Uint64
	for g0 := 0; g0 < len(sw.groups); g0 += windowWave(run.workers) {
		wave := sw.groups[g0:min(g0+windowWave(run.workers), len(sw.groups))]
		for x := range wave {
			g := &wave[x]
			sw.moments(ctx, g, sum)
			g.scaled = map[int][]float64{}
			for _, i := range g.rows {
				if d := hp.degree[i]; g.scaled[d] == nil {
					g.scaled[d] = hk.scaledMoments(polys[d], sum)
				}
			}
		}
		err := sw.rows(ctx, wave, func(s *scratch, g *rowGroup, blk []int, cStart, cEnd int) error {
			return run.rowBlock(s, h, hp, hk, polys, blk, g.scaled, cStart, cEnd, &flops)
		})
		if err != nil {
			return err
		}
		for x := range wave {
			wave[x].scaled = nil
		}
	}
	run.mu.Lock()
	run.flops += float64(flops.Load())
	run.mu.Unlock()
	sw.finish(hp, nil)
	return ctx.Err()
}

// windowBackward is headBackward's pass over a windowed head. Rows
// computed exactly go as without a window. The polynomial rows go in waves
// of groups as in the forward: each group's moments from the sweep, its
// rows' dy, dQ and edge terms, and its sum S_G of H_i^T dy_i. The moments
// of the block at position t were read by the groups whose range holds t,
// consecutive groups [gLo(t), gHi(t)) with both ends non-decreasing in t:
// a second queue, over groups, sums their S_G for t as soon as every
// group starting at or before t is done (again no differences).
func (run *runner[T]) windowBackward(ctx context.Context, st *gradState[T], dq []T) error {
	p, hp, hk, h := run.p, st.hp, st.hk, st.h
	polyRows, direct := hp.splitRows()
	st.dSum = make([]float64, hk.r*(p.E+1))
	if err := run.rowsBackward(ctx, st, direct, nil, 0, dq); err != nil {
		return err
	}
	sw := run.newSweep(h, hp, hk, polyRows)
	groups := sw.groups
	if len(groups) == 0 {
		return ctx.Err()
	}
	size := sw.q.size
	r, e1 := hk.r, p.E+1
	// The key side: positions t, the groups' queue kq (positions are
	// group indices), the next group to push and the first not popped.
	_, tEnd := sw.span(&groups[len(groups)-1])
	tNext, _ := sw.span(&groups[0])
	// Groups [gA, gB) read position tNext: gA is the first whose range
	// ends after it, gB the first starting after it (or not done).
	gA, gB := 0, 0
	keep := sort.Search(len(groups), func(x int) bool { _, b := sw.span(&groups[x]); return b > tEnd-1 })
	kq := newMomentQueue(size, keep)
	type keyTask struct {
		t     int
		S, St []float64
	}
	var keyTasks []keyTask
	// keysUpTo computes the key gradients of positions before tStop.
	keysUpTo := func(tStop, done int) {
		keyTasks = keyTasks[:0]
		flush := func() {
			run.parallelBlocks(ctx, 0, len(keyTasks), func(s *scratch, x int) {
				j0, j1 := sw.keys(keyTasks[x].t)
				run.keyBlockBackward(s, st, j0, j1, keyTasks[x].S, keyTasks[x].St)
			}, nil, r)
			for _, kt := range keyTasks {
				kq.pool = append(kq.pool, kt.S)
			}
			keyTasks = keyTasks[:0]
		}
		for ; tNext < tStop; tNext++ {
			for gA < len(groups) {
				if _, hi := sw.span(&groups[gA]); hi > tNext {
					break
				}
				gA++
			}
			for gB < done {
				if lo, _ := sw.span(&groups[gB]); lo > tNext {
					break
				}
				gB++
			}
			a, b := gA, gB
			if a >= b {
				continue // no group reads this block
			}
			if a >= kq.hi {
				kq.reset(a)
			}
			for kq.lo < a {
				kq.pop()
			}
			for kq.hi < b {
				kq.push(groups[kq.hi].dSum)
				groups[kq.hi-1].dSum = nil
			}
			S := kq.get()
			kq.sum(S)
			keyTasks = append(keyTasks, keyTask{tNext, S, transposed(S, r, e1)})
			if len(keyTasks) == windowBatch(run.workers) {
				flush()
			}
		}
		flush()
	}
	for g0 := 0; g0 < len(groups); g0 += windowWave(run.workers) {
		g1 := min(g0+windowWave(run.workers), len(groups))
		wave := groups[g0:g1]
		for x := range wave {
			g := &wave[x]
			g.mom = sw.q.get()
			sw.moments(ctx, g, g.mom)
			g.dSum = kq.get()
		}
		err := sw.rows(ctx, wave, func(s *scratch, g *rowGroup, blk []int, cStart, cEnd int) error {
			return run.blockBackward(s, st, blk, g.mom, cStart, cEnd, g.dSum, dq)
		})
		if err != nil {
			return err
		}
		for x := range wave {
			sw.q.pool = append(sw.q.pool, wave[x].mom)
			wave[x].mom = nil
		}
		// Positions before the next group's start are read by no later
		// group.
		stop := tEnd
		if g1 < len(groups) {
			stop, _ = sw.span(&groups[g1])
		}
		keysUpTo(stop, g1)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	sw.finish(hp, kq)
	return ctx.Err()
}

// transposed returns S (r x e1) transposed.
func transposed(S []float64, r, e1 int) []float64 {
	t := make([]float64, e1*r)
	for a := range r {
		for c := range e1 {
			t[c*r+a] = S[a*e1+c]
		}
	}
	return t
}

// exactEdge is one range of keys rows add exactly: max(from, start_k) to
// limits_k.
type exactEdge struct {
	from   int
	limits []int
}

// exactEdges returns the key ranges rows (with their starts, nil without a
// window, and limits) add exactly around moments over [cStart, cEnd): from
// cEnd to each limit, and, with a window, from each start to cStart.
func (run *runner[T]) exactEdges(starts, limits []int, cStart, cEnd int) []exactEdge {
	if starts == nil {
		return []exactEdge{{cEnd, limits}}
	}
	edges := []exactEdge{{max(cEnd, starts[0]), limits}}
	if cStart > starts[0] {
		ends := make([]int, len(limits))
		for k := range ends {
			ends[k] = cStart
		}
		edges = append(edges, exactEdge{starts[0], ends})
	}
	return edges
}

// clearBefore zeroes, in each row k of the rows x bs weights of keys from
// j0 on, the keys before starts_k (nil: none).
func clearBefore(sc []float64, bs int, starts []int, j0 int) {
	for k, st := range starts {
		clear(sc[k*bs : k*bs+min(max(st-j0, 0), bs)])
	}
}

// intDetail reads an int statistic, 0 if unset.
func intDetail(v any) int {
	n, _ := v.(int)
	return n
}

// momentQueue sums the moment matrices of a sliding range of positions
// [lo, hi) without subtracting (a queue of two stacks). Positions from
// keep on are never removed and go into one sum.
type momentQueue struct {
	size, keep int
	lo, hi     int
	back       [][]float64 // the newest positions below keep, one matrix each
	backSum    []float64   // their sum
	front      [][]float64 // front[k]: the sum of front positions k.. (front[0] is lo)
	perm       []float64   // positions >= keep
	pool       [][]float64
	adds       int // matrix additions, for the flop count
	peak       int // most matrices kept (back and front)
}

func newMomentQueue(size, keep int) *momentQueue {
	return &momentQueue{size: size, keep: keep, backSum: make([]float64, size), perm: make([]float64, size)}
}

// get returns a zeroed matrix.
func (q *momentQueue) get() []float64 {
	if n := len(q.pool); n > 0 {
		m := q.pool[n-1]
		q.pool = q.pool[:n-1]
		clear(m)
		return m
	}
	return make([]float64, q.size)
}

// push appends position hi with moments m (the queue takes m).
func (q *momentQueue) push(m []float64) {
	q.adds++
	if q.hi >= q.keep {
		addTo(q.perm, m)
		q.pool = append(q.pool, m)
	} else {
		addTo(q.backSum, m)
		q.back = append(q.back, m)
		q.peak = max(q.peak, len(q.back)+len(q.front))
	}
	q.hi++
}

// pop removes position lo (below keep, so in a stack). When the front is
// empty the back becomes the front as suffix sums, newest first.
func (q *momentQueue) pop() {
	if len(q.front) == 0 {
		for k := len(q.back) - 2; k >= 0; k-- {
			addTo(q.back[k], q.back[k+1])
			q.adds++
		}
		q.front, q.back = q.back, q.front[:0]
		clear(q.backSum)
	}
	if len(q.front) > 0 {
		q.pool = append(q.pool, q.front[0])
		q.front = q.front[1:]
	}
	q.lo++
}

// reset empties the queue to the empty range at t.
func (q *momentQueue) reset(t int) {
	q.pool = append(q.pool, q.front...)
	q.pool = append(q.pool, q.back...)
	q.front, q.back = nil, nil
	clear(q.backSum)
	clear(q.perm)
	q.lo, q.hi = t, t
}

// sum writes the moments of positions [lo, hi) to dst.
func (q *momentQueue) sum(dst []float64) {
	copy(dst, q.perm)
	addTo(dst, q.backSum)
	q.adds += 2
	if len(q.front) > 0 {
		addTo(dst, q.front[0])
	}
}
