package poly

import (
	"context"
	"fmt"
	"math"
	"sync/atomic"

	"github.com/fastattn/fastattn/internal/accurate"
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
		yt:     make([]float64, e1*queryBlock), wt: make([]float64, d*queryBlock),
		limits: make([]int, queryBlock), sums: make([]float64, r),
		vt: make([]float64, e1*kernels.MonoMomentsBlock), upad: make([]float64, d*kernels.MonoMomentsBlock),
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
// block's values, one GEMM e columns wide (a multiple of the vector width
// for the usual e, where e+1 would add a mostly empty vector), and the
// denominators' column as the feature rows' sums, taken while building
// them.
func (hk *headKeys[T]) addMoments(s *scratch, j0, j1 int, dst []float64) {
	if kernels.MonoMomentsFast() {
		hk.addMomentsFused(s, j0, j1, dst)
		return
	}
	bs := j1 - j0
	e, e1 := hk.e, hk.e+1
	f := hk.mono.evalBlock(hk.ut[j0:], hk.L, bs, s.feat, hk.r, s.sums[:hk.r])
	if e > 0 {
		kernels.GemmNN64(hk.r, e, bs, f, bs, hk.valueBlock(s, j0, j1), e1, dst, e1)
	}
	for a, sum := range s.sums[:hk.r] {
		dst[a*e1+e] += sum
	}
}

// addMomentsFused is addMoments by kernels.MonoMoments64, 128 keys at a
// time: each monomial meets the block's values (transposed, with a row of
// ones for the denominators) as it is built, the features never written
// out as a matrix. A block past the last key is padded with zero keys of
// zero weight.
func (hk *headKeys[T]) addMomentsFused(s *scratch, j0, j1 int, dst []float64) {
	const w = kernels.MonoMomentsBlock
	e, e1, d := hk.e, hk.e+1, hk.mono.d
	for k0 := j0; k0 < j1; k0 += w {
		n := min(w, j1-k0)
		vt := s.vt[:e1*w]
		for c := range e {
			row := vt[c*w : (c+1)*w]
			for j := range n {
				row[j] = float64(hk.vals[(k0+j)*e+c])
			}
			clear(row[n:])
		}
		ones := vt[e*w : e1*w]
		for j := range ones {
			ones[j] = 0
			if j < n {
				ones[j] = 1
			}
		}
		u, ldu := hk.ut[k0:], hk.L
		if k0+w > hk.L || len(hk.ut) < (d-1)*hk.L+k0+w {
			u, ldu = s.upad[:d*w], w
			for t := range d {
				copy(u[t*w:t*w+n], hk.ut[t*hk.L+k0:t*hk.L+k0+n])
				clear(u[t*w+n : (t+1)*w])
			}
		}
		kernels.MonoMoments64(dst, e1, vt, u, ldu, hk.mono.table, hk.r, s.feat)
	}
}

// features returns the monomials u_j^alpha of keys j0..j1-1 as an r x bs
// matrix in the worker's scratch, one multiplication per entry.
func (hk *headKeys[T]) features(s *scratch, j0, j1 int) []float64 {
	return hk.mono.evalBlock(hk.ut[j0:], hk.L, j1-j0, s.feat, hk.r, nil)
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
	hk.addExactRange(s, w, nil, limits, from, y)
}

// exactWeights fills dst (rows x (j1-j0)) with exp(w_k . u_j) for keys
// j0..j1-1, zero past each row's limit.
func (hk *headKeys[T]) exactWeights(dst, w []float64, d int, limits []int, j0, j1 int) []float64 {
	bs := j1 - j0
	if hk.uk != nil {
		kernels.GemmNT64(len(limits), bs, d, w, d, hk.uk[j0*d:], d, dst, bs)
	} else {
		clear(dst[:len(limits)*bs])
		kernels.GemmNN64(len(limits), bs, d, w, d, hk.ut[j0:], hk.L, dst, bs)
	}
	for k, l := range limits {
		row := dst[k*bs : (k+1)*bs]
		valid := min(max(l-j0, 0), bs)
		kernels.ExpShiftSum64(row[:valid], 1, 0)
		clear(row[valid:])
	}
	return dst
}

// queryRows computes the given rows of head h (none of them exactRow) from
// key moments over keys [0, cEnd) (nil moments for none) plus the keys
// [cEnd, limit_i) of each row added exactly (causal attention's diagonal
// block).
func (run *runner[T]) queryRows(ctx context.Context, h int, hp *headPlan, hk *headKeys[T], polys map[int]polyexp.Approx, rows []int, moments []float64, cEnd int) error {
	var failed atomic.Value
	var flops atomic.Uint64 // in units of 1 flop
	// Each degree's moments, transposed and scaled by its query-side
	// coefficients, once for all blocks.
	scaled := map[int][]float64{}
	if moments != nil {
		for _, i := range rows {
			if g := hp.degree[i]; scaled[g] == nil {
				scaled[g] = hk.scaledMoments(polys[g], moments)
			}
		}
	}
	blocks := (len(rows) + queryBlock - 1) / queryBlock
	run.parallelBlocks(ctx, 0, blocks, func(s *scratch, b int) {
		blk := rows[b*queryBlock : min((b+1)*queryBlock, len(rows))]
		if err := run.rowBlock(s, h, hp, hk, polys, blk, scaled, 0, cEnd, &flops); err != nil {
			failed.Store(err)
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

// rowBlock computes a block of rows (none of them exactRow) from the
// scaled key moments over keys [cStart, cEnd) (nil for none) plus each
// row's keys [lo_i, cStart) and [cEnd, limit_i) added exactly.
func (run *runner[T]) rowBlock(s *scratch, h int, hp *headPlan, hk *headKeys[T], polys map[int]polyexp.Approx, blk []int, scaled map[int][]float64, cStart, cEnd int, flops *atomic.Uint64) error {
	p := run.p
	// Rows of one degree share a GEMM against a prefix of the moments.
	groups := s.groups[:0]
	for _, i := range blk {
		if p.KeyLimit(h, i) == 0 {
			run.finishEmpty(h, i)
			continue
		}
		g := hp.degree[i]
		k := 0
		for k < len(groups) && hp.degree[groups[k][0]] != g {
			k++
		}
		if k == len(groups) {
			if k < cap(groups) {
				groups = groups[:k+1]
				groups[k] = groups[k][:0]
			} else {
				groups = append(groups, nil)
			}
		}
		groups[k] = append(groups[k], i)
	}
	s.groups = groups
	for _, group := range groups {
		g := hp.degree[group[0]]
		if err := run.degreeGroup(s, h, hp, hk, polys[g], group, scaled[g], cStart, cEnd, flops); err != nil {
			return err
		}
	}
	return nil
}

// scaledMoments returns the first r_g rows of the key moments (r x (e+1)),
// each multiplied by its query-side coefficient c_|alpha| |alpha|!/alpha!:
// then the query features are the plain monomials w^alpha, built for a
// block of rows at once, and sum_alpha w^alpha coefficient_alpha u^alpha =
// P(s q.(k - mu)). They are laid out for queryProducts: r_g x (e+1) as
// they are for kernels.MonoApply64, else transposed, (e+1) x r_g, for a
// GEMM.
func (hk *headKeys[T]) scaledMoments(a polyexp.Approx, moments []float64) []float64 {
	m := hk.mono
	rg := Rank(m.d, a.Degree)
	e1 := hk.e + 1
	st := make([]float64, e1*rg)
	fused := kernels.MonoApplyFast(e1)
	for al := range rg {
		c := a.Coeffs[m.degree[al]] * m.multi[al]
		for col := range e1 {
			if fused {
				st[al*e1+col] = c * moments[al*e1+col]
			} else {
				st[col*rg+al] = c * moments[al*e1+col]
			}
		}
	}
	return st
}

// queryProducts sets yt ((e+1) x cnt) to the scaled moments (from
// scaledMoments, r_g monomials) applied to the monomials of the cnt rows
// wt (d x cnt, variable-major): with the vector kernel, blocks of rows
// whose monomials meet the moments as they are built; else the rows'
// monomials as an r_g x cnt matrix (each monomial one vector product over
// the rows) times the moments.
func (hk *headKeys[T]) queryProducts(s *scratch, scaled, wt []float64, cnt, rg int, yt []float64) {
	e1 := hk.e + 1
	if kernels.MonoApplyFast(e1) {
		for k0 := 0; k0 < cnt; k0 += kernels.MonoApplyBlock {
			n := min(kernels.MonoApplyBlock, cnt-k0)
			kernels.MonoApply64(yt[k0:], cnt, scaled, e1, wt[k0:], cnt, n, hk.mono.table, rg, s.h)
		}
		return
	}
	ht := hk.mono.evalBlock(wt, cnt, cnt, s.h[:rg*cnt], rg, nil)
	clear(yt)
	kernels.GemmNN64(e1, cnt, rg, scaled, rg, ht, cnt, yt, cnt)
}

// degreeGroup computes rows of one degree: with scaled (the moments from
// scaledMoments) their polynomial part (queryProducts), then the keys from cEnd
// on and (windows) before cStart exactly.
func (run *runner[T]) degreeGroup(s *scratch, h int, hp *headPlan, hk *headKeys[T], a polyexp.Approx, group []int, scaled []float64, cStart, cEnd int, flops *atomic.Uint64) error {
	p := run.p
	d, e1 := p.D, p.E+1
	cnt := len(group)
	// w = s R q per row: the exponent is w . u for normalised keys u.
	w := s.w[:cnt*d]
	wt := s.wt[:d*cnt]
	limits := s.limits[:cnt]
	exactFlops := 0
	for k, i := range group {
		q := p.Q[(h*p.N+i)*d : (h*p.N+i+1)*d]
		for t := range d {
			x := p.Scale * hp.radius * float64(q[t])
			w[k*d+t], wt[t*cnt+k] = x, x
		}
		limits[k] = p.KeyLimit(h, i)
		exactFlops += max(limits[k]-cEnd, 0) * (2*d + 2*e1 + 1)
	}
	y := s.y[:cnt*e1]
	clear(y)
	f := uint64(exactFlops)
	if scaled != nil {
		rg := Rank(d, a.Degree)
		yt := s.yt[:e1*cnt]
		hk.queryProducts(s, scaled, wt, cnt, rg, yt)
		for k := range cnt {
			for c := range e1 {
				y[k*e1+c] = yt[c*cnt+k]
			}
		}
		f += uint64(cnt * rg * (2*e1 + 1))
	}
	if exactFlops > 0 {
		hk.addExact(s, w, limits, cEnd, y)
	}
	if cStart > 0 {
		f += run.leftEdges(s, h, hk, w, group, cStart, y)
	}
	flops.Add(f)
	return run.finishRows(h, hp, group, y)
}

// finishRows turns sums y (rows x (e+1): numerators, then the denominator,
// relative to the centred keys) into output rows and log-sum-exps, adding
// the sink.
func (run *runner[T]) finishRows(h int, hp *headPlan, group []int, y []float64) error {
	p := run.p
	d, e, e1 := p.D, p.E, p.E+1
	for k, i := range group {
		yr := y[k*e1 : (k+1)*e1]
		den := yr[e]
		if !(den > 0) || math.IsInf(den, 0) {
			return fmt.Errorf("poly: internal error: row %d of head %d has denominator %g", i, h, den)
		}
		lse := accurate.ScaledDot(p.Q[(h*p.N+i)*d:(h*p.N+i+1)*d], hp.mu, p.Scale) + math.Log(den)
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
	return nil
}

// directRows computes the rows of head h planned as exactRow directly, in
// chunks of up to queryBlock rows: each chunk reads every key block once,
// and its key blocks are shared among the workers (a few rows scattered
// over the head would otherwise each cost a pass over all keys, on one
// core). The exponents lie in [-beta_i, beta_i], so partial sums over key
// blocks add without a shift.
func (run *runner[T]) directRows(ctx context.Context, h int, hp *headPlan, hk *headKeys[T], rows []int) error {
	p := run.p
	d, e1 := p.D, p.E+1
	type worker struct {
		s      *scratch
		y      []float64
		limits []int
	}
	for c0, c1 := 0, 0; c0 < len(rows); c0 = c1 {
		c1 = run.directChunkEnd(h, rows, c0)
		var chunk []int
		for _, i := range rows[c0:c1] {
			if rowKeys(p, h, i) == 0 {
				run.finishEmpty(h, i)
			} else {
				chunk = append(chunk, i)
			}
		}
		cnt := len(chunk)
		if cnt == 0 {
			continue
		}
		w := make([]float64, cnt*d)
		limits := make([]int, cnt)
		starts := run.rowStarts(h, chunk) // nil without a window
		begin, end, flops := 0, 0, 0.0
		for k, i := range chunk {
			q := p.Q[(h*p.N+i)*d : (h*p.N+i+1)*d]
			for t := range d {
				w[k*d+t] = p.Scale * hp.radius * float64(q[t])
			}
			limits[k] = p.KeyLimit(h, i)
			end = max(end, limits[k])
			flops += float64(rowKeys(p, h, i)) * float64(2*d+2*e1+1)
		}
		if starts != nil {
			begin = starts[0] // rows' ranges start in order
		}
		blocks := (end + keyBlock - 1) / keyBlock
		scratches := run.scratchFor(max(min(run.workers, blocks-begin/keyBlock), 1), hk.r)
		workers := make([]*worker, len(scratches))
		for x, s := range scratches {
			workers[x] = &worker{s: s, y: make([]float64, cnt*e1), limits: make([]int, cnt)}
		}
		parallel.ForEach(ctx, workers, begin/keyBlock, blocks, func(wk *worker, b int) {
			j0 := b * keyBlock
			for k, l := range limits {
				wk.limits[k] = min(l, j0+keyBlock)
			}
			hk.addExactRange(wk.s, w, starts, wk.limits, j0, wk.y)
		})
		if err := ctx.Err(); err != nil {
			return err
		}
		y := workers[0].y
		for _, wk := range workers[1:] {
			addTo(y, wk.y)
		}
		if err := run.finishRows(h, hp, chunk, y); err != nil {
			return err
		}
		run.mu.Lock()
		run.flops += flops
		run.mu.Unlock()
	}
	return nil
}

// finishEmpty writes the result of a row with no valid key.
func (run *runner[T]) finishEmpty(h, i int) {
	p := run.p
	clear(run.out.O[(h*p.N+i)*p.E : (h*p.N+i+1)*p.E])
	run.out.LSE[h*p.N+i] = p.Sink(h) // -Inf without a sink
}

// causal computes the given rows (none exactRow) of a causal head: rows
// whose keys end inside key block b use the moments of blocks 0..b-1 (a
// prefix sum) and add block b's keys exactly. Blocks are processed in waves
// of one block per worker, so at most a few moment matrices are alive at
// once.
func (run *runner[T]) causal(ctx context.Context, h int, hp *headPlan, hk *headKeys[T], polys map[int]polyexp.Approx, rows []int) error {
	p := run.p
	e1 := p.E + 1
	size := hk.r * e1
	rowsOf := map[int][]int{}
	lastBlock := 0
	for _, i := range rows {
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
