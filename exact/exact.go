// Package exact is FlashAttention-2's forward pass on the CPU: tiles of
// queries against tiles of keys with an online softmax, so memory stays
// O((n + m)(d + e)) whatever n and m are, and logits of any size neither
// overflow nor lose the row's largest terms.
package exact

import (
	"context"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/kernels"
)

// Tile sizes: a tile of scores is queryTile x keyTile values, small enough to
// stay in L1/L2 together with the query tile.
const (
	queryTile = 64
	keyTile   = 256
)

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

// tileState is one worker's scratch space, reused for every tile it takes.
type tileState[T attn.Float] struct {
	scores []T       // queryTile x keyTile
	pv     []T       // queryTile x e, P V of the current key tile
	acc    []float64 // queryTile x e, output accumulated over key tiles
	rowMax []float64 // running max of the scaled logits
	rowSum []float64 // running sum of exp(logit - rowMax)
}

func forward[T attn.Float](ctx context.Context, workers int, p *attn.Problem[T], out *attn.Output[T], k ops[T]) (attn.Stats, error) {
	tilesPerHead := (p.N + queryTile - 1) / queryTile
	total := p.Heads * tilesPerHead
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	workers = min(workers, total)

	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := &tileState[T]{
				scores: make([]T, queryTile*keyTile),
				pv:     make([]T, queryTile*p.E),
				acc:    make([]float64, queryTile*p.E),
				rowMax: make([]float64, queryTile),
				rowSum: make([]float64, queryTile),
			}
			for ctx.Err() == nil {
				t := int(next.Add(1) - 1)
				if t >= total {
					return
				}
				h, i0 := t/tilesPerHead, (t%tilesPerHead)*queryTile
				queryBlock(ctx, p, out, k, st, h, i0, min(queryTile, p.N-i0))
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}
	return attn.Stats{Flops: Flops(p)}, nil
}

// cancelCheckTiles is how many key tiles a worker processes between looks
// at its context, so one long row of keys still stops promptly.
const cancelCheckTiles = 64

// queryBlock computes rows i0..i0+rows-1 of head h. On cancellation it
// returns early, leaving the block's output unspecified.
func queryBlock[T attn.Float](ctx context.Context, p *attn.Problem[T], out *attn.Output[T], k ops[T], st *tileState[T], h, i0, rows int) {
	d, e := p.D, p.E
	q := p.Q[(h*p.N+i0)*d:]
	keys := p.K[h*p.M*d:]
	vals := p.V[h*p.M*e:]
	acc := st.acc[:rows*e]
	clear(acc)
	for r := range rows {
		st.rowMax[r] = math.Inf(-1)
		st.rowSum[r] = 0
	}
	// The last row of the block has the longest prefix of keys.
	limit := p.KeyLimit(h, i0+rows-1)
	for j0 := 0; j0 < limit; j0 += keyTile {
		if (j0/keyTile)%cancelCheckTiles == cancelCheckTiles-1 && ctx.Err() != nil {
			return
		}
		cols := min(keyTile, limit-j0)
		s := st.scores[:rows*cols]
		k.gemmNT(rows, cols, d, q, d, keys[j0*d:], d, s, cols)
		for r := range rows {
			row := s[r*cols : (r+1)*cols]
			valid := min(max(p.KeyLimit(h, i0+r)-j0, 0), cols)
			clear(row[valid:])
			if valid == 0 {
				continue
			}
			// scale > 0, so the largest scaled logit is scale times the
			// largest dot product.
			tileMax := p.Scale * float64(k.max(row[:valid]))
			newMax := max(st.rowMax[r], tileMax)
			alpha := math.Exp(st.rowMax[r] - newMax) // 0 on the first tile
			sum := k.expShift(row[:valid], T(p.Scale), T(newMax))
			st.rowSum[r] = st.rowSum[r]*alpha + float64(sum)
			st.rowMax[r] = newMax
			if alpha != 1 {
				a := acc[r*e : (r+1)*e]
				for c := range a {
					a[c] *= alpha
				}
			}
		}
		pv := st.pv[:rows*e]
		clear(pv)
		k.gemmNN(rows, e, cols, s, cols, vals[j0*e:], e, pv, e)
		for c, v := range pv {
			acc[c] += float64(v)
		}
	}
	o := out.O[(h*p.N+i0)*e:]
	lse := out.LSE[h*p.N+i0:]
	for r := range rows {
		if st.rowSum[r] == 0 {
			clear(o[r*e : (r+1)*e])
			lse[r] = math.Inf(-1)
			continue
		}
		inv := 1 / st.rowSum[r]
		for c := range e {
			o[r*e+c] = T(acc[r*e+c] * inv)
		}
		lse[r] = st.rowMax[r] + math.Log(st.rowSum[r])
	}
}
