// Package exact is FlashAttention-2's forward pass on the CPU: tiles of
// queries against tiles of keys with an online softmax, so memory stays
// O((n + m)(d + e)) whatever n and m are, and logits of any size neither
// overflow nor lose the row's largest terms.
package exact

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync/atomic"
	"unsafe"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/accurate"
	"github.com/fastattn/fastattn/internal/kernels"
	"github.com/fastattn/fastattn/internal/parallel"
	"github.com/fastattn/fastattn/internal/vscale"
)

// Tile sizes. A tile of scores is queryTile x keyTile values; with the
// query tile, its accumulator and a tile of keys and of values it stays in
// L2 (about 0.7 MB in float32 at d = 64, 1.2 MB at d = 128, of the 2 MB of
// the Xeon it was tuned on), and each K and V tile brought into cache is
// used by queryTile rows: 288-row tiles stream half the keys and values
// from L3 that 144-row ones do, which measured 2-4% faster at d = 64 and
// 3-9% at d = 128 (n = m = 16384, one worker, CPU time). The last rows of
// a head go in half tiles (tileRows), so the workers still finish
// together. queryTile is a multiple of the microkernels' 6 and 12 rows,
// and so is its half; keyTile is a multiple of every panel width
// (kernels.PackedNT.Align) and of the GEMM's k block, so a tile of P V is
// one pass of the kernels.
//
// float32 tiles with d + e <= 128 span wideTile keys instead: per score,
// the softmax steps cost the same whatever the width, but a wider tile
// halves the per-row calls and the float64 accumulations of P V (one per
// tile), which weigh twice as much next to the products at d = 64 as at
// d = 128. At d = e = 64 the loop ran 3% faster with them (one core,
// thread CPU time, alternating in one process); at d = e = 128, where a
// tile's keys, values and scores then fill most of L2, 2% slower.
const (
	queryTile = 288
	keyTile   = 256
	wideTile  = 2 * keyTile

	// scoreStride is the row stride of the score tile: the widest tile
	// plus a little, so that rows (2 KiB for float32 at wideTile, float64
	// at keyTile) do not all map to the same L1 sets when the P V product
	// reads down a column.
	scoreStride = wideTile + 16
)

// wideKeys32 is the key tile width of float32 problems with d + e <= 128:
// wideTile, or keyTile; a variable so benchmarks can compare.
var wideKeys32 = wideTile

// tileWidth is the key tile width of element type T at head dimensions d
// and e: wideKeys32 for float32 with d + e <= 128, keyTile otherwise.
func tileWidth[T attn.Float](d, e int) int {
	if _, ok := any(T(0)).(float32); ok && d+e <= 2*64 {
		return wideKeys32
	}
	return keyTile
}

// Work split, in order of preference:
//
//   - (head, query tile) pairs go to the workers dynamically;
//   - when there are too few of them to keep every worker busy (decoding: a
//     few queries against many keys), each pair's keys are also split into
//     chunks that run in parallel, and their partial results (row max, row
//     sum, unnormalised output) are merged as the online softmax merges
//     tiles;
//   - when a head has several query tiles, its keys are packed once for
//     the Q K^T microkernels (kernels.PackedNT) instead of once per tile.
var (
	// splitMinKeys is the fewest keys a split-K chunk gets, so the merge
	// and the scheduling stay negligible next to the chunk's work. A
	// variable so tests can force splits on small inputs.
	splitMinKeys = 4 * keyTile
	// splitTarget is how many tasks per worker split-K aims for when it
	// applies: several, so that uneven chunks (causal rows, padding, other
	// processes on the machine) still balance.
	splitTarget = 4
	// packBudget caps the bytes of packed keys held at once; heads are
	// processed in groups that fit (at least one head per group).
	packBudget = 64 << 20
)

// blockRows32 and blockRows64 are how many rows of a query tile go through
// a key tile at once (multiples of the microkernels' 6 rows). Blocks keep
// a block's scores in L1 from Q K^T through P V and trim a causal
// diagonal tile's columns per block, but on the Xeon they were measured
// on, neither type gained: float32 ran at the same speed with 48-row
// blocks within the noise (0-3% slower), float64 5-11% slower, as smaller
// blocks reuse each packed key panel less. So both use whole tiles;
// variables so benchmarks can compare.
var blockRows32, blockRows64 = queryTile, queryTile

// edgeRows is the block size of a key tile some row of the query tile
// sees only in part (a causal diagonal, a sliding window's edges, padding):
// each block computes only the columns its own rows see, from the first
// multiple of keyAlign at or below its rows' first key to its rows' last,
// so a window's tiles compute about window + edgeRows keys per row rather
// than window + queryTile. A variable so benchmarks can compare.
var edgeRows = 48

// windowTile is the query tile of a problem with a sliding window: rows
// on its edges compute keys other rows of their tile see, so smaller tiles
// than queryTile waste less (window 1024 at n = 32768, causal: 288-row
// tiles ran 12.5x faster than full causal attention, 144-row ones 14.4x).
// At most queryTile; a variable so benchmarks can compare.
var windowTile = queryTile / 2

// rowKernels turns on the row-block softmax kernels (kernels.MaxRows32,
// kernels.Exp2Rows32) for float32 blocks whose rows all see every key of
// the tile; a variable so benchmarks and tests can compare.
var rowKernels = true

// prefetch turns on the prefetch of the next operands into L2 during the
// products; a variable so benchmarks can compare.
var prefetch = true

// packRows is how many keys one packing task lays out.
const packRows = 1024

// keyAlign is the multiple a tile's first key is rounded down to: a
// multiple of every panel width of the packed keys (kernels.PackedNT.Align,
// checked by a test), and small, so that a window's tiles start close to
// their first key.
const keyAlign = 64

// Method is exact attention. Its zero value is ready to use.
type Method struct {
	// Workers caps the goroutines used; 0 means GOMAXPROCS.
	Workers int
}

// Name returns "exact".
func (Method) Name() string { return "exact" }

// Supports lists the options beyond plain attention exact attention
// handles: all of them.
func (Method) Supports() attn.Feature {
	return attn.GQA | attn.TopLeftAlign | attn.SlidingWindow | attn.MaskTensor | attn.AttentionSinks | attn.HalfKV | attn.HalfQO
}

// BackwardSupports lists the options the backward pass handles: all but
// 16-bit queries and output (with 16-bit keys and values, dK and dV are
// float32).
func (m Method) BackwardSupports() attn.Feature { return m.Supports() &^ attn.HalfQO }

// ChecksFinite reports that Forward finds NaN and Inf among the inputs it
// reads itself (unless Problem.AssumeFinite), so callers need not scan
// them first.
func (Method) ChecksFinite() bool { return true }

// Forward32 computes float32 attention; scores and exponentials are float32
// within a tile, while row sums and outputs accumulate across tiles in
// float64 so long key sequences do not drift.
//
// Every Forward centres the keys, reports its rounding bound and meets
// p.Eps (see bound.go).
//
// 16-bit keys and values are widened to float32 once here, since the bound
// needs every key's statistics and the values' range, except in
// decoding-shaped calls, which widen them a tile at a time and measure
// each tile as they go (speculate.go; 16-bit queries, few there, are
// widened first, and a 16-bit output rounded at the end); bfloat16
// queries, keys and values with many query rows go to hardware bfloat16
// products, AMX or VDPBF16PS (bf16.go);
// Workspace.Forward, the serving
// path, reads them in place in decoding-shaped calls (halfkv_direct.go)
// and widens them a tile at a time otherwise.
func (m Method) Forward32(ctx context.Context, p *attn.Problem[float32], out *attn.Output[float32]) (attn.Stats, error) {
	if st, ok, err := forward32BF16(ctx, m.Workers, p, out); ok { // bf16.go: bfloat16 products
		return st, err
	}
	workers := m.Workers
	if p.Workers > 0 {
		workers = p.Workers
	}
	if p.KVFormat != attn.NoHalf {
		// A decoding-shaped call computes in one pass, widening a tile at
		// a time (speculate.go); if its statistics ask for more, the
		// widened problem is planned (its own speculation would fail the
		// same way).
		if st, ok, err := speculatedHalf(ctx, workers, p, out); ok {
			return st, err
		}
	}
	wp, release := widened(p, m.Workers)
	defer release()
	if out.O16 != nil {
		return halfOutput(ctx, workers, wp, out, p.KVFormat)
	}
	if p.KVFormat != attn.NoHalf {
		return measuredFirst(ctx, workers, wp, out)
	}
	return bounded(ctx, workers, wp, out)
}

// halfCopies are the float32 copies widened makes of 16-bit inputs, kept
// for the next call: made afresh, zeroing them took a quarter of a
// certified decoding step from a 16-bit cache (8 query heads on 2
// key/value heads, d = 128, 4096 keys).
type halfCopies struct{ q, k, v []float32 }

var halfRecycled recycler[halfCopies]

// widenChunk is how many values one task of widened converts.
const widenChunk = 1 << 16

// widened returns p with its 16-bit queries, keys and values widened to
// float32 on up to workers goroutines (p itself if none is 16-bit), and
// release, which hands the copies to a later call once the returned
// problem is no longer used.
func widened(p *attn.Problem[float32], workers int) (wp *attn.Problem[float32], release func()) {
	if p.KVFormat == attn.NoHalf {
		return p, func() {}
	}
	buf := halfRecycled.get()
	if buf == nil {
		buf = new(halfCopies)
	}
	w := *p
	w.KVFormat, w.K16, w.V16, w.Q16 = attn.NoHalf, nil, nil, nil
	type task struct {
		dst []float32
		src []uint16
	}
	var tasks []task
	// copyOf returns dst resized to hold src's widened values, which the
	// tasks it adds write (every entry: no clearing).
	copyOf := func(dst []float32, src []uint16) []float32 {
		dst = resized(dst, len(src))
		for i := 0; i < len(src); i += widenChunk {
			j := min(i+widenChunk, len(src))
			tasks = append(tasks, task{dst[i:j], src[i:j]})
		}
		return dst
	}
	buf.k, buf.v = copyOf(buf.k, p.K16), copyOf(buf.v, p.V16)
	w.K, w.V = buf.k, buf.v
	if p.Q16 != nil {
		buf.q = copyOf(buf.q, p.Q16)
		w.Q = buf.q
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	parallel.For(context.Background(), workers, len(tasks), func(t int) { widen(p.KVFormat, tasks[t].dst, tasks[t].src) })
	return &w, func() { halfRecycled.put(buf) }
}

// halfOutput is Forward32 of the float32 problem p into a 16-bit output
// (out.O16, format f): computed into float32 to p.Eps, then rounded; the
// rounding is added to the stated bound (attn.Output). p is planned
// first: Forward32 tried the one pass already (speculatedHalf).
func halfOutput(ctx context.Context, workers int, p *attn.Problem[float32], out *attn.Output[float32], f attn.HalfFormat) (attn.Stats, error) {
	o := &attn.Output[float32]{O: make([]float32, len(out.O16)), LSE: out.LSE}
	st, err := measuredFirst(ctx, workers, p, o)
	if err != nil {
		return st, err
	}
	for i, x := range o.O {
		out.O16[i] = attn.Float32ToHalf(f, x)
	}
	st.ErrorBound += outputRounding(p, f)
	return st, nil
}

// outputRounding bounds rounding an output entry to format f relative to
// max_l |V_lj|: an entry is a convex combination of its column's values, so
// |out| <= max_l |V_lj| and rounding it to nearest costs at most u |out|
// (u = 2^-11 for float16, 2^-8 for bfloat16), or half the format's least
// subnormal step below its normal range. The maxima are every query
// head's own, over its valid keys: a head that sees fewer keys of its
// group's values may have smaller ones (vscale.ShorterHeads).
func outputRounding(p *attn.Problem[float32], f attn.HalfFormat) float64 {
	return roundingTo(f, vscale.ColumnMax(p, p.Workers), vscale.ShorterHeads(p))
}

// roundingTo is outputRounding given the column maxima of every
// key/value head over the keys any of its query heads sees (groups, as
// vscale.ColumnMax) and those of the heads that see fewer: u plus half
// the least subnormal step relative to the smallest positive maximum (a
// column of zeros gives outputs of zero, which round exactly).
func roundingTo(f attn.HalfFormat, groups []float64, shorter []vscale.HeadMax) float64 {
	u, tiny := 0x1p-11, 0x1p-25
	if f == attn.BFloat16 {
		u, tiny = 0x1p-8, 0x1p-134
	}
	return u + tiny/smallestColumnMax(groups, shorter)
}

// smallestColumnMax is the smallest positive value column maximum of
// every query head, given its group's (groups) and those of the heads
// that see fewer keys; +Inf if there is none.
func smallestColumnMax(groups []float64, shorter []vscale.HeadMax) float64 {
	smallest := math.Inf(1)
	for _, c := range groups {
		if c > 0 {
			smallest = min(smallest, c)
		}
	}
	for _, s := range shorter {
		for _, c := range s.Max {
			if c > 0 {
				smallest = min(smallest, c)
			}
		}
	}
	return smallest
}

// Forward64 computes float64 attention.
func (m Method) Forward64(ctx context.Context, p *attn.Problem[float64], out *attn.Output[float64]) (attn.Stats, error) {
	return bounded(ctx, m.Workers, p, out)
}

// Flops is the conventional count for exact attention, 2nmd for Q K^T and
// 2nme for P V, over the entries the masks leave. It is what GFLOP/s figures
// in reports and benchmarks are based on.
func Flops[T attn.Float](p *attn.Problem[T]) float64 {
	var pairs float64
	for h := range p.Heads {
		for i := range p.N {
			lo, hi := p.KeyRange(h, i)
			pairs += float64(hi - lo)
		}
	}
	return 2 * pairs * float64(p.D+p.E)
}

// ops are the kernels for one element type.
type ops[T attn.Float] struct {
	gemmNT   func(m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int)
	gemmNN   func(m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int)
	expShift func(x []T, scale, shift T) T
	max      func(x []T) T
	// gemmNNNext is gemmNN that prefetches next into L2 as it computes.
	gemmNNNext func(m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int, next []T)
	// exp2Shift, when not nil, is expShift in base 2
	// (kernels.Exp2ShiftSum32), which attendRows uses with log2 e folded
	// into the scale: it skips the natural exponential's argument
	// reduction, about a quarter of its work.
	exp2Shift func(x []T, scale, shift T) T
	// gemmTN is C += A^T B with A read as it is stored (the backward's
	// dK += dS^T Q and dV += P^T dO).
	gemmTN func(m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int)
	// gemmNTNext, when not nil, is gemmNT that prefetches next into L2
	// as it computes.
	gemmNTNext func(m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int, next []T)
	// gemmNTPacked is gemmNT that never reads B in place (see
	// scoresInPlace).
	gemmNTPacked func(m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int)
}

// opsFor returns the kernels for T.
func opsFor[T attn.Float]() ops[T] {
	var k any
	switch any(T(0)).(type) {
	case float32:
		k = ops[float32]{kernels.GemmNT32, kernels.GemmNN32, kernels.ExpShiftSum32, kernels.Max32, kernels.GemmNNNext32, kernels.Exp2ShiftSum32, kernels.GemmTN32, kernels.GemmNT32Next, kernels.GemmNT32Packed}
	case float64:
		k = ops[float64]{kernels.GemmNT64, kernels.GemmNN64, kernels.ExpShiftSum64, kernels.Max64, kernels.GemmNNNext64, nil, kernels.GemmTN64, kernels.GemmNT64Next, kernels.GemmNT64Packed}
	}
	return k.(ops[T])
}

// packer is kernels.PackedNT for one element type: a head's keys laid out
// once for every query tile's Q K^T.
type packer[T attn.Float] interface {
	Reset(n, k int, b []T, ldb int)
	Pack(j0, j1 int)
	GemmNT(m, j0, nb int, a []T, lda int, c []T, ldc int)
	GemmNTNext(m, j0, nb int, a []T, lda int, c []T, ldc int, next []T)
	Rows(j0, j1 int) []T
}

// newPacker returns a kernels.PackedNT for T, or nil for a type the
// kernels do not take (a named float type), which then goes unpacked.
func newPacker[T attn.Float]() packer[T] {
	var pk any
	switch any(*new(T)).(type) {
	case float32:
		pk = new(kernels.PackedNT[float32])
	case float64:
		pk = new(kernels.PackedNT[float64])
	}
	p, _ := pk.(packer[T])
	return p
}

// tileState is one worker's scratch space, reused for every task it takes.
type tileState[T attn.Float] struct {
	scores []T       // queryTile x scoreStride
	pv     []T       // queryTile x e, P V of the current key tile (float32: the scratch of GemmNNAccumulate32, which adds most of it to acc directly)
	acc    []float64 // queryTile x e, output accumulated over key tiles
	rowMax []float64 // running max of the scaled logits
	// natMax is rowMax in natural units when attendRows keeps rowMax in
	// base 2 (see there).
	natMax []float64
	// blockMax, shifts and sums are a block's row maxima, exponent shifts
	// and row sums for the row-block kernels (float32).
	blockMax, shifts, sums []float32
	rowSum                 []float64 // running sum of exp(logit - rowMax)
	alpha                  []float64 // this tile's rescaling of acc, per row
	lo, hi                 []int     // each row's key range
	keys                   []T       // tileWidth x d centred keys (unpacked path), on first use
	kt, vt                 []T       // a key tile and a value tile widened from 16 bits
	qt                     []T       // the query tile widened from 16 bits
	// scan, when on, measures every key and value tile read (speculate.go).
	scan keyScan[T]
}

func newTileState[T attn.Float](e int) *tileState[T] {
	return &tileState[T]{
		scores:   make([]T, queryTile*scoreStride),
		pv:       make([]T, queryTile*e),
		acc:      make([]float64, queryTile*e),
		rowMax:   make([]float64, queryTile),
		natMax:   make([]float64, queryTile),
		blockMax: make([]float32, queryTile),
		shifts:   make([]float32, queryTile),
		sums:     make([]float32, queryTile),
		rowSum:   make([]float64, queryTile),
		alpha:    make([]float64, queryTile),
		lo:       make([]int, queryTile),
		hi:       make([]int, queryTile),
	}
}

// partial is one split-K chunk's result for a query tile: what tileState
// holds at the end of the chunk.
type partial struct {
	acc            []float64 // rows x e
	rowMax, rowSum []float64
}

// task is one piece of a forward call: global query rows r0..r0+rows-1
// (row r is row r%N of query head r/N), all attending key/value head kh,
// against keys ja <= j < jb. A tile whose keys are split has chunks > 1
// consecutive tasks, chunk c of which writes parts[part+c].
type task struct {
	kh, r0, rows, ja, jb int
	part, chunk, chunks  int
}

// plan is how forward divides a problem.
type plan struct {
	tasks   []task
	packKV  []bool // per key/value head: pack its keys (several tiles read them)
	parts   int    // partials needed by split tiles
	chunks  int    // the most chunks of any tile (1: no split)
	pack    bool   // some head's keys are packed
	workers int
}

// tileRows calls f(r0, rows) for every query tile of key/value head kh. A
// head with at least half a query tile of rows is tiled on its own: in
// tiles of queryTile rows, but its last 2 queryTile rows or fewer in
// tiles of half that, so that the end of the work comes in small pieces
// the workers share evenly. Shorter heads (decoding) share tiles with the
// other query heads of their group, so the group reads its keys once.
// Causal tiles come longest first, so the short ones fill in at the end.
func tileRows[T attn.Float](p *attn.Problem[T], kh int, f func(r0, rows int)) {
	const half = queryTile / 2
	g, n := p.Group(), p.N
	if w := p.Window; w != nil && (w.Left >= 0 || w.Right >= 0) && n >= half {
		// A sliding window: each tile computes about window + rows keys
		// per row, so its rows are fewer (windowTile).
		tiles := (n + windowTile - 1) / windowTile
		for h := kh * g; h < (kh+1)*g; h++ {
			for t := range tiles {
				if p.Causal {
					t = tiles - 1 - t
				}
				f(h*n+t*windowTile, min(windowTile, n-t*windowTile))
			}
		}
		return
	}
	if n < half {
		lo, hi := kh*g*n, (kh+1)*g*n
		for r0 := lo; r0 < hi; r0 += queryTile {
			f(r0, min(queryTile, hi-r0))
		}
		return
	}
	full := max(0, (n-2*queryTile+queryTile-1)/queryTile) // whole tiles before the halves
	tiles := full + (n-full*queryTile+half-1)/half
	for h := kh * g; h < (kh+1)*g; h++ {
		for t := range tiles {
			if p.Causal {
				t = tiles - 1 - t
			}
			i0, rows := t*queryTile, queryTile
			if t >= full {
				i0, rows = full*queryTile+(t-full)*half, half
			}
			f(h*n+i0, min(rows, n-i0))
		}
	}
}

// tileKeys is the union of the key ranges of global rows r0..r0+rows-1.
func tileKeys[T attn.Float](p *attn.Problem[T], r0, rows int) (lo, hi int) {
	lo, hi = p.M, 0
	for r := r0; r < r0+rows; r++ {
		if a, b := p.KeyRange(r/p.N, r%p.N); a < b {
			lo, hi = min(lo, a), max(hi, b)
		}
	}
	return min(lo, hi), hi
}

// makePlan fills pl (reusing its slices) for p on workers goroutines.
func makePlan[T attn.Float](p *attn.Problem[T], workers int) plan {
	var pl plan
	fillPlan(&pl, p, workers)
	return pl
}

func fillPlan[T attn.Float](pl *plan, p *attn.Problem[T], workers int) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	pl.workers, pl.parts, pl.chunks, pl.pack = workers, 0, 1, false
	pl.tasks = pl.tasks[:0]
	kvh := p.KVHeadCount()
	pl.packKV = slices.Grow(pl.packKV[:0], kvh)[:kvh]
	canPack := newPacker[T]() != nil
	tiles := 0
	for kh := range kvh {
		count := 0
		tileRows(p, kh, func(int, int) { count++ })
		// A group whose scores read keys in place never packs them
		// (scoresInPlace: the backward reads them in place too).
		pl.packKV[kh] = canPack && count >= 2 && !scoresInPlace(p)
		pl.pack = pl.pack || pl.packKV[kh]
		tiles += count
	}
	want := 1
	if workers > 1 && tiles < splitTarget*workers {
		want = (splitTarget*workers + tiles - 1) / tiles
	}
	for kh := range kvh {
		tileRows(p, kh, func(r0, rows int) {
			lo, hi := tileKeys(p, r0, rows)
			lo = lo / keyAlign * keyAlign
			chunks, size := splitKeys(lo, hi, want)
			for c := range chunks {
				pl.tasks = append(pl.tasks, task{kh: kh, r0: r0, rows: rows,
					ja: min(lo+c*size, hi), jb: min(lo+(c+1)*size, hi), part: pl.parts, chunk: c, chunks: chunks})
			}
			if chunks > 1 {
				pl.parts += chunks
				pl.chunks = max(pl.chunks, chunks)
			}
		})
	}
}

// Workspace holds the buffers of forward calls so that a stream of calls
// of one shape allocates nothing once the first has sized them: the
// serving hot path. A Workspace must not be used by two calls at once.
type Workspace[T attn.Float] struct {
	k      ops[T]
	pl     plan
	states []*tileState[T]
	packed []packer[T]
	kc     [][]T // per packed head: its centred keys, when centred
	parts  []partial
	jobs   []packJob
	wide   [][]T // per packed head: its 16-bit keys widened to T
	e      int

	// The current call.
	ctx       context.Context
	p         *attn.Problem[T]
	out       *attn.Output[T]
	kh0, kh1  int         // key/value heads of the current batch of tasks
	centres   [][]float64 // per key/value head, subtracted from its keys (nil: none)
	t0, t1    int         // its tasks
	packing   bool
	scanning  bool          // the workers measure the tiles they read (speculate.go)
	check     bool          // scan inputs for NaN and Inf as they are read
	nonFinite atomic.Bool   // a scan found one
	crew      parallel.Crew // the workers of a call
}

// packJob packs keys j0..j1 of key/value head kh.
type packJob struct{ kh, j0, j1 int }

// NewWorkspace returns an empty Workspace.
func NewWorkspace[T attn.Float]() *Workspace[T] {
	w := &Workspace[T]{k: opsFor[T]()}
	w.crew.Work = func(i int) { w.work(w.states[i], w.total()) }
	return w
}

// workspaces32 and workspaces64 recycle the Workspaces of Method's calls.
var (
	workspaces32 recycler[Workspace[float32]]
	workspaces64 recycler[Workspace[float64]]
)

// getWorkspace returns a Workspace for a call and the recycler to put it
// back in.
func getWorkspace[T attn.Float]() (*Workspace[T], *recycler[Workspace[T]]) {
	rec := recyclerFor[T, Workspace[T]](&workspaces32, &workspaces64)
	if ws := rec.get(); ws != nil {
		return ws, rec
	}
	return NewWorkspace[T](), rec
}

// Forward computes exact attention for p into out (sized as
// attn.NewOutput(p)) with the workspace's buffers, using p.Workers
// goroutines (0: GOMAXPROCS). It supports every attn.Feature; unless
// p.AssumeFinite it checks Q and the keys and values it reads for NaN and
// Inf as it goes. Unlike Method's Forward it neither centres the keys nor
// states a rounding bound (Stats.ErrorBound is 0: not stated).
func (ws *Workspace[T]) Forward(ctx context.Context, p *attn.Problem[T], out *attn.Output[T]) (attn.Stats, error) {
	return ws.forward(ctx, p.Workers, p, out, nil)
}

// forward computes p into out; centres[kh], when not nil, is subtracted
// from key/value head kh's keys as they are packed or tiled (bound.go), so
// the log-sum-exps it leaves lack s q_i.centres[kh].
func (w *Workspace[T]) forward(ctx context.Context, workers int, p *attn.Problem[T], out *attn.Output[T], centres [][]float64) (attn.Stats, error) {
	fillPlan(&w.pl, p, workers)
	pl := &w.pl
	d, e := p.D, p.E
	nStates := min(pl.workers, max(len(pl.tasks), 1))
	// Buffers are sized for the widest values seen (w.e).
	if w.e < e {
		w.states, w.parts, w.e = w.states[:0], w.parts[:0], e
	}
	for len(w.states) < nStates {
		w.states = append(w.states, newTileState[T](w.e))
	}
	for _, st := range w.states {
		st.scan.on = false
		if w.scanning {
			st.scan.reset(p.KVHeadCount(), d, e)
		}
	}
	for len(w.parts) < pl.parts {
		w.parts = append(w.parts, partial{acc: make([]float64, queryTile*w.e), rowMax: make([]float64, queryTile), rowSum: make([]float64, queryTile)})
	}

	// Key/value heads go in batches whose packed keys fit packBudget.
	batch := p.KVHeadCount()
	if pl.pack {
		var zero T
		headBytes := p.M * d * int(unsafe.Sizeof(zero))
		batch = max(1, min(batch, packBudget/max(headBytes, 1)))
		for len(w.packed) < batch {
			w.packed = append(w.packed, newPacker[T]())
		}
	}
	w.ctx, w.p, w.out, w.check, w.centres = ctx, p, out, !p.AssumeFinite, centres
	w.nonFinite.Store(false)
	defer func() { w.ctx, w.p, w.out, w.centres = nil, nil, nil, nil }()
	t := 0
	for kh0 := 0; kh0 < p.KVHeadCount() && ctx.Err() == nil; kh0 += batch {
		kh1 := min(kh0+batch, p.KVHeadCount())
		w.kh0, w.kh1 = kh0, kh1
		if pl.pack {
			w.jobs = w.jobs[:0]
			for kh := kh0; kh < kh1; kh++ {
				if !pl.packKV[kh] {
					continue
				}
				l := w.keysOf(kh)
				var keys []T
				switch {
				case p.KVFormat != attn.NoHalf:
					// The pack jobs widen the keys here first (16-bit
					// problems are never centred).
					for len(w.wide) <= kh-kh0 {
						w.wide = append(w.wide, nil)
					}
					w.wide[kh-kh0] = slices.Grow(w.wide[kh-kh0][:0], l*d)[:l*d]
					keys = w.wide[kh-kh0]
				case centres != nil && centres[kh] != nil:
					// Centred while packing: each job shifts its rows first.
					for len(w.kc) <= kh-kh0 {
						w.kc = append(w.kc, nil)
					}
					if cap(w.kc[kh-kh0]) < l*d {
						w.kc[kh-kh0] = make([]T, l*d)
					}
					keys = w.kc[kh-kh0][:l*d]
				default:
					keys = p.K[kh*p.M*d : kh*p.M*d+l*d]
				}
				w.packed[kh-kh0].Reset(l, d, keys, d)
				for j := 0; j < l; j += packRows {
					w.jobs = append(w.jobs, packJob{kh, j, min(j+packRows, l)})
				}
			}
			w.packing = true
			w.run(len(w.jobs))
			w.packing = false
		}
		t1 := t
		for t1 < len(pl.tasks) && pl.tasks[t1].kh < kh1 {
			t1++
		}
		w.t0, w.t1 = t, t1
		w.run(t1 - t)
		if ctx.Err() != nil {
			break
		}
		for ; t < t1; t += pl.tasks[t].chunks {
			if tk := pl.tasks[t]; tk.chunks > 1 {
				w.merge(w.states[0], tk)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}
	if err := w.checkOutput(); err != nil {
		return attn.Stats{}, err
	}
	return attn.Stats{Flops: Flops(p)}, nil
}

// keysOf is how many keys of key/value head kh any of its query heads
// attends at most (its longest valid length).
func (w *Workspace[T]) keysOf(kh int) int {
	p, g, l := w.p, w.p.Group(), 0
	for h := kh * g; h < (kh+1)*g; h++ {
		l = max(l, p.KeyLen(h))
	}
	return l
}

// run executes tasks 0..total-1 of the current phase on the calling
// goroutine and up to workers-1 pooled helpers.
func (w *Workspace[T]) run(total int) {
	if total == 0 {
		return
	}
	w.crew.Run(min(w.pl.workers, total, len(w.states)))
}

func (w *Workspace[T]) total() int {
	if w.packing {
		return len(w.jobs)
	}
	return w.t1 - w.t0
}

func (w *Workspace[T]) work(st *tileState[T], total int) {
	for w.ctx.Err() == nil {
		t, ok := w.crew.Take(total)
		if !ok {
			return
		}
		if w.packing {
			jb := w.jobs[t]
			if p := w.p; p.KVFormat != attn.NoHalf {
				d, off := p.D, jb.kh*p.M*p.D
				widen(p.KVFormat, w.wide[jb.kh-w.kh0][jb.j0*d:jb.j1*d], p.K16[off+jb.j0*d:off+jb.j1*d])
			} else if c := w.centre(jb.kh); c != nil {
				d := w.p.D
				src := w.p.K[jb.kh*w.p.M*d:]
				centreRows(w.kc[jb.kh-w.kh0][jb.j0*d:jb.j1*d], src[jb.j0*d:jb.j1*d], c)
			}
			w.packed[jb.kh-w.kh0].Pack(jb.j0, jb.j1)
			continue
		}
		tk := w.pl.tasks[w.t0+t]
		var pk packer[T]
		if w.pl.packKV[tk.kh] {
			pk = w.packed[tk.kh-w.kh0]
		}
		if attendRows(w.ctx, w.p, w.k, st, pk, w.centre(tk.kh), tk.r0, tk.rows, tk.ja, tk.jb, w.check) {
			w.nonFinite.Store(true)
		}
		if tk.chunks == 1 {
			w.finish(st.acc, st.rowMax, st.rowSum, tk.r0, tk.rows)
			continue
		}
		e := w.p.E
		pt := &w.parts[tk.part+tk.chunk]
		copy(pt.acc, st.acc[:tk.rows*e])
		copy(pt.rowMax, st.rowMax[:tk.rows])
		copy(pt.rowSum, st.rowSum[:tk.rows])
	}
}

// centre is the centre of key/value head kh's keys, nil if not centred.
func (w *Workspace[T]) centre(kh int) []float64 {
	if w.centres == nil {
		return nil
	}
	return w.centres[kh]
}

func forward[T attn.Float](ctx context.Context, workers int, p *attn.Problem[T], out *attn.Output[T], centres [][]float64) (attn.Stats, error) {
	if p.Workers > 0 {
		workers = p.Workers
	}
	ws, rec := getWorkspace[T]()
	defer rec.put(ws)
	return ws.forward(ctx, workers, p, out, centres)
}

// cancelCheckTiles is how many key tiles a worker processes between looks
// at its context, so one long row of keys still stops promptly.
const cancelCheckTiles = 64

// keysReadInPlace reports whether the scores of a tile of rows query
// rows read unpacked keys in place (kernels.NTInPlaceRows,
// NTInPlaceRows64) rather than packing them first: on the vector levels
// (float64 with AVX-512; GemmNT64 packs with AVX2, where skipping the
// prefetch for so few rows was not measured).
func keysReadInPlace[T attn.Float](rows int) bool {
	if _, is32 := any(T(0)).(float32); is32 {
		return rows <= kernels.NTInPlaceRows
	}
	return rows <= kernels.NTInPlaceRows64
}

// scoresInPlace reports whether the scores of p's query rows are
// computed from keys read in place (the few-row kernels) rather than from
// packed keys, in the forward pass and the backward alike. The backward
// recomputes every weight from its score and the forward's log-sum-exp,
// so a score rounded otherwise in one pass than in the other moves the
// weight by that rounding times the logits' size (dV 0.2-0.4% off at
// logits of about 1e4, float32). The two kinds of kernel sum a dot
// product in different orders, but each gives a query and a key the same
// bits in every call; so the choice is made for a whole (batch,
// key/value head) group, from its rows alone: in place when the group
// has at most kernels.NTInPlaceRows (NTInPlaceRows64) rows, so that
// every tile of its and every row block of the backward's is in place
// too, and packed otherwise, even for a tile of a few rows at the end of
// a long group. (The kernels promise those bits for any stretch of rows
// and keys: TestGemmNTRowsSameBits. float64 reads up to four rows a row at
// a time, which sums in yet another order; its rounding is too small to
// matter.)
func scoresInPlace[T attn.Float](p *attn.Problem[T]) bool {
	return keysReadInPlace[T](p.Group() * p.N)
}

// valuePrefetchRows is the fewest query rows of a tile whose scores,
// computed from keys read in place, prefetch the tile's values into L2
// for P V to read. Without it the reading and the rows'
// arithmetic add up instead of overlapping: with 8 rows per key/value
// head a step took about the time of the same step on keys in L2 plus
// that of the one-row step's reading. Measured on decoding steps at 32768
// keys, d = 128, 2 key/value heads (TestRealModelTimings, best of 90
// alternating calls, two runs): with the keys and values in memory the
// prefetch took 0.87-0.93x the time at 2-16 rows per head and 0.91-0.96x
// at one row; in L3, 0.93-1.01x at best and 0.90-0.97x on the median at
// 2-16 rows but 1.05x at one row; on a 1024-key cache warm in L2 (calls
// on one cache back to back), 1.04-1.16x at 2-16 rows. One row is left
// without it. A variable so benchmarks can compare.
var valuePrefetchRows = 2

// scanKeysChunk is how many keys of d entries a certified step scores in
// one product before measuring them (keyScan): about 32 KiB of them, so
// that the scan reads them from L1 rather than the whole tile from L2,
// and a multiple of 16 keys. The chunks must give the planned call's
// scores bit for bit: the few-row kernels do for any keys, but float64's
// one-row kernel (MultiDot64) sums the keys of its 8-key blocks in
// another order than those left over at a call's end, so a chunk must
// end on a block boundary (at d = 96, 42-key chunks changed float64
// results in their last bit; TestSpeculatedMatchesPlanned). Against
// scoring the whole tile and measuring it
// after (400 certified steps of each alternating in one process, two
// runs, medians): 0.97-0.98x the time in float32 and 0.91-0.98x in
// float64, on one query head against 65536 keys and on 8 query heads
// over 2 or 8 key/value heads against 4096-32768 keys.
func scanKeysChunk[T attn.Float](d int) int {
	var zero T
	return max(16, 32<<10/(d*int(unsafe.Sizeof(zero)))/16*16)
}

// attendRows runs the online softmax of global query rows r0..r0+rows-1
// (row r is row r%N of query head r/N; all share key/value head
// KVHead(r0/N)) over keys ja <= j < jb, leaving
// in st the row max and row sum of the logits and the unnormalised output
// sum_j exp(logit_j - rowMax) v_j. ja is a multiple of keyAlign. Keys outside a row's KeyRange are
// skipped and the mask tensor applied. pk, when not nil, holds the key
// head's packed keys (centred, if centre is not nil); otherwise centre,
// when not nil, is subtracted from each key tile in scratch space. With check, it reports whether the rows' queries or
// the scores of their keys (so the keys) hold a NaN or Inf. On
// cancellation it returns early, leaving st unspecified. It is the kernel
// every exact forward path shares.
func attendRows[T attn.Float](ctx context.Context, p *attn.Problem[T], k ops[T], st *tileState[T], pk packer[T], centre []float64, r0, rows, ja, jb int, check bool) (nonFinite bool) {
	d, e := p.D, p.E
	kh := p.KVHead(r0 / p.N)
	tile := tileWidth[T](d, e)
	stride := tile + scoreStride - wideTile // rows of the score tile
	var q []T
	if p.Q16 != nil {
		// 16-bit queries are widened a query tile at a time.
		st.qt = slices.Grow(st.qt[:0], rows*d)[:rows*d]
		q = st.qt
		widen(p.KVFormat, q, p.Q16[r0*d:(r0+rows)*d])
	} else {
		q = p.Q[r0*d : (r0+rows)*d]
	}
	var keys, vals []T
	inPlaceScores := scoresInPlace(p)
	half := p.KVFormat != attn.NoHalf
	// A scanned call widens every tile, as the planned call's widened
	// copies hold them (speculate.go).
	inPlace := readsHalfInPlace(p, pk) && !st.scan.on // halfkv_direct.go
	if half {
		// 16-bit keys and values are widened a tile at a time (unless
		// read in place).
		st.kt = slices.Grow(st.kt[:0], tile*d)[:tile*d]
		st.vt = slices.Grow(st.vt[:0], tile*e)[:tile*e]
	} else {
		keys = p.K[kh*p.M*d:]
		vals = p.V[kh*p.M*e:]
	}
	acc := st.acc[:rows*e]
	clear(acc)
	if check && attn.FirstNonFinite(q) >= 0 {
		nonFinite = true
	}
	// For float64 the P V product accumulates straight into acc.
	_, direct := any(acc).([]T)
	subRows := blockRows64
	if _, is32 := any(T(0)).(float32); is32 {
		subRows = blockRows32
	}
	// Every row sees every key of [maxLo, minHi); a key tile inside that
	// range needs no per-row trimming.
	maxLo, minHi := 0, p.M
	for r := range rows {
		st.rowMax[r] = math.Inf(-1)
		st.rowSum[r] = 0
		st.lo[r], st.hi[r] = p.KeyRange((r0+r)/p.N, (r0+r)%p.N)
		maxLo, minHi = max(maxLo, st.lo[r]), min(minHi, st.hi[r])
	}
	mask := p.Mask
	// With a base-2 exponential the running maxima are kept in base-2
	// units (logits times log2 e), so that the largest entry's exponent
	// is exactly 0; the weights and sums mean the same either way. Each
	// row's largest logit is also kept as the natural exponential would
	// have rounded it (natMax), and that is the row max the tile reports:
	// the backward pass recomputes the weights as exp(T(scale)*s - LSE)
	// and must get exactly 1/sum for the largest, whatever the logits'
	// size.
	base2 := k.exp2Shift != nil
	expShift, exp, logScale := k.expShift, math.Exp, p.Scale
	if base2 {
		expShift, exp, logScale = k.exp2Shift, math.Exp2, p.Scale*math.Log2E
	}
	scale, natScale := T(logScale), T(p.Scale)
	// grow folds the largest dot product mx of row r's keys in this tile
	// into the row's running max, rescaling its sum (st.alpha[r] says by
	// how much). scale > 0, so the largest scaled logit is scale times the
	// largest dot product. It is rounded exactly as the exp kernel rounds
	// T(scale)*x, so the largest entry's exponent is exactly 0 and the row
	// sum is at least 1, whatever the logits' size.
	grow := func(r int, mx T) {
		st.alpha[r] = 1
		tileMax := float64(T(scale * mx))
		if tileMax > st.rowMax[r] {
			alpha := exp(st.rowMax[r] - tileMax) // 0 on the first tile
			st.alpha[r] = alpha
			st.rowSum[r] *= alpha
			st.rowMax[r] = tileMax
			if base2 {
				st.natMax[r] = float64(T(natScale * mx))
			}
		}
	}
	for j0, n := ja, 0; j0 < jb; j0, n = j0+tile, n+1 {
		if n%cancelCheckTiles == cancelCheckTiles-1 && ctx.Err() != nil {
			return nonFinite
		}
		cols := min(tile, jb-j0)
		var kt, vt []T
		if half && !inPlace {
			off := kh * p.M
			vt = st.vt[:cols*e]
			widen(p.KVFormat, vt, p.V16[(off+j0)*e:(off+j0+cols)*e])
			if pk == nil {
				kt = st.kt[:cols*d]
				widen(p.KVFormat, kt, p.K16[(off+j0)*d:(off+j0+cols)*d])
				if st.scan.on {
					st.scan.add(kh, kt, vt)
				}
			}
		} else if !half {
			kt, vt = keys[j0*d:], vals[j0*e:]
		}
		// While one product computes, the operands of the next are
		// prefetched from L3 into L2: this tile's values during Q K^T, the
		// next tile's keys during P V. Streaming them in on demand cost
		// about a quarter of the products' speed at n = 16384. Not the
		// keys of a few float32 rows, which the scores read in place
		// (keysReadInPlace): there the hardware's prefetcher keeps up
		// with the stream, and the prefetch instructions only wait for
		// fill buffers (decoding steps at 65536 keys, d = 128, took 9-12%
		// less time on average without them, keys and values in L3 or in
		// memory). Their values, though, are prefetched during the scores
		// once a tile has valuePrefetchRows rows or more (see there).
		var nextV, nextK []T
		if j1 := min(j0+2*tile, jb); prefetch && j0+tile < j1 {
			if pk != nil {
				nextK = pk.Rows(j0+tile, j1)
			} else if !half && !inPlaceScores {
				nextK = keys[(j0+tile)*d : j1*d]
			}
		}
		if prefetch && !half {
			nextV = vt[:cols*e]
		}
		if pk == nil && centre != nil {
			if len(st.keys) < tile*d {
				st.keys = make([]T, tile*d)
			}
			kt = st.keys[:cols*d]
			centreRows(kt, keys[j0*d:(j0+cols)*d], centre)
		}
		keysScanned := false
		inside := maxLo <= j0 && j0+cols <= minHi
		blockRows := subRows
		if !inside {
			blockRows = edgeRows
		}
		// The tile's rows go through in blocks of blockRows rows.
		for b0 := 0; b0 < rows; b0 += blockRows {
			nb := min(blockRows, rows-b0)
			// The block computes columns c0..bcols-1: from its rows' first
			// key (rounded down to keyAlign, where packed panels start) to
			// their last. On a causal diagonal the first blocks skip the
			// columns only later rows see; in a window each block skips
			// the keys left of its rows' windows.
			c0, bcols := 0, cols
			if !inside {
				c0, bcols = cols, 0
				for r := b0; r < b0+nb; r++ {
					if a, b := max(st.lo[r]-j0, 0), min(st.hi[r]-j0, cols); a < b {
						c0, bcols = min(c0, a), max(bcols, b)
					}
				}
				c0 = c0 / keyAlign * keyAlign
			}
			if c0 >= bcols {
				for r := b0; r < b0+nb; r++ {
					st.alpha[r] = 1 // no key of this tile for these rows
				}
				continue
			}
			s := st.scores[:(nb-1)*stride+bcols]
			pfV, pfK := share(nextV, b0, nb, rows), share(nextK, b0, nb, rows)
			if pk != nil {
				pk.GemmNTNext(nb, j0+c0, bcols-c0, q[b0*d:], d, s[c0:], stride, pfV)
			} else if inPlace {
				halfScores(p, kh, j0+c0, nb, bcols-c0, q[b0*d:], s[c0:], stride)
			} else if !inPlaceScores {
				k.gemmNTPacked(nb, bcols-c0, d, q[b0*d:], d, kt[c0*d:], d, s[c0:], stride)
			} else {
				// A certified step's tile, all of it in one block, is
				// scored in chunks of keys that fit in L1, each measured
				// right after its product (scanKeysChunk); otherwise the
				// block's columns go in one call.
				scanChunks := st.scan.on && !half && centre == nil && nb == rows && c0 == 0 && bcols == cols
				chunk := bcols - c0
				if scanChunks {
					chunk = scanKeysChunk[T](d)
				}
				for a := c0; a < bcols; a += chunk {
					b := min(a+chunk, bcols)
					if k.gemmNTNext != nil && rows >= valuePrefetchRows {
						k.gemmNTNext(nb, b-a, d, q[b0*d:], d, kt[a*d:], d, s[a:], stride, share(pfV, a-c0, b-a, bcols-c0))
					} else {
						k.gemmNT(nb, b-a, d, q[b0*d:], d, kt[a*d:], d, s[a:], stride)
					}
					if scanChunks {
						st.scan.addKeys(kh, kt[a*d:b*d])
					}
				}
				keysScanned = scanChunks
			}
			// A block all of whose rows see every key, with finite scores
			// and no mask, goes through the softmax steps in two calls for
			// all its rows (the row-block kernels) instead of two per row.
			if base2 && inside && mask == nil && rowKernels && kernels.MaxRows32(any(s).([]float32), stride, nb, bcols, st.blockMax[:nb]) {
				for i, mx := range st.blockMax[:nb] {
					grow(b0+i, T(mx))
					st.shifts[i] = float32(st.rowMax[b0+i])
				}
				kernels.Exp2Rows32(any(s).([]float32), stride, nb, bcols, float32(scale), st.shifts[:nb], st.sums[:nb])
				for i, sum := range st.sums[:nb] {
					st.rowSum[b0+i] += float64(sum)
				}
			} else {
				for r := b0; r < b0+nb; r++ {
					row := s[(r-b0)*stride : (r-b0)*stride+bcols]
					a, b := 0, bcols
					if !inside {
						a, b = min(max(st.lo[r]-j0, c0), bcols), min(max(st.hi[r]-j0, c0), bcols)
						// Keys outside the row's range must not feed P V.
						clear(row[c0:a])
						clear(row[b:])
					}
					st.alpha[r] = 1
					if a >= b {
						continue
					}
					var mx T
					if check && mask == nil {
						// The scan for NaN and Inf in the max's pass.
						var fin bool
						mx, fin = maxFinite(row[a:b], k.max)
						nonFinite = nonFinite || !fin
					} else {
						if check && !finite(row[a:b]) {
							nonFinite = true
						}
						if mask != nil {
							applyMask(mask, row, (r0+r)/p.N, (r0+r)%p.N, j0, a, b, p.Scale)
						}
						mx = k.max(row[a:b])
					}
					if math.IsInf(float64(mx), -1) {
						clear(row[a:b]) // every key of the tile masked
						continue
					}
					grow(r, mx)
					st.rowSum[r] += float64(expShift(row[a:b], scale, T(st.rowMax[r])))
				}
			}
			accb, alphas := acc[b0*e:(b0+nb)*e], st.alpha[b0:b0+nb]
			if direct {
				for r, a := range alphas {
					if a != 1 {
						scaleRow(accb[r*e:(r+1)*e], a)
					}
				}
				k.gemmNNNext(nb, e, bcols-c0, s[c0:], stride, vt[c0*e:], e, any(accb).([]T), e, pfK)
				continue
			}
			pv := st.pv[:nb*e]
			pv32, is32 := any(pv).([]float32)
			if is32 && !inPlace {
				// P V added to acc, row by row rescaled, as the
				// microkernels finish it (pv is their scratch).
				kernels.GemmNNAccumulate32(nb, e, bcols-c0, any(s[c0:]).([]float32), stride, any(vt[c0*e:]).([]float32), e, pv32, e, accb, e, alphas, any(pfK).([]float32))
				continue
			}
			if inPlace {
				halfValues(p, kh, j0+c0, jb, nb, bcols-c0, s[c0:], stride, pv)
			} else if !is32 {
				clear(pv)
				k.gemmNNNext(nb, e, bcols-c0, s[c0:], stride, vt[c0*e:], e, pv, e, pfK)
			}
			if is32 && allOne(alphas) {
				// No row's max moved: one call for the whole block.
				kernels.Accumulate32(accb, 1, pv32)
				continue
			}
			for r, alpha := range alphas {
				a := accb[r*e : (r+1)*e]
				if is32 {
					kernels.Accumulate32(a, alpha, pv32[r*e:(r+1)*e])
					continue
				}
				for c, v := range pv[r*e : (r+1)*e] {
					a[c] = a[c]*alpha + float64(v)
				}
			}
		}
		// Keys and values read as they are stored are measured after the
		// products, which bring them in from L3 or memory (with the
		// prefetches above) as in an uncertified call; the scans then read
		// them from L2 (the keys, when scored in chunks, from L1). Measured
		// first, the scans did the streaming without those prefetches:
		// certified decoding steps took 0.99-1.10x the time
		// (docs/PERFORMANCE.md, "Certified steps measure after").
		if st.scan.on && !half {
			if keysScanned {
				st.scan.addValues(kh, vals[j0*e:(j0+cols)*e])
			} else {
				st.scan.add(kh, keys[j0*d:(j0+cols)*d], vals[j0*e:(j0+cols)*e])
			}
		}
	}
	if base2 {
		for r := range rows {
			if !math.IsInf(st.rowMax[r], -1) {
				st.rowMax[r] = st.natMax[r]
			}
		}
	}
	return nonFinite
}

// widen converts 16-bit values of format f to dst (float32; the problem
// was validated to be float32 when it has 16-bit keys and values).
func widen[T attn.Float](f attn.HalfFormat, dst []T, src []uint16) {
	d := any(dst).([]float32)
	if f == attn.BFloat16 {
		kernels.BF16ToFloat32(d, src)
		return
	}
	kernels.F16ToFloat32(d, src)
}

// maxFinite returns the largest score and whether every score is finite,
// in one pass (kernels.MaxFinite) for float32 and float64; max is the
// kernel for other element types.
func maxFinite[T attn.Float](x []T, max func([]T) T) (T, bool) {
	switch x := any(x).(type) {
	case []float32:
		m, f := kernels.MaxFinite32(x)
		return T(m), f
	case []float64:
		m, f := kernels.MaxFinite64(x)
		return T(m), f
	}
	return max(x), finite(x)
}

// finite reports whether every score is finite: x*0 is 0 for finite x and
// NaN otherwise, and a NaN survives the sum.
func finite[T attn.Float](x []T) bool {
	switch x := any(x).(type) {
	case []float32:
		return kernels.Finite32(x) // SIMD: a scalar loop cost ~30% of the forward
	case []float64:
		return kernels.Finite64(x)
	}
	var z T
	for _, v := range x {
		z += v * 0
	}
	return z == 0
}

// applyMask applies the mask tensor to scores a..b-1 of row (h, i), whose
// first column is key j0: a false entry sets the score to -Inf, an additive
// one adds its value divided by the scale (the score is scaled later).
func applyMask[T attn.Float](m *attn.Mask, row []T, h, i, j0, a, b int, scale float64) {
	off, cs := m.Offset(h, i)+j0*m.ColStride, m.ColStride
	if m.Bool != nil {
		bools := m.Bool[off:]
		for c := a; c < b; c++ {
			if !bools[c*cs] {
				row[c] = T(math.Inf(-1))
			}
		}
		return
	}
	add := m.Add[off:]
	inv := 1 / scale
	for c := a; c < b; c++ {
		row[c] = T(float64(row[c]) + add[c*cs]*inv)
	}
}

// share is the part of x that block rows b0..b0+nb-1 of a rows-row tile
// prefetch: x split in proportion to the rows.
func share[T any](x []T, b0, nb, rows int) []T {
	return x[len(x)*b0/rows : len(x)*(b0+nb)/rows]
}

func allOne(x []float64) bool {
	for _, v := range x {
		if v != 1 {
			return false
		}
	}
	return true
}

func scaleRow(a []float64, s float64) {
	for c := range a {
		a[c] *= s
	}
}

// finish writes global rows r0..r0+rows-1 from the accumulated state:
// output acc/rowSum and LSE rowMax + log(rowSum), with each row's sink
// joining the sum, or a zero row and -Inf for a row with neither keys nor
// sink. A 16-bit output (out.O16) is rounded as its tile finishes.
func (w *Workspace[T]) finish(acc, rowMax, rowSum []float64, r0, rows int) {
	p, out, e := w.p, w.out, w.p.E
	lse := out.LSE[r0:]
	if out.O16 != nil {
		o16 := out.O16[r0*e:]
		for r := range rows {
			lse[r] = finishRow16(o16[r*e:(r+1)*e], p.KVFormat, acc[r*e:(r+1)*e], rowMax[r], rowSum[r], w.rowSink(r0+r))
		}
		return
	}
	o := out.O[r0*e:]
	for r := range rows {
		lse[r] = finishRow(o[r*e:(r+1)*e], acc[r*e:(r+1)*e], rowMax[r], rowSum[r], w.rowSink(r0+r))
	}
	// The rows are scanned here, in cache and on every worker, rather
	// than all of O by one goroutine after the tasks (0.42-0.54 ms of a
	// 100 ms causal call at n = 16384, d = 64, the other core idle).
	if w.check && attn.FirstNonFinite(o[:rows*e]) >= 0 {
		w.nonFinite.Store(true)
	}
}

// rowSink is the sink logit of global row r in the frame of the logits the
// workspace computes: with its head's keys centred by c, every logit lacks
// s q_r.c, and so must the sink, or it would weigh e^(s q_r.c) too much.
func (w *Workspace[T]) rowSink(r int) float64 {
	p := w.p
	h := r / p.N
	sink, c := p.Sink(h), w.centre(p.KVHead(h))
	if c == nil || math.IsInf(sink, -1) {
		return sink
	}
	return sink - centreShift(p, r, c)
}

// centreShift is s q_r.c, what centring the keys by c takes from every
// logit of global row r.
func centreShift[T attn.Float](p *attn.Problem[T], r int, c []float64) float64 {
	return accurate.ScaledDot(p.Q[r*p.D:(r+1)*p.D], c, p.Scale)
}

// merge combines the split-K chunks of one query tile (tasks tk.. of the
// plan) as the online softmax combines tiles: with M the largest chunk max,
// the row sum is sum_c s_c exp(m_c - M) and the output sum_c acc_c
// exp(m_c - M), over the chunks that saw any key. st is scratch space.
func (w *Workspace[T]) merge(st *tileState[T], tk task) {
	rows := tk.rows
	acc := combineParts(st, w.parts[tk.part:tk.part+tk.chunks], rows, w.p.E)
	w.finish(acc, st.rowMax, st.rowSum, tk.r0, rows)
}

// checkOutput turns what the scans found, and logits beyond the element
// type's range (a dot product that overflowed float32, say), into an error
// instead of NaN outputs: every LSE must be finite or -Inf (a row without
// keys) and, when checking, every output finite (a NaN or Inf among the
// values read makes it not).
func (w *Workspace[T]) checkOutput() error {
	p, out := w.p, w.out
	bad := w.nonFinite.Load()
	if w.check && !bad {
		// finish scanned O's rows as it wrote them; 16-bit outputs are
		// scanned once converted (float16 overflows where float32 does not).
		bad = attn.FirstNonFiniteHalf(p.KVFormat, out.O16) >= 0
	}
	if bad {
		if err := p.CheckFinite(); err != nil {
			return err
		}
	}
	for i, l := range out.LSE {
		if math.IsNaN(l) || math.IsInf(l, 1) {
			return fmt.Errorf("%w: the logits of row %d overflow %s (|s q.k| beyond its range); scale the inputs down or use float64", attn.ErrBadProblem, i, attn.DTypeName[T]())
		}
	}
	if bad {
		return fmt.Errorf("%w: the logits overflow %s (|s q.k| beyond its range); scale the inputs down or use float64", attn.ErrBadProblem, attn.DTypeName[T]())
	}
	return nil
}
