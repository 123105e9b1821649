package poly

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/fastattn/fastattn/internal/kernels"
	"github.com/fastattn/fastattn/internal/parallel"
	"github.com/fastattn/fastattn/polyexp"
)

func newScratch(r, e1, d int) *scratch {
	return &scratch{
		feat: make([]float64, r*keyBlock), vblock: make([]float64, keyBlock*e1),
		moments: make([]float64, r*e1), h: make([]float64, queryBlock*r),
		y: make([]float64, queryBlock*e1), w: make([]float64, queryBlock*d),
		scores: make([]float64, queryBlock*keyBlock),
	}
}

// scratchFor returns n worker scratches for rank r, reusing the runner's
// (causal attention calls parallelBlocks once per key block). Scratch
// moments are cleared; the other buffers are overwritten before use.
func (run *runner[T]) scratchFor(n, r int) []*scratch {
	e1 := run.p.E + 1
	if run.scratchRank < r {
		run.scratches, run.scratchRank = nil, r
	}
	for len(run.scratches) < n {
		run.scratches = append(run.scratches, newScratch(r, e1, run.p.D))
	}
	for _, s := range run.scratches[:n] {
		s.moments = s.moments[:r*e1]
		clear(s.moments)
	}
	return run.scratches[:n]
}

// parallelBlocks runs work for blocks b0..b1-1 on the workers, each with its
// own scratch, then calls reduce once per worker's scratch.
func (run *runner[T]) parallelBlocks(ctx context.Context, b0, b1 int, work func(s *scratch, b int), reduce func(s *scratch), r int) {
	workers := max(min(run.workers, b1-b0), 1)
	scratches := run.scratchFor(workers, r)
	parallel.ForEach(ctx, scratches, b0, b1, work)
	if reduce != nil {
		for _, s := range scratches {
			reduce(s)
		}
	}
}

// addMoments adds sum_j u_j^alpha [v_j, 1] over keys j0..j1-1 to dst
// (r x (e+1)): the features of the block as an r x bs matrix times the
// block's values, one GEMM.
func (hk *headKeys[T]) addMoments(s *scratch, j0, j1 int, dst []float64) {
	bs := j1 - j0
	e1 := hk.e + 1
	f := hk.features(s, j0, j1)
	kernels.GemmNN64(hk.r, e1, bs, f, bs, hk.valueBlock(s, j0, j1), e1, dst, e1)
}

// features returns the monomials u_j^alpha of keys j0..j1-1 as an r x bs
// matrix in the worker's scratch, one multiplication per entry.
func (hk *headKeys[T]) features(s *scratch, j0, j1 int) []float64 {
	bs := j1 - j0
	f := s.feat[:hk.r*bs]
	for j := range bs {
		f[j] = 1
	}
	m := hk.mono
	for a := 1; a < hk.r; a++ {
		row := f[a*bs : (a+1)*bs]
		par := f[int(m.parent[a])*bs : int(m.parent[a])*bs+bs]
		u := hk.ut[int(m.vari[a])*hk.L+j0 : int(m.vari[a])*hk.L+j1]
		for j := range row {
			row[j] = par[j] * u[j]
		}
	}
	return f
}

// valueBlock returns the values of keys j0..j1-1 as float64 rows with a
// trailing 1, so one product gives both numerators and the denominator.
func (hk *headKeys[T]) valueBlock(s *scratch, j0, j1 int) []float64 {
	e1 := hk.e + 1
	vb := s.vblock[:(j1-j0)*e1]
	for j := range j1 - j0 {
		for c, v := range hk.vals[(j0+j)*hk.e : (j0+j+1)*hk.e] {
			vb[j*e1+c] = float64(v)
		}
		vb[j*e1+hk.e] = 1
	}
	return vb
}

// addExact adds sum_j exp(w_k . u_j) [v_j, 1] over keys from..limit-1 of each
// row k of the group to y, tile by tile as exact attention does: the range
// of every exponent is within [-beta_i, beta_i], so no shift is needed.
func (hk *headKeys[T]) addExact(s *scratch, w []float64, limits []int, from int, y []float64) {
	cnt, d, e1 := len(limits), len(w)/len(limits), hk.e+1
	end := 0
	for _, l := range limits {
		end = max(end, l)
	}
	for j0 := from; j0 < end; j0 += keyBlock {
		j1 := min(j0+keyBlock, end)
		bs := j1 - j0
		sc := hk.exactWeights(s.scores[:cnt*bs], w, d, limits, j0, j1)
		kernels.GemmNN64(cnt, e1, bs, sc, bs, hk.valueBlock(s, j0, j1), e1, y, e1)
	}
}

// exactWeights fills dst (rows x (j1-j0)) with exp(w_k . u_j) for keys
// j0..j1-1, zero past each row's limit.
func (hk *headKeys[T]) exactWeights(dst, w []float64, d int, limits []int, j0, j1 int) []float64 {
	bs := j1 - j0
	kernels.GemmNT64(len(limits), bs, d, w, d, hk.uk[j0*d:], d, dst, bs)
	for k, l := range limits {
		row := dst[k*bs : (k+1)*bs]
		valid := min(max(l-j0, 0), bs)
		kernels.ExpShiftSum64(row[:valid], 1, 0)
		clear(row[valid:])
	}
	return dst
}

// queryRows computes the given rows of head h from key moments over keys
// [0, cEnd) (nil moments for none) plus the keys [cEnd, limit_i) of each
// row added exactly (causal attention's diagonal block).
func (run *runner[T]) queryRows(ctx context.Context, h int, hp *headPlan, hk *headKeys[T], polys map[int]polyexp.Approx, rows []int, moments []float64, cEnd int) error {
	p := run.p
	var failed atomic.Value
	var flops atomic.Uint64 // in units of 1 flop
	blocks := (len(rows) + queryBlock - 1) / queryBlock
	run.parallelBlocks(ctx, 0, blocks, func(s *scratch, b int) {
		blk := rows[b*queryBlock : min((b+1)*queryBlock, len(rows))]
		var live []int
		for _, i := range blk {
			if p.KeyLimit(h, i) == 0 {
				run.finishEmpty(h, i)
			} else {
				live = append(live, i)
			}
		}
		// Rows of one degree share a GEMM against a prefix of the moments.
		byDegree := map[int][]int{}
		for _, i := range live {
			byDegree[hp.degree[i]] = append(byDegree[hp.degree[i]], i)
		}
		for g, group := range byDegree {
			mom, from := moments, cEnd
			if g == exactRow {
				mom, from = nil, 0
			}
			if err := run.degreeGroup(s, h, hp, hk, polys[g], group, mom, from, &flops); err != nil {
				failed.Store(err)
				return
			}
		}
	}, nil, hk.r)
	run.mu.Lock()
	run.flops += float64(flops.Load())
	run.mu.Unlock()
	if err, ok := failed.Load().(error); ok {
		return err
	}
	return ctx.Err()
}

func (run *runner[T]) degreeGroup(s *scratch, h int, hp *headPlan, hk *headKeys[T], a polyexp.Approx, group []int, moments []float64, cEnd int, flops *atomic.Uint64) error {
	p := run.p
	d, e, e1 := p.D, p.E, p.E+1
	rg := Rank(d, a.Degree)
	m := hk.mono
	// w = s R q per row: the exponent is w . u for normalised keys u.
	w := s.w[:len(group)*d]
	limits := make([]int, len(group))
	exactFlops := 0
	for k, i := range group {
		q := p.Q[(h*p.N+i)*d : (h*p.N+i+1)*d]
		for t := range d {
			w[k*d+t] = p.Scale * hp.radius * float64(q[t])
		}
		limits[k] = p.KeyLimit(h, i)
		exactFlops += max(limits[k]-cEnd, 0) * (2*d + 2*e1 + 1)
	}
	y := s.y[:len(group)*e1]
	clear(y)
	var f uint64 = uint64(exactFlops)
	if moments != nil {
		// Query features c_|alpha| (|alpha|!/alpha!) w^alpha, so that
		// sum_alpha H_alpha u^alpha = P(s q.(k - mu)).
		hbuf := s.h[:len(group)*rg]
		for k := range group {
			row := hbuf[k*rg : (k+1)*rg]
			m.eval(w[k*d:(k+1)*d], row, rg)
			for al := range rg {
				row[al] *= a.Coeffs[m.degree[al]] * m.multi[al]
			}
		}
		kernels.GemmNN64(len(group), e1, rg, hbuf, rg, moments, e1, y, e1)
		f += uint64(len(group) * rg * (2*e1 + 3))
	}
	if exactFlops > 0 {
		hk.addExact(s, w, limits, cEnd, y)
	}
	for k, i := range group {
		yr := y[k*e1 : (k+1)*e1]
		den := yr[e]
		if !(den > 0) || math.IsInf(den, 0) {
			return fmt.Errorf("poly: internal error: row %d of head %d has denominator %g", i, h, den)
		}
		var qmu float64
		q := p.Q[(h*p.N+i)*d : (h*p.N+i+1)*d]
		for t := range d {
			qmu += float64(q[t]) * hp.mu[t]
		}
		lse := p.Scale*qmu + math.Log(den)
		// A sink adds exp(sink) to the denominator exactly: the output
		// shrinks by exp(lse - lse with the sink).
		shrink := 1.0
		if sink := p.Sink(h); !math.IsInf(sink, -1) {
			both := max(lse, sink) + math.Log1p(math.Exp(-math.Abs(lse-sink)))
			shrink, lse = math.Exp(lse-both), both
		}
		o := run.out.O[(h*p.N+i)*e : (h*p.N+i+1)*e]
		for c := range e {
			o[c] = T(yr[c] / den * shrink)
		}
		run.out.LSE[h*p.N+i] = lse
	}
	flops.Add(f)
	return nil
}

// finishEmpty writes the result of a row with no valid key.
func (run *runner[T]) finishEmpty(h, i int) {
	p := run.p
	clear(run.out.O[(h*p.N+i)*p.E : (h*p.N+i+1)*p.E])
	run.out.LSE[h*p.N+i] = p.Sink(h) // -Inf without a sink
}

// causal computes a causal head: rows whose keys end inside key block b use
// the moments of blocks 0..b-1 (a prefix sum) and add block b's keys
// exactly. Blocks are processed in waves of one block per worker, so at most
// a few moment matrices are alive at once.
func (run *runner[T]) causal(ctx context.Context, h int, hp *headPlan, hk *headKeys[T], polys map[int]polyexp.Approx) error {
	p := run.p
	e1 := p.E + 1
	size := hk.r * e1
	rowsOf := map[int][]int{}
	lastBlock := 0
	for i := range p.N {
		if lim := p.KeyLimit(h, i); lim == 0 {
			run.finishEmpty(h, i)
		} else {
			b := (lim - 1) / keyBlock // the block holding key lim-1
			rowsOf[b] = append(rowsOf[b], i)
			lastBlock = max(lastBlock, b)
		}
	}
	prefix := make([]float64, size)
	wave := max(run.workers, 1)
	blockMoments := make([][]float64, wave)
	prefixes := make([][]float64, wave)
	for w := range wave {
		blockMoments[w] = make([]float64, size)
		prefixes[w] = make([]float64, size)
	}
	for w0 := 0; w0 <= lastBlock; w0 += wave {
		w1 := min(w0+wave, lastBlock+1)
		for w := range w1 - w0 {
			clear(blockMoments[w])
		}
		run.parallelBlocks(ctx, w0, w1, func(s *scratch, b int) {
			hk.addMoments(s, b*keyBlock, min((b+1)*keyBlock, hk.L), blockMoments[b-w0])
		}, nil, hk.r)
		copy(prefixes[0], prefix)
		for b := w0 + 1; b < w1; b++ {
			copy(prefixes[b-w0], prefixes[b-w0-1])
			addTo(prefixes[b-w0], blockMoments[b-w0-1])
		}
		for b := w0; b < w1; b++ {
			if len(rowsOf[b]) == 0 {
				continue
			}
			var mom []float64
			if b > 0 {
				mom = prefixes[b-w0]
			}
			if err := run.queryRows(ctx, h, hp, hk, polys, rowsOf[b], mom, b*keyBlock); err != nil {
				return err
			}
		}
		copy(prefix, prefixes[w1-1-w0])
		addTo(prefix, blockMoments[w1-1-w0])
	}
	run.mu.Lock()
	run.flops += 2 * float64(lastBlock+1) * float64(size) // the prefix sums
	run.mu.Unlock()
	return ctx.Err()
}
