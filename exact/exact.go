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
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/kernels"
)

// Tile sizes. A tile of scores is queryTile x keyTile values; with the
// query tile and a tile of keys and of values it stays in L2 (about 220 KB
// in float32 at d = 64), and each K and V tile brought into cache is used
// by queryTile rows. queryTile is a multiple of the microkernels' 6 and 12
// rows; keyTile is a multiple of every panel width (kernels.PackedNT.Align)
// and of the GEMM's k block, so a tile of P V is one pass of the kernels.
const (
	queryTile = 72
	keyTile   = 256

	// scoreStride is the row stride of the score tile: keyTile plus a
	// little, so that float64 rows (2 KiB at keyTile = 256) do not all map
	// to the same L1 sets when the P V product reads down a column.
	scoreStride = keyTile + 16
)

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

// packRows is how many keys one packing task lays out.
const packRows = 1024

// Method is exact attention. Its zero value is ready to use.
type Method struct {
	// Workers caps the goroutines used; 0 means GOMAXPROCS.
	Workers int
}

// Name returns "exact".
func (Method) Name() string { return "exact" }

// Forward32 computes float32 attention; scores and exponentials are float32
// within a tile, while row sums and outputs accumulate across tiles in
// float64 so long key sequences do not drift.
func (m Method) Forward32(ctx context.Context, p *attn.Problem[float32], out *attn.Output[float32]) (attn.Stats, error) {
	return forward(ctx, m.Workers, p, out, ops[float32]{kernels.GemmNT32, kernels.GemmNN32, kernels.ExpShiftSum32, kernels.Max32})
}

// Forward64 computes float64 attention.
func (m Method) Forward64(ctx context.Context, p *attn.Problem[float64], out *attn.Output[float64]) (attn.Stats, error) {
	return forward(ctx, m.Workers, p, out, ops[float64]{kernels.GemmNT64, kernels.GemmNN64, kernels.ExpShiftSum64, kernels.Max64})
}

// Flops is the conventional count for exact attention, 2nmd for Q K^T and
// 2nme for P V, over the entries the masks leave. It is what GFLOP/s figures
// in reports and benchmarks are based on.
func Flops[T attn.Float](p *attn.Problem[T]) float64 {
	var pairs float64
	for h := range p.Heads {
		for i := range p.N {
			pairs += float64(p.KeyLimit(h, i))
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
}

// packer is kernels.PackedNT for one element type: a head's keys laid out
// once for every query tile's Q K^T.
type packer[T attn.Float] interface {
	Reset(n, k int, b []T, ldb int)
	Pack(j0, j1 int)
	GemmNT(m, j0, nb int, a []T, lda int, c []T, ldc int)
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
	pv     []T       // queryTile x e, P V of the current key tile (float32)
	acc    []float64 // queryTile x e, output accumulated over key tiles
	rowMax []float64 // running max of the scaled logits
	rowSum []float64 // running sum of exp(logit - rowMax)
	alpha  []float64 // this tile's rescaling of acc, per row
}

func newTileState[T attn.Float](e int) *tileState[T] {
	return &tileState[T]{
		scores: make([]T, queryTile*scoreStride),
		pv:     make([]T, queryTile*e),
		acc:    make([]float64, queryTile*e),
		rowMax: make([]float64, queryTile),
		rowSum: make([]float64, queryTile),
		alpha:  make([]float64, queryTile),
	}
}

// partial is one split-K chunk's result for a query tile: what tileState
// holds at the end of the chunk.
type partial struct {
	acc            []float64 // rows x e
	rowMax, rowSum []float64
}

// plan is how forward divides a problem.
type plan struct {
	tiles   int  // query tiles per head
	chunks  int  // split-K chunks per query tile (1: no split)
	pack    bool // pack each head's keys once
	workers int
}

func makePlan[T attn.Float](p *attn.Problem[T], workers int) plan {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	pl := plan{tiles: (p.N + queryTile - 1) / queryTile, chunks: 1, workers: workers}
	pl.pack = pl.tiles >= 2 && newPacker[T]() != nil
	units := p.Heads * pl.tiles
	if workers > 1 && units < splitTarget*workers {
		maxKeys := 0
		for h := range p.Heads {
			maxKeys = max(maxKeys, p.KeyLen(h))
		}
		want := (splitTarget*workers + units - 1) / units
		pl.chunks = max(1, min(want, maxKeys/splitMinKeys))
	}
	return pl
}

// parallel runs f(state, t) for t = 0..total-1 on up to len(states)
// goroutines, each with its own state, handing out tasks in order. It
// stops handing out tasks once ctx is cancelled.
func parallel[S any](ctx context.Context, states []S, total int, f func(s S, t int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for _, s := range states[:min(len(states), total)] {
		wg.Go(func() {
			for ctx.Err() == nil {
				t := int(next.Add(1) - 1)
				if t >= total {
					return
				}
				f(s, t)
			}
		})
	}
	wg.Wait()
}

func forward[T attn.Float](ctx context.Context, workers int, p *attn.Problem[T], out *attn.Output[T], k ops[T]) (attn.Stats, error) {
	pl := makePlan(p, workers)
	d, e := p.D, p.E
	states := make([]*tileState[T], min(pl.workers, p.Heads*pl.tiles*pl.chunks))
	for i := range states {
		states[i] = newTileState[T](e)
	}

	// Heads go in groups whose packed keys fit packBudget.
	group := p.Heads
	var packed []packer[T]
	if pl.pack {
		var zero T
		headBytes := p.M * d * int(unsafe.Sizeof(zero))
		group = max(1, min(p.Heads, packBudget/max(headBytes, 1)))
		packed = make([]packer[T], group)
		for i := range packed {
			packed[i] = newPacker[T]()
		}
	}
	var parts []partial
	if pl.chunks > 1 {
		parts = make([]partial, group*pl.tiles*pl.chunks)
		for i := range parts {
			parts[i] = partial{acc: make([]float64, queryTile*e), rowMax: make([]float64, queryTile), rowSum: make([]float64, queryTile)}
		}
	}

	for h0 := 0; h0 < p.Heads && ctx.Err() == nil; h0 += group {
		h1 := min(h0+group, p.Heads)
		if pl.pack {
			// Pack every head of the group, packRows keys per task.
			type job struct{ h, j0, j1 int }
			var jobs []job
			for h := h0; h < h1; h++ {
				pk := packed[h-h0]
				l := p.KeyLen(h)
				pk.Reset(l, d, p.K[h*p.M*d:h*p.M*d+l*d], d)
				for j := 0; j < l; j += packRows {
					jobs = append(jobs, job{h, j, min(j+packRows, l)})
				}
			}
			parallel(ctx, states, len(jobs), func(_ *tileState[T], t int) {
				jb := jobs[t]
				packed[jb.h-h0].Pack(jb.j0, jb.j1)
			})
		}
		// Tasks are (head, query tile, chunk). Causal tiles further down
		// see more keys: hand those out first so the short ones fill in.
		perHead := pl.tiles * pl.chunks
		parallel(ctx, states, (h1-h0)*perHead, func(st *tileState[T], t int) {
			h := h0 + t/perHead
			ti, c := (t%perHead)/pl.chunks, t%pl.chunks
			if p.Causal {
				ti = pl.tiles - 1 - ti
			}
			i0 := ti * queryTile
			rows := min(queryTile, p.N-i0)
			var pk packer[T]
			if pl.pack {
				pk = packed[h-h0]
			}
			// The last row of the tile has the longest prefix of keys.
			limit := p.KeyLimit(h, i0+rows-1)
			ja, jb := 0, limit
			if pl.chunks > 1 {
				size := ((limit+pl.chunks-1)/pl.chunks + keyTile - 1) / keyTile * keyTile
				ja, jb = min(c*size, limit), min((c+1)*size, limit)
			}
			attend(ctx, p, k, st, pk, h, i0, rows, ja, jb)
			if pl.chunks == 1 {
				finish(p, out, st.acc, st.rowMax, st.rowSum, h, i0, rows)
				return
			}
			pt := &parts[t]
			copy(pt.acc, st.acc[:rows*e])
			copy(pt.rowMax, st.rowMax[:rows])
			copy(pt.rowSum, st.rowSum[:rows])
		})
		if pl.chunks > 1 && ctx.Err() == nil {
			for t := 0; t < (h1-h0)*perHead; t += pl.chunks {
				h := h0 + t/perHead
				ti := (t % perHead) / pl.chunks
				if p.Causal {
					ti = pl.tiles - 1 - ti
				}
				i0 := ti * queryTile
				merge(p, out, states[0], parts[t:t+pl.chunks], h, i0, min(queryTile, p.N-i0))
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}
	if err := checkOverflow(out); err != nil {
		return attn.Stats{}, err
	}
	return attn.Stats{Flops: Flops(p)}, nil
}

// cancelCheckTiles is how many key tiles a worker processes between looks
// at its context, so one long row of keys still stops promptly.
const cancelCheckTiles = 64

// attend runs the online softmax of rows i0..i0+rows-1 of head h over keys
// ja <= j < jb (ja a multiple of keyTile), leaving in st the row max and
// row sum of the scaled logits and the unnormalised output sum_j
// exp(logit_j - rowMax) v_j. Keys past a row's KeyLimit are skipped. pk,
// when not nil, holds the head's packed keys. On cancellation it returns
// early, leaving st unspecified.
func attend[T attn.Float](ctx context.Context, p *attn.Problem[T], k ops[T], st *tileState[T], pk packer[T], h, i0, rows, ja, jb int) {
	d, e := p.D, p.E
	q := p.Q[(h*p.N+i0)*d:]
	keys := p.K[h*p.M*d:]
	vals := p.V[h*p.M*e:]
	acc := st.acc[:rows*e]
	clear(acc)
	// For float64 the P V product accumulates straight into acc.
	acc64, direct := any(acc).([]T)
	for r := range rows {
		st.rowMax[r] = math.Inf(-1)
		st.rowSum[r] = 0
	}
	// Key limits grow with the row (causal) or are equal: only tiles past
	// the first row's limit need masking.
	firstLimit := p.KeyLimit(h, i0)
	for j0, n := ja, 0; j0 < jb; j0, n = j0+keyTile, n+1 {
		if n%cancelCheckTiles == cancelCheckTiles-1 && ctx.Err() != nil {
			return
		}
		cols := min(keyTile, jb-j0)
		s := st.scores[:(rows-1)*scoreStride+cols]
		if pk != nil {
			pk.GemmNT(rows, j0, cols, q, d, s, scoreStride)
		} else {
			k.gemmNT(rows, cols, d, q, d, keys[j0*d:], d, s, scoreStride)
		}
		// Rows whose keys all lie past this tile (causal, padding) are
		// cleared; they must not feed P V.
		masked := j0+cols > firstLimit
		for r := range rows {
			row := s[r*scoreStride : r*scoreStride+cols]
			valid := cols
			if masked {
				valid = min(max(p.KeyLimit(h, i0+r)-j0, 0), cols)
				clear(row[valid:])
			}
			st.alpha[r] = 1
			if valid == 0 {
				continue
			}
			// scale > 0, so the largest scaled logit is scale times the
			// largest dot product. It is rounded exactly as the exp kernel
			// rounds T(scale)*x, so the largest entry's exponent is exactly 0
			// and the row sum is at least 1, whatever the logits' size.
			tileMax := float64(T(T(p.Scale) * k.max(row[:valid])))
			if tileMax > st.rowMax[r] {
				alpha := math.Exp(st.rowMax[r] - tileMax) // 0 on the first tile
				st.alpha[r] = alpha
				st.rowSum[r] *= alpha
				st.rowMax[r] = tileMax
			}
			st.rowSum[r] += float64(k.expShift(row[:valid], T(p.Scale), T(st.rowMax[r])))
		}
		if direct {
			for r := range rows {
				if a := st.alpha[r]; a != 1 {
					scaleRow(acc[r*e:(r+1)*e], a)
				}
			}
			k.gemmNN(rows, e, cols, s, scoreStride, vals[j0*e:], e, acc64, e)
			continue
		}
		pv := st.pv[:rows*e]
		clear(pv)
		k.gemmNN(rows, e, cols, s, scoreStride, vals[j0*e:], e, pv, e)
		pv32, is32 := any(pv).([]float32)
		if is32 && allOne(st.alpha[:rows]) {
			// No row's max moved: one call for the whole tile.
			kernels.Accumulate32(acc, 1, pv32)
			continue
		}
		for r := range rows {
			a, alpha := acc[r*e:(r+1)*e], st.alpha[r]
			if is32 {
				kernels.Accumulate32(a, alpha, pv32[r*e:(r+1)*e])
				continue
			}
			for c, v := range pv[r*e : (r+1)*e] {
				a[c] = a[c]*alpha + float64(v)
			}
		}
	}
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

// finish writes rows i0..i0+rows-1 of head h from the accumulated state:
// output acc/rowSum and LSE rowMax + log(rowSum), or a zero row and -Inf
// for a row without keys.
func finish[T attn.Float](p *attn.Problem[T], out *attn.Output[T], acc, rowMax, rowSum []float64, h, i0, rows int) {
	e := p.E
	o := out.O[(h*p.N+i0)*e:]
	lse := out.LSE[h*p.N+i0:]
	for r := range rows {
		if rowSum[r] == 0 {
			clear(o[r*e : (r+1)*e])
			lse[r] = math.Inf(-1)
			continue
		}
		inv := 1 / rowSum[r]
		for c := range e {
			o[r*e+c] = T(acc[r*e+c] * inv)
		}
		lse[r] = rowMax[r] + math.Log(rowSum[r])
	}
}

// merge combines the split-K chunks of one query tile as the online
// softmax combines tiles: with M the largest chunk max, the row sum is
// sum_c s_c exp(m_c - M) and the output sum_c acc_c exp(m_c - M), over the
// chunks that saw any key. st is scratch space.
func merge[T attn.Float](p *attn.Problem[T], out *attn.Output[T], st *tileState[T], parts []partial, h, i0, rows int) {
	e := p.E
	acc := st.acc[:rows*e]
	clear(acc)
	for r := range rows {
		m := math.Inf(-1)
		for _, pt := range parts {
			if pt.rowSum[r] > 0 {
				m = max(m, pt.rowMax[r])
			}
		}
		st.rowMax[r], st.rowSum[r] = m, 0
		a := acc[r*e : (r+1)*e]
		for _, pt := range parts {
			if pt.rowSum[r] == 0 {
				continue
			}
			w := math.Exp(pt.rowMax[r] - m)
			st.rowSum[r] += pt.rowSum[r] * w
			for c, v := range pt.acc[r*e : (r+1)*e] {
				a[c] += v * w
			}
		}
	}
	finish(p, out, acc, st.rowMax, st.rowSum, h, i0, rows)
}

// checkOverflow turns logits beyond the element type's range (a dot
// product that overflowed float32, say) into an error instead of NaN
// outputs: every LSE is finite or -Inf (a row without keys).
func checkOverflow[T attn.Float](out *attn.Output[T]) error {
	for i, l := range out.LSE {
		if math.IsNaN(l) || math.IsInf(l, 1) {
			return fmt.Errorf("%w: the logits of row %d overflow %s (|s q.k| beyond its range); scale the inputs down or use float64", attn.ErrBadProblem, i, typeName[T]())
		}
	}
	return nil
}

func typeName[T attn.Float]() string {
	var x T
	if _, ok := any(x).(float32); ok {
		return "float32"
	}
	return "float64"
}
