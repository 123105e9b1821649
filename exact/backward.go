package exact

import (
	"context"
	"math"
	"runtime"
	"sort"
	"sync"
	"unsafe"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/kernels"
	"github.com/fastattn/fastattn/internal/parallel"
)

// The backward pass is FlashAttention-2's (Dao 2023, algorithm 2) on the
// CPU. With P = exp(s Q K^T - LSE) recomputed a tile at a time from the
// forward's per-row log-sum-exp,
//
//	Delta_i = dO_i . O_i
//	dV = P^T dO,  dP = dO V^T,  dS = P o (dP - Delta 1^T)
//	dQ = s dS K,  dK = s dS^T Q
//
// The work is split by key tiles: a worker owns a tile of keys, walks every
// query tile that sees it, and accumulates that tile's dK and dV locally
// (they are complete when the walk ends) and its contribution to dQ in a
// per-worker buffer for the whole head, added into the shared dQ (under a
// lock per chunk of rows) when the worker moves to another head. Workers
// take key tiles in head order, so each head's dQ receives at most one
// addition per worker; their order varies from run to run, so dQ may
// differ in its last bits between runs (as FlashAttention-2's atomic
// additions do). Nothing of size n x m is ever held: per worker, two
// bwdQueryTile x bwdKeyTile tiles and O(n d) for the head's dQ.
//
// Five products per tile and no transposes: the key tile and the value
// tile are packed once (as the forward packs a head's keys) for S = Q K^T
// and dP = dO V^T; dK += dS^T Q and dV += P^T dO read the score tiles down
// their columns and read Q and dO in place (float32 on cores with an L1
// of 48 KiB or more) or copy them into L1 a 16 KiB panel at a time
// (kernels.GemmTN32/64), so the query rows S and dP bring into cache serve
// these products too; dQ += dS K reads the keys in place. (dK and dV were
// accumulated transposed from copies of Q^T and dO^T made once per call:
// twice the query-side data streamed from L3 for every key tile.)
//
// Precision: products within a tile use the element type; every sum across
// tiles (dK and dV over query tiles, dQ over key tiles) is carried in
// float64, flushed from the element type at least every bwdFlush query
// rows (dK, dV) or keys (dQ), as the forward does: in float32, a sum of
// at most bwdFlush terms is rounded in float32 before it joins the float64
// total. (dQ went to float64 after every key tile; summing four tiles in
// float32 first removed most of its conversions and additions.) In
// float32, P = exp(s q.k - LSE) is exponentiated in base 2 from an
// argument formed in float32 with FMAs on hi/lo splits of s log2 e and
// LSE log2 e (kernels.SoftmaxGradRows32), so a large log-sum-exp loses
// almost nothing to the shift: with a = s q.k - LSE, each P is within
// 2^-24 (0.7 + 2^-20 |LSE|) of exp(a) relatively plus 2.5 ulp where
// |a| <= |LSE|, and within 2^-24 |a| more (what rounding a itself to
// float32 costs) beyond.
const (
	// bwdQueryTile is the tallest query tile; see bwdQueryTileFor.
	bwdQueryTile = 192
	// bwdKeyTile is the widest key tile; see bwdKeyTileFor.
	bwdKeyTile = 256
	// bwdRowBlock is how many rows of a query tile go through S, dP, the
	// softmax step and dQ together (a multiple of every GEMM row block).
	bwdRowBlock = 48
	// bwdStridePad is what the row stride of the score tiles adds to the
	// key tile's width: a row of 256 float32 (1 KiB) would put the rows a
	// product reads down a column into few L1 sets, as in the forward
	// (scoreStride).
	bwdStridePad = 16
	// bwdFlush is how many query rows are summed into dK and dV, and how
	// many keys into dQ, in the element type before the partial sums move
	// to float64. A float32 partial sum is a sum of F products' sums of
	// k terms each (k = 192 query rows for dK and dV, 256 keys for dQ,
	// each summed in registers), so its rounding error is at most
	// (k + F - 2) 2^-24 times the sum of the terms' magnitudes (to first
	// order), whatever n: with 4096, F <= 21 and 16, so 211 and 270 where
	// 1024 gave 195 and 258, for a quarter of the moves (each reads and
	// writes float64 sums far beyond L2: 2.5-4% of a float32 call at
	// n = 16384).
	bwdFlush = 4096
	// bwdDQChunks is how many pieces a worker adds its partial dQ in,
	// each under its own lock.
	bwdDQChunks = 16
)

// bwdQueryTileFor returns the query tile height for elements of size
// bytes: bwdQueryTile rows in float32, half in float64. dK += dS^T Q and
// dV += P^T dO sum over the tile's rows, so each microkernel call that
// adds to a block of dK or dV takes that many steps, and the call's fixed
// cost (about 110 cycles: the loads and stores of its block, the call) is
// spread over them: float32 with 192 rows ran 1-2.5% faster than with 96
// at d = 64 and 128 (n = 16384, calls alternating in one process).
// float64 did not (its score tiles would be twice the size in L2).
func bwdQueryTileFor(size int) int {
	if size > 4 {
		return bwdQueryTile / 2
	}
	return bwdQueryTile
}

// bwdKeyTileFor returns the key tile width for elements of size bytes,
// head dimensions d and e and query tiles of qt rows, on a CPU whose L2
// holds l2 bytes (0: unknown): 256 keys, or 128 where that bounds a
// worker's operands better.
//
// A key tile's operands (the keys, packed and as they are, the packed
// values, dK, dV and the two score tiles: bwdTileBytes) take about
// cols (3d + 2e) + 2 qt cols elements. Keys and values of more than 2 KiB
// take 128 keys: no wider tile has been measured for such heads. The
// limit was 1 KiB, from a loaded Intel Xeon with AMX on which float64 at
// d = 128 ran about 5% faster on 128 keys; on an idle AMD Zen 5 (1 MiB
// L2) 256 keys gave that row's backward / forward ratio
// (BenchmarkBackwardRatio, n = 16384, median pair) 2.39-2.42 against
// 2.47-2.59 in five alternating runs each, although its operands then
// exceed L2; float32 at d = 256 (n = 4096, best of 8 backward calls,
// timed once outside the benchmarks, three alternating runs) took 130-133
// ms against 134-136.
//
// Where a 256-key tile's operands exceed three quarters of the L2 and a
// 128-key tile's fit in half of it, 128 keys: on the Xeon with AMX (2 MiB
// L2), whole backward calls alternating in one process took 0-5.1% less
// time at best and 0.7-3.9% on the median with 128 keys in five runs
// (float64, d = 128, n = 16384: 1.73 MB against 0.88 MB) and 2.6-2.8% and
// 2.1-2.4% in two (float32, d = 256, n = 4096), while float32 at d = 128
// (1.07 MB, within three quarters) took 0.1-1.8% more with 128. On the
// Zen 5 the 128-key tiles of those three shapes exceed half its L2, so
// they keep 256, the width its runs were measured with.
func bwdKeyTileFor(size, d, e, qt, l2 int) int {
	if size*(d+e) > 2048 {
		return bwdKeyTile / 2
	}
	if l2 > 0 && bwdTileBytes(size, d, e, qt, bwdKeyTile) > l2*3/4 && bwdTileBytes(size, d, e, qt, bwdKeyTile/2) <= l2/2 {
		return bwdKeyTile / 2
	}
	return bwdKeyTile
}

// bwdTileBytes is the size of a worker's operands for a tile of qt
// queries and kt keys: the keys packed and as they are, the packed
// values, dK and dV, and the two score tiles.
func bwdTileBytes(size, d, e, qt, kt int) int {
	return size * (kt*(3*d+2*e) + 2*qt*(kt+bwdStridePad))
}

// BackwardFlops is the conventional count of the backward pass: five
// products per valid (query, key) pair, S = Q K^T, dP = dO V^T, dV = P^T dO,
// dK = dS^T Q and dQ = dS K, i.e. 2 (3d + 2e) flops per pair.
func BackwardFlops[T attn.Float](p *attn.Problem[T]) float64 {
	return Flops(p) * float64(3*p.D+2*p.E) / float64(p.D+p.E)
}

// Backward32 computes the gradients of a loss with respect to Q, K and V
// from dO, the loss gradient with respect to the output, given the output
// O and log-sum-exp of the forward pass on p. Masked keys (padding, causal)
// get zero gradients, and rows with no valid key contribute nothing.
//
// 16-bit keys and values are widened to float32 once (the keys are
// centred as the forward centres them); dK and dV are float32.
func (m Method) Backward32(ctx context.Context, p *attn.Problem[float32], out *attn.Output[float32], dO []float32, g *attn.Gradients[float32]) (attn.Stats, error) {
	wp, release := widened(p, m.Workers)
	defer release()
	return centredBackward(ctx, m.Workers, wp, out, dO, g, opsFor[float32]())
}

// Backward64 is Backward32 for float64.
func (m Method) Backward64(ctx context.Context, p *attn.Problem[float64], out *attn.Output[float64], dO []float64, g *attn.Gradients[float64]) (attn.Stats, error) {
	return centredBackward(ctx, m.Workers, p, out, dO, g, opsFor[float64]())
}

// bwdShared is what every worker of one backward call reads or adds to.
type bwdShared[T attn.Float] struct {
	p     *attn.Problem[T]
	lse   []float64
	delta []float64 // Heads*N: dO_i . O_i
	dO    []T
	g     *attn.Gradients[T]
	k     ops[T]
	// dqMu guards g.DQ: bwdDQChunks locks per key/value head, one per
	// chunk of its group's rows; dqSet[c] is whether chunk c holds a sum
	// yet (the first worker to finish the head sets it, the others add).
	dqMu  []sync.Mutex
	dqSet []bool
	// queryTile and keyTile are the tile sizes (bwdQueryTileFor,
	// bwdKeyTileFor), stride the score tiles' row stride.
	queryTile, keyTile, stride int
	// inPlaceScores is scoresInPlace(p): S from keys read in place, as
	// the forward's, instead of from the packed key tile.
	inPlaceScores bool
}

// bwdState is one worker's scratch space.
type bwdState[T attn.Float] struct {
	s, ds  []T // queryTile x keyTile: S then P; dP then dS
	dk, dv []T // keyTile x d, keyTile x e: the key tile's dK and dV
	// dk64, dv64 are where float32 partial sums of dk and dv move to,
	// in the same layout; for float64 dk and dv are the sums.
	dk64, dv64 []float64
	row        []float64 // keyTile: one row of exponents in float64 (float32 only)
	// kp and vp are the key tile and value tile packed for S = Q K^T and
	// dP = dO V^T (nil for element types the kernels do not take).
	kp, vp packer[T]

	head int // key/value head whose group's dQ is in dq (and dq64), or -1
	// dq is this worker's partial dQ of the group (G*N x d), the sum over
	// its key tiles. For float32 it sums at most bwdFlush keys and then
	// moves to dq64, as dK and dV do: each row block of the key tile
	// flushDQ marks adds its rows to dq64 right after its dQ product,
	// while they are in L1 (a pass over the whole buffer, far beyond L2
	// at large n, cost 2-3% of the call).
	dq   []T
	dq64 []float64
	// dqKeys is how many keys dq sums since the last flush.
	dqKeys int
	// flushDQ is set while the worker walks the key tile after which dq
	// could exceed bwdFlush keys.
	flushDQ bool
	isFloat bool // T is float32: partial sums go through dq64
	first   int  // the chunk of dQ (see bwdDQChunks) finishHead adds first
	pending int  // query rows summed in dk, dv since the last flush
}

// bwdBuffers are a backward call's buffers, kept for the next call (see
// bwdBuffers32): delta and each worker's state.
type bwdBuffers[T attn.Float] struct {
	delta  []float64
	states []*bwdState[T]
}

// bwdBuffers32 and bwdBuffers64 keep bwdBuffers between calls. A training
// loop calls the backward pass with the same sizes step after step;
// buffers of O(n d) made afresh each time cost their zeroing and page
// faults, a few percent of a call at n = 4096.
var (
	bwdBuffers32 recycler[bwdBuffers[float32]]
	bwdBuffers64 recycler[bwdBuffers[float64]]
)

// resized returns x with length n, reallocated if its capacity is short;
// the contents are unspecified.
func resized[S any](x []S, n int) []S {
	if cap(x) < n {
		return make([]S, n)
	}
	return x[:n]
}

// state returns worker w's state with tiles of qt queries and kt keys
// for head dimensions d and e, the sums of tiles of up to cols keys
// clear, and no head started.
func (b *bwdBuffers[T]) state(w, d, e, qt, kt, cols int, isF32 bool) *bwdState[T] {
	for len(b.states) <= w {
		b.states = append(b.states, &bwdState[T]{kp: newPacker[T](), vp: newPacker[T]()})
	}
	st := b.states[w]
	stride := kt + bwdStridePad
	st.s = resized(st.s, qt*stride)
	st.ds = resized(st.ds, qt*stride)
	// The key tile's sums start clear; each tile leaves them so (a tile
	// cut short by a cancelled call does not, hence clearing here).
	st.dk = resized(st.dk, kt*d)
	st.dv = resized(st.dv, kt*e)
	clear(st.dk[:cols*d])
	clear(st.dv[:cols*e])
	st.head, st.isFloat = -1, isF32
	if isF32 {
		st.row = resized(st.row, kt)
		st.dk64 = resized(st.dk64, d*kt)
		st.dv64 = resized(st.dv64, e*kt)
		clear(st.dk64[:cols*d])
		clear(st.dv64[:cols*e])
	}
	return st
}

// release drops the buffers' references to the caller's data (the
// packers hold the last keys and values they packed).
func (b *bwdBuffers[T]) release() {
	for _, st := range b.states {
		if st.kp != nil {
			st.kp.Reset(0, 0, nil, 0)
			st.vp.Reset(0, 0, nil, 0)
		}
	}
}

// sinkLSE holds the log-sum-exps each sink's weight e^(sink - LSE_i) is
// formed against: out.LSE, unless the keys were shifted (see
// centredBackward).
func backward[T attn.Float](ctx context.Context, workers int, p *attn.Problem[T], out *attn.Output[T], dO []T, g *attn.Gradients[T], k ops[T], sinkLSE []float64) (attn.Stats, error) {
	if err := attn.CheckGradientSizes(p, out, dO, g); err != nil {
		return attn.Stats{}, err
	}
	// dQ, dK and dV are written where the work reaches (below) and
	// cleared elsewhere: clearing them first cost a pass over each.
	clear(g.DSinks)
	kvh, group := p.KVHeadCount(), p.Group()
	sh := &bwdShared[T]{p: p, lse: out.LSE, dO: dO, g: g, k: k, inPlaceScores: scoresInPlace(p),
		dqMu: make([]sync.Mutex, kvh*bwdDQChunks), dqSet: make([]bool, kvh*bwdDQChunks)}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	rec := recyclerFor[T, bwdBuffers[T]](&bwdBuffers32, &bwdBuffers64)
	buf := rec.get()
	if buf == nil {
		buf = new(bwdBuffers[T])
	}
	defer func() {
		buf.release()
		rec.put(buf)
	}()
	sh.prepareQueries(workers, out.O, buf)
	// The sink is a logit whose value is 0: dP = 0, so its gradient is
	// -P_sink Delta_i, summed over the rows it joins.
	for r, s := range sh.delta {
		if g.DSinks == nil {
			break
		}
		if !math.IsInf(sinkLSE[r], -1) {
			h := r / p.N
			g.DSinks[h%len(g.DSinks)] -= math.Exp(p.Sink(h)-sinkLSE[r]) * s
		}
	}
	// keyLens[kh] is the most keys a query head of group kh attends.
	keyLens := make([]int, kvh)
	for h := range p.Heads {
		keyLens[h/group] = max(keyLens[h/group], p.KeyLen(h))
	}
	// Keys no query sees get zero gradients; keyBlock writes the others.
	for kh, n := range keyLens {
		clear(g.DK[(kh*p.M+n)*p.D : (kh+1)*p.M*p.D])
		clear(g.DV[(kh*p.M+n)*p.E : (kh+1)*p.M*p.E])
	}

	var zero T
	size := int(unsafe.Sizeof(zero))
	kt := bwdKeyTileFor(size, p.D, p.E, bwdQueryTileFor(size), kernels.L2Bytes())
	sh.queryTile, sh.keyTile, sh.stride = bwdQueryTileFor(size), kt, kt+bwdStridePad
	tilesPerHead := (p.M + kt - 1) / kt
	total := kvh * tilesPerHead
	workers = min(workers, total)
	var isF32 bool
	if _, ok := any(T(0)).(float32); ok {
		isF32 = true
	}

	for w := range workers {
		buf.state(w, p.D, p.E, sh.queryTile, kt, min(kt, p.M), isF32).first = w * bwdDQChunks / workers
	}
	var c parallel.Crew
	c.Work = func(w int) {
		st := buf.states[w]
		defer sh.finishHead(st)
		for ctx.Err() == nil {
			t, ok := c.Take(total)
			if !ok {
				return
			}
			kh, j0 := t/tilesPerHead, (t%tilesPerHead)*kt
			if j0 >= keyLens[kh] {
				continue // padding: the gradients stay zero
			}
			if st.head != kh {
				sh.finishHead(st)
				sh.startHead(st, kh)
			}
			sh.keyBlock(ctx, st, kh, j0, min(kt, keyLens[kh]-j0))
		}
	}
	c.Run(workers)
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}
	// Chunks of dQ no worker wrote belong to heads without a valid key.
	rows := group * p.N * p.D
	for x, set := range sh.dqSet {
		if !set {
			kh, c := x/bwdDQChunks, x%bwdDQChunks
			clear(g.DQ[kh*rows+c*rows/bwdDQChunks : kh*rows+(c+1)*rows/bwdDQChunks])
		}
	}
	return attn.Stats{Flops: BackwardFlops(p)}, nil
}

// prepareQueries fills sh.delta from the output o.
func (sh *bwdShared[T]) prepareQueries(workers int, o []T, buf *bwdBuffers[T]) {
	p := sh.p
	const qt = bwdQueryTile
	blocks := (p.N + qt - 1) / qt
	// Every entry of delta is written: no clearing.
	buf.delta = resized(buf.delta, p.Heads*p.N)
	sh.delta = buf.delta
	// One task per block: a single head must keep every worker busy.
	parallel.For(context.Background(), workers, p.Heads*blocks, func(hb int) {
		h, i0 := hb/blocks, hb%blocks*qt
		rows := min(qt, p.N-i0)
		for r := h*p.N + i0; r < h*p.N+i0+rows; r++ {
			var s float64
			for c, v := range o[r*p.E : (r+1)*p.E] {
				s += float64(v) * float64(sh.dO[r*p.E+c])
			}
			sh.delta[r] = s
		}
	})
}

// startHead gives st an empty dQ buffer for the query heads of key/value
// head kh.
func (sh *bwdShared[T]) startHead(st *bwdState[T], kh int) {
	n := sh.p.Group() * sh.p.N * sh.p.D
	// For float32, finishHead leaves all of dq's and dq64's arrays clear
	// (they are made zero, and it drains every head it starts, even when
	// the call is cancelled).
	st.dq = resized(st.dq, n)
	if st.isFloat {
		st.dq64 = resized(st.dq64, n)
	} else {
		clear(st.dq)
	}
	st.head = kh
	st.dqKeys = 0
}

// addTo64 adds src to dst elementwise (as Accumulate32 for float32).
func addTo64[T attn.Float](dst []float64, src []T) {
	if s, ok := any(src).([]float32); ok {
		kernels.Accumulate32(dst, 1, s)
		return
	}
	for x, v := range src {
		dst[x] += float64(v)
	}
}

// finishHead adds st's partial dQ, times the scale, into the shared dQ.
func (sh *bwdShared[T]) finishHead(st *bwdState[T]) {
	h := st.head
	if h < 0 {
		return
	}
	st.head = -1
	p := sh.p
	rows := p.Group() * p.N
	dst := sh.g.DQ[h*rows*p.D : (h+1)*rows*p.D]
	// Workers start at different chunks: those finishing together (at
	// the end of the call) add in parallel instead of in turn.
	for c := range bwdDQChunks {
		c = (c + st.first) % bwdDQChunks
		lo, hi := c*len(dst)/bwdDQChunks, (c+1)*len(dst)/bwdDQChunks
		mu := &sh.dqMu[h*bwdDQChunks+c]
		mu.Lock()
		set := sh.dqSet[h*bwdDQChunks+c]
		sh.dqSet[h*bwdDQChunks+c] = true
		out := dst[lo:hi]
		if st.isFloat {
			// The float32 partial sums not flushed yet are added here,
			// and both parts cleared for the next head.
			kernels.DrainScaled32(any(out).([]float32), set, p.Scale, st.dq64[lo:hi][:len(out)], any(st.dq[lo:hi][:len(out)]).([]float32))
		} else {
			sum := st.dq[lo:hi][:len(out)]
			if set {
				for x, v := range sum {
					out[x] = T(float64(out[x]) + p.Scale*float64(v))
				}
			} else {
				for x, v := range sum {
					out[x] = T(p.Scale * float64(v))
				}
			}
		}
		mu.Unlock()
	}
	st.dqKeys = 0
}

// keyBlock computes dK and dV of keys j0..j0+cols-1 of key/value head kh,
// which are complete when it returns, walking the query rows of every
// query head of its group that see them, and adds the key tile's share of
// the group's dQ to st.dq.
func (sh *bwdShared[T]) keyBlock(ctx context.Context, st *bwdState[T], kh, j0, cols int) {
	p := sh.p
	d, e := p.D, p.E
	// dk, dv (and dk64, dv64) are clear: state made them so, and every
	// tile drains what it used (below).
	if st.kp != nil {
		// The tile's keys and values are read by every query tile of the
		// group: lay them out for the microkernels once (the keys only
		// where the forward's scores came from packed keys too).
		if !sh.inPlaceScores {
			st.kp.Reset(cols, d, p.K[(kh*p.M+j0)*d:], d)
			st.kp.Pack(0, cols)
		}
		st.vp.Reset(cols, e, p.V[(kh*p.M+j0)*e:], e)
		st.vp.Pack(0, cols)
	}
	st.pending = 0
	// Flush dQ's float32 sums with this tile if the next one could take
	// them past bwdFlush keys. A row this tile does not see keeps its sum
	// until finishHead, and no later tile of the head adds to it: a worker
	// takes a head's key tiles in order, and the rows that see a tile
	// move down as the tile moves right (key ranges are nondecreasing in
	// the row), so the rows before this tile's first are past every later
	// tile's, and a row after its last sees no tile before it.
	st.dqKeys += cols
	st.flushDQ = st.isFloat && st.dqKeys+sh.keyTile > bwdFlush
	g := p.Group()
	for h := kh * g; h < (kh+1)*g; h++ {
		// Key ranges move right with i: rows first..last-1 may see the
		// tile.
		first := sort.Search(p.N, func(i int) bool { _, hi := p.KeyRange(h, i); return hi > j0 })
		last := sort.Search(p.N, func(i int) bool { lo, _ := p.KeyRange(h, i); return lo >= j0+cols })
		if first < last && !sh.queryRows(ctx, st, h, first, last, j0, cols) {
			return
		}
	}
	st.pending = 0
	if st.flushDQ {
		st.dqKeys = 0
	}
	// Keys of this tile belong to this task alone: write them out (for
	// float32, with the partial sums since the last flush added on the
	// way).
	gk := sh.g.DK[(kh*p.M+j0)*d : (kh*p.M+j0+cols)*d]
	gv := sh.g.DV[(kh*p.M+j0)*e : (kh*p.M+j0+cols)*e]
	if st.isFloat {
		kernels.DrainScaled32(any(gk).([]float32), false, p.Scale, st.dk64[:len(gk)], any(st.dk[:len(gk)]).([]float32))
		kernels.DrainScaled32(any(gv).([]float32), false, 1, st.dv64[:len(gv)], any(st.dv[:len(gv)]).([]float32))
		return
	}
	writeScaled(gk, st.dk[:len(gk)], p.Scale)
	writeScaled(gv, st.dv[:len(gv)], 1)
}

// writeScaled sets dst[x] = scale*src[x] and clears src.
func writeScaled[T attn.Float](dst, src []T, scale float64) {
	for x, v := range src {
		dst[x] = T(scale * float64(v))
	}
	clear(src)
}

// flushKV moves the float32 partial sums of dK and dV to float64 (for
// float64 they are the sums already).
func (sh *bwdShared[T]) flushKV(st *bwdState[T], cols int) {
	st.pending = 0
	if !st.isFloat {
		return
	}
	d, e := sh.p.D, sh.p.E
	dk, dv := st.dk[:cols*d], st.dv[:cols*e]
	addTo64(st.dk64[:cols*d], dk)
	addTo64(st.dv64[:cols*e], dv)
	clear(dk)
	clear(dv)
}

// queryRows adds the contributions of rows first..last-1 of query head h
// to the key tile's dK and dV and to the group's dQ. It returns false if
// ctx was cancelled.
func (sh *bwdShared[T]) queryRows(ctx context.Context, st *bwdState[T], h, first, last, j0, cols int) bool {
	p := sh.p
	d, e := p.D, p.E
	kh := p.KVHead(h)
	local := (h - kh*p.Group()) * p.N // h's first row in the group's dQ
	qt := sh.queryTile
	kernels.PrefetchL2(st.nextDQ((local+first)*d, bwdRowBlock*d))
	for i0, n := first, 0; i0 < last; i0, n = i0+qt, n+1 {
		if n%cancelCheckTiles == cancelCheckTiles-1 && ctx.Err() != nil {
			return false
		}
		rows := min(qt, last-i0)
		q := p.Q[(h*p.N+i0)*d:]
		do := sh.dO[(h*p.N+i0)*e:]
		ls := sh.stride
		// S, dP, the softmax step and dQ run on blocks of bwdRowBlock rows,
		// whose scores stay in L1 from one step to the next (as the
		// forward does); dK and dV, whose products sum over the rows, take
		// the whole tile.
		for r0 := 0; r0 < rows; r0 += bwdRowBlock {
			sh.rowBlock(st, h, i0+r0, min(bwdRowBlock, rows-r0), j0, cols, q[r0*d:], do[r0*e:], st.s[r0*ls:], st.ds[r0*ls:], local)
		}
		// dV += P^T dO, dK += dS^T Q, on the query rows the blocks above
		// brought into cache, for the keys those rows see.
		sh.addKV(st, h, i0, rows, j0, cols, q, do)
		// Flush before the next tile could take the float32 sums past
		// bwdFlush rows (flushing once they reached it let them sum 1056).
		if st.pending += rows; st.pending+qt > bwdFlush {
			sh.flushKV(st, cols)
		}
	}
	return true
}

// addKV adds dS^T Q to st.dk and P^T dO to st.dv for rows i0..i0+rows-1
// of head h against the key tile at j0, for the keys those rows see: in
// one product each where every row block sees the same keys, else (on a
// causal diagonal or at a window's edges) block by block, each on its
// own keys. Block by block there took 0.970-0.990 of the time of causal
// float32 backward calls at n = 2048 and 4096 (8 heads, d = 64 and 128)
// and 0.983-0.987 with a 1024-key window (d = 128; calls alternating in
// one process, best and median pair, on an AMD Zen 4).
func (sh *bwdShared[T]) addKV(st *bwdState[T], h, i0, rows, j0, cols int, q, do []T) {
	d, e := sh.p.D, sh.p.E
	ls := sh.stride
	c0, c1 := sh.seenCols(h, i0, rows, j0, cols)
	last := (rows - 1) / bwdRowBlock * bwdRowBlock
	_, first1 := sh.seenCols(h, i0, min(bwdRowBlock, rows), j0, cols)
	last0, _ := sh.seenCols(h, i0+last, rows-last, j0, cols)
	step := rows
	if first1 != c1 || last0 != c0 {
		step = bwdRowBlock
	}
	for r0 := 0; r0 < rows; r0 += step {
		n := min(step, rows-r0)
		b0, b1 := c0, c1
		if step < rows {
			b0, b1 = sh.seenCols(h, i0+r0, n, j0, cols)
		}
		sh.k.gemmTN(b1-b0, e, n, st.s[r0*ls+b0:], ls, do[r0*e:], e, st.dv[b0*e:b1*e], e)
		sh.k.gemmTN(b1-b0, d, n, st.ds[r0*ls+b0:], ls, q[r0*d:], d, st.dk[b0*d:b1*d], d)
	}
}

// rowBlock computes S, P, dP and dS of query rows i0..i0+rows-1 of head h
// against the key tile at j0 into s and ds (row stride sh.stride), and
// adds dS K to their dQ; q and do are their queries and output gradients.
func (sh *bwdShared[T]) rowBlock(st *bwdState[T], h, i0, rows, j0, cols int, q, do, s, ds []T, local int) {
	p, k := sh.p, sh.k
	d, e := p.D, p.E
	kh := p.KVHead(h)
	keys := p.K[(kh*p.M+j0)*d:]
	ls := sh.stride
	// The block's rows of the worker's dQ are read and written at the end
	// of the block, and lie in a buffer of the whole head (beyond L2 at
	// large n): the block before prefetched them (see nextDQ).
	lo, hi := (local+i0)*d, (local+i0+rows)*d
	dqRows := st.dq[lo:hi]
	// The flush at the end of the block reads their float64 sums too,
	// which the dP product prefetched (below); all at once here they made
	// the backward 1-2.5% slower (fill buffers again).
	//
	// On a causal diagonal or at a window's edges the block's rows see
	// only keys c0..c1-1 of the tile: the products skip the others, which
	// the softmax step below sets to zero, as the forward's blocks do.
	c0, c1 := sh.seenCols(h, i0, rows, j0, cols)
	if st.kp != nil {
		if sh.inPlaceScores {
			// The forward read these keys in place (scoresInPlace), and
			// so do these scores: every one rounded as there. The rows,
			// at most a group's, are few enough for GemmNT to read the
			// keys in place too.
			kernels.PrefetchL2(st.nextDQ(hi, rows*d))
			k.gemmNT(rows, c1-c0, d, q, d, keys[c0*d:], d, s[c0:], ls)
		} else {
			st.kp.GemmNTNext(rows, c0, c1-c0, q, d, s[c0:], ls, st.nextDQ(hi, rows*d))
		}
		// The next block's queries come into L2 during dP, or on a tile
		// that flushes dQ the next block's float64 dQ rows, which the
		// hardware's prefetcher would bring late (it saw them last
		// bwdFlush keys ago): the flush then took a quarter less time.
		next := q[min(rows*d, len(q)):min(2*rows*d, len(q))]
		if st.flushDQ {
			next = st.nextDQ64(hi, rows*d)
		}
		st.vp.GemmNTNext(rows, c0, c1-c0, do, e, ds[c0:], ls, next)
	} else {
		vals := p.V[(kh*p.M+j0)*e:]
		kernels.PrefetchL2(st.nextDQ(hi, rows*d))
		k.gemmNT(rows, c1-c0, d, q, d, keys[c0*d:], d, s[c0:], ls)
		k.gemmNT(rows, c1-c0, e, do, e, vals[c0*e:], e, ds[c0:], ls)
	}
	// P and dS: the whole block in one kernel call when it can, else row
	// by row.
	perRow := rows
	if sh.softmaxGradBlock(h, i0, rows, j0, cols, s, ds) {
		perRow = 0
	}
	for r := range perRow {
		i := i0 + r
		sRow, dsRow := s[r*ls:r*ls+cols], ds[r*ls:r*ls+cols]
		lo, hi := p.KeyRange(h, i)
		a, b := min(max(lo-j0, 0), cols), min(max(hi-j0, 0), cols)
		lse := sh.lse[h*p.N+i]
		if a >= b || math.IsInf(lse, -1) {
			clear(sRow)
			clear(dsRow)
			continue
		}
		delta := sh.delta[h*p.N+i]
		if p.Mask != nil || !softmaxGradRow(sRow[a:b], dsRow[a:b], p.Scale, lse, delta) {
			pr := sh.expRow(st, sRow[a:b], lse, h, i, j0+a)
			for j, pj := range pr {
				sRow[a+j] = T(pj)
				dsRow[a+j] = T(pj * (float64(dsRow[a+j]) - delta))
			}
		}
		clear(sRow[:a])
		clear(dsRow[:a])
		clear(sRow[b:])
		clear(dsRow[b:])
	}
	// dQ += dS K, bringing the next block's output gradients into L2.
	nextDo := do[min(rows*e, len(do)):min(2*rows*e, len(do))]
	k.gemmNNNext(rows, d, c1-c0, ds[c0:], ls, keys[c0*d:], d, dqRows, d, nextDo)
	if st.flushDQ {
		addTo64(st.dq64[lo:hi], dqRows)
		clear(dqRows)
	}
}

// seenCols returns the columns c0..c1-1 of the key tile at j0 (cols keys
// wide) that rows i0..i0+rows-1 of head h may see: from the first row's
// first key, rounded down to keyAlign (where packed panels start), to the
// last row's last (key ranges move right with the row); the whole tile if
// that range is empty. Skipping the rest took 0.93-0.97 of the time of
// causal backward calls at n = 2048 and 4096 (8 heads) and 0.89 with a
// window of 1024 keys (float32, d = 128, calls alternating in one
// process, on an AMD Zen 4).
func (sh *bwdShared[T]) seenCols(h, i0, rows, j0, cols int) (c0, c1 int) {
	lo, _ := sh.p.KeyRange(h, i0)
	_, hi := sh.p.KeyRange(h, i0+rows-1)
	c0 = min(max(lo-j0, 0), cols) / keyAlign * keyAlign
	c1 = min(max(hi-j0, 0), cols)
	if c1 <= c0 {
		return 0, cols
	}
	return c0, c1
}

// nextDQ returns n entries of the worker's dQ from entry x on: the rows
// the next row block's dQ product adds to, which the block before
// prefetches into L2 during its S product (a few lines between the
// kernel's strips), a block ahead of their use. Prefetched during the
// block's own S they left the dQ product 11-26% slower than dK's and
// dV's at n = 16384; all at once as the block before ended, the prefetch
// instructions stalled for want of fill buffers (2.4% of the samples of
// a profile), and the backward took 1.5-3.5% longer than now (calls
// alternating in one process, d = 64 and 128).
func (st *bwdState[T]) nextDQ(x, n int) []T {
	return st.dq[min(x, len(st.dq)):min(x+n, len(st.dq))]
}

// nextDQ64 returns the worker's float64 dQ entries x..x+n-1 as a []T over
// the same memory, for a product's prefetch of the next row block's rows
// before a flush (kernels prefetch bytes, whatever their type); nil for
// float64, which keeps no float64 copy.
func (st *bwdState[T]) nextDQ64(x, n int) []T {
	lo, hi := min(x, len(st.dq64)), min(x+n, len(st.dq64))
	if lo == hi {
		return nil
	}
	var zero T
	return unsafe.Slice((*T)(unsafe.Pointer(&st.dq64[lo])), (hi-lo)*8/int(unsafe.Sizeof(zero)))
}

// softmaxGradBlock is the row loop above in one kernel call
// (kernels.SoftmaxGradRows32) for a float32 block of rows i0..i0+rows-1
// without a mask tensor, whose rows all see the whole key tile and have a
// finite log-sum-exp; it reports whether it ran. KeyRange's ends are
// non-decreasing in the row, so the last row's start and the first row's
// end decide the first condition.
func (sh *bwdShared[T]) softmaxGradBlock(h, i0, rows, j0, cols int, s, ds []T) bool {
	p := sh.p
	s32, ok := any(s).([]float32)
	if !ok || p.Mask != nil {
		return false
	}
	if lo, _ := p.KeyRange(h, i0+rows-1); lo > j0 {
		return false
	}
	if _, hi := p.KeyRange(h, i0); hi < j0+cols {
		return false
	}
	at := h*p.N + i0
	lse := sh.lse[at : at+rows]
	for _, v := range lse {
		if math.IsInf(v, 0) || math.IsNaN(v) {
			return false
		}
	}
	kernels.SoftmaxGradRows32(s32, any(ds).([]float32), sh.stride, rows, cols, p.Scale, lse, sh.delta[at:at+rows])
	return true
}

// softmaxGradRow is the loop above in one kernel call for float32 and
// float64 rows without a mask: P_ij into s, dS_ij = P_ij (dP_ij - delta_i)
// into ds. For float64 the results are the loop's, bit for bit; for
// float32 the exponential is kernels.SoftmaxGradRow32's, in base 2 from
// an argument formed with float32 FMAs on hi/lo splits of s log2 e and
// LSE log2 e (exact to about 2^-24 for weights P >= e^(-|LSE|), as good
// as the argument rounded to float32 below them, whatever the
// log-sum-exp; the same bits as the block call),
// and dS is formed in float32 (as FlashAttention forms it). It reports
// false for element types the kernels do not take.
func softmaxGradRow[T attn.Float](s, ds []T, scale, lse, delta float64) bool {
	switch s := any(s).(type) {
	case []float32:
		kernels.SoftmaxGradRow32(s, any(ds).([]float32), scale, lse, delta)
		return true
	case []float64:
		kernels.SoftmaxGradRow64(s, any(ds).([]float64), scale, lse, delta)
		return true
	}
	return false
}

// expRow returns P_ij = exp(scale x_j + mask_ij - lse) for the scores x
// of row i of head h, whose first is key j0, in float64. For float64 the
// row is overwritten in place; for float32 the exponent is formed in
// float64 in st.row.
func (sh *bwdShared[T]) expRow(st *bwdState[T], x []T, lse float64, h, i, j0 int) []float64 {
	y, ok := any(x).([]float64)
	if !ok {
		y = st.row[:len(x)]
		for j, v := range x {
			y[j] = float64(v)
		}
	}
	if m := sh.p.Mask; m != nil {
		applyMask(m, y, h, i, j0, 0, len(y), sh.p.Scale)
	}
	kernels.ExpShiftSum64(y, sh.p.Scale, lse)
	return y
}
