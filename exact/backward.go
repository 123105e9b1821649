package exact

import (
	"context"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/kernels"
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
// per-worker buffer for the whole head, added into the shared dQ under a
// lock when the worker moves to another head. Workers take key tiles in
// head order, so each head's dQ receives at most one addition per worker;
// their order varies from run to run, so dQ may differ in its last bits
// between runs (as FlashAttention-2's atomic additions do). Nothing of size
// n x m is ever held: per worker, two bwdQueryTile x bwdKeyTile tiles and
// O(n d) for the head's dQ.
//
// Precision: products within a tile use the element type; every sum across
// tiles (dK and dV over query tiles, dQ over key tiles) is carried in
// float64, flushed from the element type at least every bwdFlush query or
// key rows, as the forward does. In float32 the exponent s q.k - LSE is
// formed in float64, so a large log-sum-exp loses nothing to the rounding
// of the shift.
const (
	bwdQueryTile = 64
	bwdKeyTile   = 128
	// bwdFlush is how many rows (queries for dK, dV; keys for dQ) are summed
	// in the element type before the partial sums move to float64.
	bwdFlush = 256
)

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
func (m Method) Backward32(ctx context.Context, p *attn.Problem[float32], out *attn.Output[float32], dO []float32, g *attn.Gradients[float32]) (attn.Stats, error) {
	return backward(ctx, m.Workers, p, out, dO, g, ops[float32]{kernels.GemmNT32, kernels.GemmNN32, kernels.ExpShiftSum32, kernels.Max32})
}

// Backward64 is Backward32 for float64.
func (m Method) Backward64(ctx context.Context, p *attn.Problem[float64], out *attn.Output[float64], dO []float64, g *attn.Gradients[float64]) (attn.Stats, error) {
	return backward(ctx, m.Workers, p, out, dO, g, ops[float64]{kernels.GemmNT64, kernels.GemmNN64, kernels.ExpShiftSum64, kernels.Max64})
}

// bwdShared is what every worker of one backward call reads or adds to.
type bwdShared[T attn.Float] struct {
	p     *attn.Problem[T]
	lse   []float64
	delta []float64 // Heads*N: dO_i . O_i
	dO    []T
	g     *attn.Gradients[T]
	k     ops[T]
	dqMu  []sync.Mutex // one per head, guarding g.DQ
}

// bwdState is one worker's scratch space.
type bwdState[T attn.Float] struct {
	s, ds    []T       // bwdQueryTile x bwdKeyTile: S then P; dP then dS
	qT, doT  []T       // d x bwdQueryTile and e x bwdQueryTile: the query tile transposed
	dkT, dvT []T       // d x bwdKeyTile, e x bwdKeyTile: partial sums in T
	dk, dv   []float64 // bwdKeyTile x d, bwdKeyTile x e: the key tile's gradients
	row      []float64 // bwdKeyTile: one row of exponents in float64 (float32 only)

	head    int       // head whose dQ is in dq, or -1
	dq      []T       // N x d: this worker's partial dQ of head, in T
	dq64    []float64 // N x d: flushed partial sums (float32 only)
	dqLo    int       // first row of dq touched since the last flush
	dqRows  int       // key rows summed into dq since the last flush
	isFloat bool      // T is float32: partial sums go through dq64
}

func backward[T attn.Float](ctx context.Context, workers int, p *attn.Problem[T], out *attn.Output[T], dO []T, g *attn.Gradients[T], k ops[T]) (attn.Stats, error) {
	if err := attn.CheckGradientSizes(p, out, dO, g); err != nil {
		return attn.Stats{}, err
	}
	clear(g.DQ)
	clear(g.DK)
	clear(g.DV)
	sh := &bwdShared[T]{p: p, lse: out.LSE, dO: dO, g: g, k: k, dqMu: make([]sync.Mutex, p.Heads)}
	sh.delta = make([]float64, p.Heads*p.N)
	for r := range sh.delta {
		o, do := out.O[r*p.E:(r+1)*p.E], dO[r*p.E:(r+1)*p.E]
		var s float64
		for c := range o {
			s += float64(o[c]) * float64(do[c])
		}
		sh.delta[r] = s
	}

	tilesPerHead := (p.M + bwdKeyTile - 1) / bwdKeyTile
	total := p.Heads * tilesPerHead
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, total)
	var isF32 bool
	if _, ok := any(T(0)).(float32); ok {
		isF32 = true
	}

	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, e := p.D, p.E
			st := &bwdState[T]{
				s:       make([]T, bwdQueryTile*bwdKeyTile),
				ds:      make([]T, bwdQueryTile*bwdKeyTile),
				qT:      make([]T, d*bwdQueryTile),
				doT:     make([]T, e*bwdQueryTile),
				dkT:     make([]T, d*bwdKeyTile),
				dvT:     make([]T, e*bwdKeyTile),
				dk:      make([]float64, bwdKeyTile*d),
				dv:      make([]float64, bwdKeyTile*e),
				head:    -1,
				isFloat: isF32,
			}
			if isF32 {
				st.row = make([]float64, bwdKeyTile)
			}
			defer sh.finishHead(st)
			for ctx.Err() == nil {
				t := int(next.Add(1) - 1)
				if t >= total {
					return
				}
				h, j0 := t/tilesPerHead, (t%tilesPerHead)*bwdKeyTile
				if j0 >= p.KeyLen(h) {
					continue // padding: the gradients stay zero
				}
				if st.head != h {
					sh.finishHead(st)
					sh.startHead(st, h)
				}
				sh.keyBlock(ctx, st, h, j0)
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}
	return attn.Stats{Flops: BackwardFlops(p)}, nil
}

// startHead gives st an empty dQ buffer for head h.
func (sh *bwdShared[T]) startHead(st *bwdState[T], h int) {
	n := sh.p.N * sh.p.D
	if st.dq == nil {
		st.dq = make([]T, n)
		if st.isFloat {
			st.dq64 = make([]float64, n)
		}
	} else {
		clear(st.dq)
		clear(st.dq64)
	}
	st.head, st.dqLo, st.dqRows = h, sh.p.N, 0
}

// flushDQ moves the float32 partial sums of dQ to float64.
func (st *bwdState[T]) flushDQ(d int) {
	if !st.isFloat || st.dqLo*d >= len(st.dq) {
		return
	}
	src, dst := st.dq[st.dqLo*d:], st.dq64[st.dqLo*d:]
	for x, v := range src {
		dst[x] += float64(v)
	}
	clear(src)
	st.dqLo, st.dqRows = len(st.dq)/d, 0
}

// finishHead adds st's partial dQ, times the scale, into the shared dQ.
func (sh *bwdShared[T]) finishHead(st *bwdState[T]) {
	h := st.head
	if h < 0 {
		return
	}
	st.head = -1
	p := sh.p
	st.flushDQ(p.D)
	dst := sh.g.DQ[h*p.N*p.D : (h+1)*p.N*p.D]
	sh.dqMu[h].Lock()
	defer sh.dqMu[h].Unlock()
	if st.isFloat {
		for x, v := range st.dq64 {
			dst[x] = T(float64(dst[x]) + p.Scale*v)
		}
		return
	}
	for x, v := range st.dq {
		dst[x] = T(float64(dst[x]) + p.Scale*float64(v))
	}
}

// keyBlock computes dK and dV of keys j0.. of head h, which are complete
// when it returns, and adds the key tile's share of dQ to st.dq.
func (sh *bwdShared[T]) keyBlock(ctx context.Context, st *bwdState[T], h, j0 int) {
	p, k := sh.p, sh.k
	d, e := p.D, p.E
	cols := min(bwdKeyTile, p.KeyLen(h)-j0)
	keys := p.K[(h*p.M+j0)*d:]
	vals := p.V[(h*p.M+j0)*e:]
	// Queries see a prefix of the keys, growing with i: the first query
	// that sees key j0 starts the walk.
	first := sort.Search(p.N, func(i int) bool { return p.KeyLimit(h, i) > j0 })
	if first == p.N {
		return
	}
	dkT, dvT := st.dkT[:d*cols], st.dvT[:e*cols]
	dk, dv := st.dk[:cols*d], st.dv[:cols*e]
	clear(dkT)
	clear(dvT)
	clear(dk)
	clear(dv)
	pending := 0 // query rows summed in dkT, dvT since the last flush
	flushKV := func() {
		// dkT is d x cols, dk is cols x d.
		for t := range d {
			for j, v := range dkT[t*cols : (t+1)*cols] {
				dk[j*d+t] += float64(v)
			}
		}
		for t := range e {
			for j, v := range dvT[t*cols : (t+1)*cols] {
				dv[j*e+t] += float64(v)
			}
		}
		clear(dkT)
		clear(dvT)
		pending = 0
	}
	st.dqLo = min(st.dqLo, first)
	for i0 := first; i0 < p.N; i0 += bwdQueryTile {
		if ((i0-first)/bwdQueryTile)%cancelCheckTiles == cancelCheckTiles-1 && ctx.Err() != nil {
			return
		}
		rows := min(bwdQueryTile, p.N-i0)
		q := p.Q[(h*p.N+i0)*d:]
		do := sh.dO[(h*p.N+i0)*e:]
		s := st.s[:rows*cols]
		ds := st.ds[:rows*cols]
		k.gemmNT(rows, cols, d, q, d, keys, d, s, cols)
		k.gemmNT(rows, cols, e, do, e, vals, e, ds, cols)
		for r := range rows {
			i := i0 + r
			sRow, dsRow := s[r*cols:(r+1)*cols], ds[r*cols:(r+1)*cols]
			valid := min(max(p.KeyLimit(h, i)-j0, 0), cols)
			if valid == 0 {
				clear(sRow)
				clear(dsRow)
				continue
			}
			pr := sh.expRow(st, sRow[:valid], sh.lse[h*p.N+i])
			delta := sh.delta[h*p.N+i]
			for j, pj := range pr {
				sRow[j] = T(pj)
				dsRow[j] = T(pj * (float64(dsRow[j]) - delta))
			}
			clear(sRow[valid:])
			clear(dsRow[valid:])
		}
		// Transpose the query tile so that dV^T += dO^T P and
		// dK^T += Q^T dS are plain products.
		qT, doT := st.qT[:d*rows], st.doT[:e*rows]
		for r := range rows {
			for t, v := range q[r*d : (r+1)*d] {
				qT[t*rows+r] = v
			}
			for t, v := range do[r*e : (r+1)*e] {
				doT[t*rows+r] = v
			}
		}
		k.gemmNN(e, cols, rows, doT, rows, s, cols, dvT, cols)
		k.gemmNN(d, cols, rows, qT, rows, ds, cols, dkT, cols)
		k.gemmNN(rows, d, cols, ds, cols, keys, d, st.dq[i0*d:], d)
		if pending += rows; pending >= bwdFlush {
			flushKV()
		}
	}
	flushKV()
	if st.dqRows += cols; st.dqRows >= bwdFlush {
		st.flushDQ(d)
	}
	// Keys of this tile belong to this task alone: write them out.
	gk := sh.g.DK[(h*p.M+j0)*d:]
	gv := sh.g.DV[(h*p.M+j0)*e:]
	for x, v := range dk {
		gk[x] = T(p.Scale * v)
	}
	for x, v := range dv {
		gv[x] = T(v)
	}
}

// expRow returns exp(scale x_j - lse) for the scores x of one row, in
// float64. For float64 the row is overwritten in place; for float32 the
// exponent is formed in float64 in st.row.
func (sh *bwdShared[T]) expRow(st *bwdState[T], x []T, lse float64) []float64 {
	if y, ok := any(x).([]float64); ok {
		kernels.ExpShiftSum64(y, sh.p.Scale, lse)
		return y
	}
	y := st.row[:len(x)]
	for j, v := range x {
		y[j] = float64(v)
	}
	kernels.ExpShiftSum64(y, sh.p.Scale, lse)
	return y
}
