package anytemp

import (
	"context"
	"math"

	"github.com/fastattn/fastattn/attn"
)

// Sliding windows (attn.Window, FlashAttention-2's window_size) give row i
// the keys [lo_i, hi_i) of attn.Problem.KeyRange. A window open on the left
// (Left = -1) leaves prefixes [0, hi_i), which causalRows already handles;
// a window bounded on the left is covered like a segment tree: the aligned
// power-of-two blocks of at least minTreeBlock keys inside [lo_i, hi_i),
// each with its own tree, plus fewer than minTreeBlock keys on each side
// summed directly. Every key of the range is in exactly one block or edge,
// so the row's sums and the budget are those of a causal row with hi_i -
// lo_i keys.

// leftBounded reports whether p's window excludes keys on the left of some
// rows: then rows need windowRows rather than causalRows.
func leftBounded[T attn.Float](p *attn.Problem[T]) bool {
	return p.Window != nil && p.Window.Left >= 0
}

// ranged reports whether rows attend different key ranges (causal mask or
// window), computed in chunks of consecutive rows over blocks of keys.
func ranged[T attn.Float](p *attn.Problem[T]) bool {
	return p.Causal || p.Window != nil && (p.Window.Left >= 0 || p.Window.Right >= 0)
}

// windowSet is the segment-tree cover of one row's aligned part [a, b) of
// its key range: blocks [x, x+s) with s a power of two >= minTreeBlock and
// x a multiple of s, the largest that fit, left to right. As both ends move
// right (KeyRange's ends are non-decreasing in the row), each block is in
// the cover for one run of consecutive rows, so keeping only the current
// blocks builds each once per chunk of rows.
type windowSet[T attn.Float] struct {
	hr     *headRun[T]
	e      int
	a, b   int
	blocks []block[T]
	depth  int
}

// windowSplit splits the key range [lo, hi) into its aligned part [al, ar)
// (multiples of minTreeBlock; al = ar = 0 when none fits) and the keys
// summed directly: the edges [lo, al) and [ar, hi), or all of [lo, hi).
func windowSplit(lo, hi int) (al, ar int, edges [2][2]int) {
	al = (lo + minTreeBlock - 1) / minTreeBlock * minTreeBlock
	ar = hi / minTreeBlock * minTreeBlock
	if al >= ar {
		return 0, 0, [2][2]int{{lo, hi}}
	}
	return al, ar, [2][2]int{{lo, al}, {ar, hi}}
}

// dyadicCover returns the blocks (start, size) covering [a, b), multiples
// of minTreeBlock: at each position the largest power of two that is
// aligned there and fits.
func dyadicCover(a, b int) [][2]int {
	var out [][2]int
	for pos := a; pos < b; {
		size := minTreeBlock
		for pos%(2*size) == 0 && pos+2*size <= b {
			size *= 2
		}
		out = append(out, [2]int{pos, size})
		pos += size
	}
	return out
}

// cover makes the blocks those of [a, b) (multiples of minTreeBlock; a >= b
// means none).
func (ws *windowSet[T]) cover(a, b int) {
	if a >= b {
		a, b = 0, 0
	}
	if a == ws.a && b == ws.b && ws.blocks != nil {
		return
	}
	ws.a, ws.b = a, b
	want := []block[T]{}
	for _, c := range dyadicCover(a, b) {
		want = append(want, block[T]{start: c[0], size: c[1]})
	}
	for i := range want {
		for _, old := range ws.blocks {
			if old.start == want[i].start && old.size == want[i].size {
				want[i].tr = old.tr
			}
		}
		if want[i].tr == nil {
			want[i].tr = ws.hr.block(ws.e, want[i].start, want[i].size)
			ws.depth = max(ws.depth, want[i].tr.depth)
		}
	}
	ws.blocks = want
}

// blockRow is a worker's scratch for rows over blocks of keys (causal
// prefixes, window covers).
type blockRow[T attn.Float] struct {
	trees []*tree[T]
	ord   []orderedTree[T]
}

type orderedTree[T attn.Float] struct {
	ub float64 // upper bound of the row's logits over the tree
	tr *tree[T]
}

// sum adds the keys of the started row: the trees of blocks and tailK,
// tailV summed directly; then parks it as row i.
func (br *blockRow[T]) sum(rc *rowCtx, blocks []block[T], tailK []float64, tailV []T, i int) {
	br.trees = br.trees[:0]
	for _, bl := range blocks {
		br.trees = append(br.trees, bl.tr)
	}
	if rc.r == 1 && runCells1D(rc, br.trees, tailK, tailV) {
		rc.park(i)
		return
	}
	// Blocks by decreasing upper bound, so the first finds the maximum.
	ord := br.ord[:0]
	for _, tr := range br.trees {
		ord = append(ord, orderedTree[T]{rootBound(rc, tr), tr})
	}
	for x := 1; x < len(ord); x++ {
		for y := x; y > 0 && ord[y].ub > ord[y-1].ub; y-- {
			ord[y], ord[y-1] = ord[y-1], ord[y]
		}
	}
	br.ord = ord
	brute(rc, tailK, tailV)
	for _, ob := range ord {
		runTree(rc, ob.tr)
	}
	rc.park(i)
}

// rangeRows computes rows a..b-1 of a head whose rows attend ranges of
// keys: keys(i) returns row i's number of keys (0: none), its blocks and
// the keys it sums directly.
func rangeRows[T attn.Float](ctx context.Context, rc *rowCtx, p *attn.Problem[T], hr *headRun[T], out *attn.Output[T], a, b int,
	keys func(i int) (int, []block[T], []float64, []T)) {
	hd := hr.hd
	r, e, h := hd.r, p.E, hd.h
	var br blockRow[T]
	fin := func(i int) {
		row := h*p.N + i
		finish(rc, out.O[row*e:(row+1)*e], &out.LSE[row], hd.lseShift[i], p.Sink(h))
	}
	defer rc.flush(fin)
	for i := a; i < b; i++ {
		if (i-a)%64 == 63 && ctx.Err() != nil {
			rc.resetBatch()
			return
		}
		if len(rc.slots) == batchRows {
			rc.flush(fin)
		}
		n, blocks, tailK, tailV := keys(i)
		if n == 0 {
			row := h*p.N + i
			clear(out.O[row*e : (row+1)*e])
			out.LSE[row] = p.Sink(h) // -Inf without a sink
			continue
		}
		rc.start(hd.q[i*r:(i+1)*r], p.Scale, n)
		br.sum(rc, blocks, tailK, tailV, i)
	}
}

// windowRows computes rows a..b-1 of a head whose window is bounded on the
// left; it returns the deepest tree built.
func windowRows[T attn.Float](ctx context.Context, rc *rowCtx, p *attn.Problem[T], hr *headRun[T], out *attn.Output[T], a, b int) int {
	hd := hr.hd
	r, e := hd.r, p.E
	ws := &windowSet[T]{hr: hr, e: e}
	// The keys a row sums directly, side by side (fewer than 2 minTreeBlock).
	edgeK := make([]float64, 0, 2*minTreeBlock*r)
	edgeV := make([]T, 0, 2*minTreeBlock*e)
	rangeRows(ctx, rc, p, hr, out, a, b, func(i int) (int, []block[T], []float64, []T) {
		lo, hi := p.KeyRange(hd.h, i)
		if lo >= hi {
			return 0, nil, nil, nil
		}
		al, ar, edges := windowSplit(lo, hi)
		ws.cover(al, ar)
		edgeK, edgeV = edgeK[:0], edgeV[:0]
		for _, ed := range edges {
			edgeK = append(edgeK, hd.k[ed[0]*r:ed[1]*r]...)
			edgeV = append(edgeV, hr.v[ed[0]*e:ed[1]*e]...)
		}
		// The previous row's best key may have left the window: a warm
		// start from it could exceed this row's maximum and drop keys
		// that count.
		rc.haveCand = false
		return hi - lo, ws.blocks, edgeK, edgeV
	})
	return ws.depth
}

// windowKeys returns the mean number of keys the rows of head h attend
// (at least 1): the planner's pilot runs on that many keys.
func windowKeys[T attn.Float](p *attn.Problem[T], h int) int {
	var sum int
	for i := range p.N {
		lo, hi := p.KeyRange(h, i)
		sum += hi - lo
	}
	return max(1, (sum+p.N-1)/p.N)
}

// windowCost prices a problem whose window is bounded on the left, from
// the pilot's per-row counts at lw keys (rows and moments as estimate
// computed them for one tree of lw keys) and the head's lf keys: each row
// walks up to two blocks per level of its cover and sums its two edges
// directly; each chunk of rows builds the blocks over its rows' keys plus
// one window, every level of the cover once.
func windowCost[T attn.Float](p *attn.Problem[T], rows, moments, lf, lw, workers float64) (rowsW, buildW, momentsW float64) {
	heads, n := float64(p.Heads), float64(p.N)
	rt := measuredRates()
	if lw < 2*minTreeBlock {
		// No aligned block fits most rows: every key summed directly.
		return heads * n * (rt.row + rt.brute*lw), 0, 0
	}
	levels := math.Floor(math.Log2(lw / minTreeBlock))
	rowsW = rows*(1+0.2*levels) + heads*n*rt.brute*minTreeBlock
	chunks := math.Max(1, math.Min(n/minTreeBlock, math.Ceil(4*workers/heads)))
	span := math.Min(lf+chunks*lw, lf*(levels+1))
	var perKey float64 // build cost per key of the span, over the levels
	for k := range int(levels) {
		perKey += math.Log2(float64(int(minTreeBlock)<<k)/leafSize) + 1
	}
	buildW = heads * rt.build * span * perKey
	momentsW = moments * (1 + 0.2*levels) * span / lw
	return rowsW, buildW, momentsW
}

// windowTrees points the backward worker at the trees of the cover of row
// range [lo, hi) (built once per head, shared by every row, as causal
// blocks) and returns the keys the row sums directly.
func (w *bwdWorker[T]) windowTrees(lo, hi int) [2][2]int {
	al, ar, edges := windowSplit(lo, hi)
	if al != w.al || ar != w.ar {
		w.al, w.ar = al, ar
		w.trees = w.trees[:0]
		for _, c := range dyadicCover(al, ar) {
			w.trees = append(w.trees, w.hb.block(c[0], c[1]))
		}
	}
	return edges
}
