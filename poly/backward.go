package poly

import (
	"context"
	"fmt"
	"math"
	"sync"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/accurate"
	"github.com/fastattn/fastattn/internal/kernels"
	"github.com/fastattn/fastattn/internal/vscale"
	"github.com/fastattn/fastattn/polyexp"
)

// Backward32 computes the gradient of the polynomial approximation itself
// (not of exact attention) with respect to Q, K and V; see backward. Its
// distance to the true gradient is measured, not certified: in units of
// the magnitude of the terms each entry sums, within 0.07 eps in the
// adversarial suite (eps from 1e-12 to 1e-3, identical keys and tiny
// queries included) and 0.12 eps in the shared gradient suite, because each
// backward degree g is built on the interval of the forward's degree g-1
// (degreeTable.raise), so P' is as accurate as P.
func (m Method) Backward32(ctx context.Context, p *attn.Problem[float32], out *attn.Output[float32], dO []float32, g *attn.Gradients[float32]) (attn.Stats, error) {
	return backward(ctx, m, p, dO, g, MinEps32, 0x1p-24+vscale.SubnormalOutput(p))
}

// Backward64 computes the gradient of the polynomial approximation.
func (m Method) Backward64(ctx context.Context, p *attn.Problem[float64], out *attn.Output[float64], dO []float64, g *attn.Gradients[float64]) (attn.Stats, error) {
	return backward(ctx, m, p, dO, g, MinEps64, 0x1p-53+vscale.SubnormalOutput(p))
}

// backward differentiates T_i = y_i[:e] / y_i[e], y_i = H_i C (+ exact
// terms), in O((n + m) r e) like the forward (docs/ALGORITHMS.md section 5):
//
//	dy_i = [dO_i / w_i, -(dO_i . T_i) / w_i]      (w_i = y_i[e])
//	dH_i = C dy_i,  dC = sum_i H_i^T dy_i,  dF_j = dC [v_j, 1],  dV_j = F_j^T dC
//
// then through the monomial recurrences to w_i = s R q_i and u_j = (k_j - mu)/R.
// The key centre mu is held constant: exact attention does not depend on
// it, and R cancels in w . u. Causal attention runs the key blocks forwards
// (prefix moments, each row's dy) and then backwards (suffix sums of
// H^T dy, which is what a key block's moments receive).
//
// The forward's out is not needed: the pass recomputes y to get w_i.
func backward[T attn.Float](ctx context.Context, m Method, p *attn.Problem[T], dO []T, g *attn.Gradients[T], minEps, uOut float64) (attn.Stats, error) {
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}
	if err := attn.CheckSupport(attn.Method(m), p, true); err != nil {
		return attn.Stats{}, err // a window, called directly rather than through attn.Backward
	}
	if p.Eps < minEps {
		return attn.Stats{}, unsupported("eps = %g is below the smallest error this method certifies for %s (%g); use the exact method", p.Eps, attn.DTypeName[T](), minEps)
	}
	deg := newDegreeTable(PolyShare * p.Eps)
	run := &runner[T]{p: p, deg: deg, workers: m.workers(), uOut: uOut,
		details: map[string]any{}, degreeRows: map[int]int{}}
	plans := make([]*headPlan, p.Heads)
	for h := range p.Heads {
		hp, err := planHead(p, h, deg, 1)
		if err != nil {
			return attn.Stats{}, err
		}
		plans[h] = hp
	}
	if err := run.checkCost(plans, m.MemoryBudget); err != nil {
		return attn.Stats{}, err
	}
	// Refuse where the forward would: a gradient of an approximation whose
	// certificate fails is not worth computing.
	for h, hp := range plans {
		if hp.keys == 0 {
			continue
		}
		b, err := planBound(p, h, hp, deg, uOut)
		if err != nil {
			return attn.Stats{}, err
		}
		if b > p.Eps {
			return attn.Stats{}, unsupported("the certified bound %.3g exceeds eps = %g (rounding dominates); raise eps or use the exact method", b, p.Eps)
		}
	}
	clear(g.DQ)
	clear(g.DK)
	clear(g.DV)
	clear(g.DSinks)
	for h, hp := range plans {
		if err := ctx.Err(); err != nil {
			return attn.Stats{}, err
		}
		if hp.keys == 0 {
			continue
		}
		if err := run.headBackward(ctx, h, hp, dO, g); err != nil {
			return attn.Stats{}, err
		}
	}
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}
	run.details["beta_max"] = run.maxBeta
	run.details["degree_max"] = run.maxDegree
	run.details["rank_max"] = Rank(p.D, run.maxDegree)
	run.details["exact_rows"] = run.exactRows
	// The forward's bound holds for T; the gradient is that of the
	// approximation, whose distance to the true gradient is measured by the
	// caller, not bounded here.
	return attn.Stats{Flops: 2 * run.flops, Details: run.details}, nil
}

// gradScratch holds one worker's backward buffers, allocated on first use
// for rank r (the backward pass would otherwise allocate megabytes per
// block of rows, and the garbage collector would dominate).
type gradScratch struct {
	feats, dH, ht   []float64 // queryBlock x r (ht transposed)
	part            []float64 // r x (e+1)
	dy, dw          []float64 // queryBlock x (e+1), queryBlock x d
	dsink           []float64 // queryBlock: each row's share of the sink's gradient
	pm, dp, dxt, pt []float64 // queryBlock x keyBlock
	du, dv          []float64 // keyBlock x d, keyBlock x e
	dF, dvt, dut    []float64 // r x keyBlock, (e+1) x keyBlock, d x keyBlock
	limits          []int
}

func (s *scratch) gradBuffers(r, d, e int) *gradScratch {
	if s.grad != nil && len(s.grad.feats) >= queryBlock*r {
		return s.grad
	}
	e1 := e + 1
	s.grad = &gradScratch{
		feats: make([]float64, queryBlock*r), dH: make([]float64, queryBlock*r), ht: make([]float64, queryBlock*r),
		part: make([]float64, r*e1), dy: make([]float64, queryBlock*e1), dw: make([]float64, queryBlock*d),
		dsink: make([]float64, queryBlock),
		pm:    make([]float64, queryBlock*keyBlock), dp: make([]float64, queryBlock*keyBlock),
		dxt: make([]float64, queryBlock*keyBlock), pt: make([]float64, queryBlock*keyBlock),
		du: make([]float64, keyBlock*d), dv: make([]float64, keyBlock*e),
		dF: make([]float64, r*keyBlock), dvt: make([]float64, e1*keyBlock), dut: make([]float64, d*keyBlock),
		limits: make([]int, queryBlock),
	}
	return s.grad
}

// coefficients returns c_|alpha| (|alpha|!/alpha!) for the first r
// monomials: the query-side weights of polynomial a.
// The polynomial may have a lower degree than asked (near the rounding
// floor the degree thresholds saturate); its missing coefficients are 0.
func coefficients(m *monomials, a polyexp.Approx, r int) []float64 {
	c := make([]float64, r)
	for al := range r {
		if g := int(m.degree[al]); g <= a.Degree {
			c[al] = a.Coeffs[g] * m.multi[al]
		}
	}
	return c
}

// gradState is one head's backward accumulators.
type gradState[T attn.Float] struct {
	hk    *headKeys[T]
	hp    *headPlan
	polys map[int]polyexp.Approx
	coefs map[int][]float64 // per degree: coefficients(mono, polys[g], rank)
	h     int
	dO    []T
	dy    []float64 // N x (e+1): each row's dy
	// Per-worker key accumulators for terms added exactly, and the sum of
	// H_i^T dy_i of the rows processed, reduced after each parallel step.
	mu    sync.Mutex
	dU    []float64 // L x d, gradient with respect to u
	dV    []float64 // L x e
	dSum  []float64 // r x (e+1)
	dSink float64   // the head's sink logit's gradient
}

func (run *runner[T]) headBackward(ctx context.Context, h int, hp *headPlan, dO []T, g *attn.Gradients[T]) error {
	p := run.p
	hk, polys, err := run.prepare(h, hp)
	if err != nil {
		return err
	}
	L, r, e1 := hk.L, hk.r, p.E+1
	st := &gradState[T]{hk: hk, hp: hp, polys: polys, h: h, dO: dO, coefs: map[int][]float64{},
		dy: make([]float64, p.N*e1), dU: make([]float64, L*p.D), dV: make([]float64, L*p.E)}
	for g, a := range polys {
		st.coefs[g] = coefficients(hk.mono, a, Rank(p.D, g))
	}
	run.mu.Lock()
	run.flops += float64(hp.momentKeys()) * float64(r) * float64(2*e1+1)
	run.mu.Unlock()

	if hp.win != nil {
		err = run.windowBackward(ctx, st, g.DQ)
	} else {
		err = run.blocksBackward(ctx, st, g.DQ)
	}
	if err != nil {
		return err
	}
	// dK = dU / R; dV as accumulated, summed over the query heads of the
	// key/value head (grouped-query attention). Padding keys keep zero
	// gradients.
	kh := p.KVHead(h)
	dk := g.DK[kh*p.M*p.D:]
	dv := g.DV[kh*p.M*p.E:]
	for j := range L * p.D {
		dk[j] += T(st.dU[j] / hp.radius)
	}
	for j := range L * p.E {
		dv[j] += T(st.dV[j])
	}
	if g.DSinks != nil {
		g.DSinks[h%len(g.DSinks)] += st.dSink
	}
	return ctx.Err()
}

// blocksBackward is headBackward's pass over the rows and key blocks
// without a window.
func (run *runner[T]) blocksBackward(ctx context.Context, st *gradState[T], dq []T) error {
	p, hk, h := run.p, st.hk, st.h
	L, r, e1 := hk.L, hk.r, p.E+1
	// Forward: moments (all keys, or prefixes of key blocks), each row's y,
	// dy, dq and its exact terms.
	var rowsOf [][]int // rows whose moments end at block b (causal) or all rows
	if p.Causal {
		for i := range p.N {
			if lim := p.KeyLimit(h, i); lim > 0 {
				b := (lim - 1) / keyBlock
				for len(rowsOf) <= b {
					rowsOf = append(rowsOf, nil)
				}
				rowsOf[b] = append(rowsOf[b], i)
			}
		}
	} else {
		all := make([]int, p.N)
		for i := range all {
			all[i] = i
		}
		rowsOf = [][]int{all}
	}
	moments := make([]float64, r*e1)
	if !p.Causal {
		run.parallelBlocks(ctx, 0, (L+keyBlock-1)/keyBlock, func(s *scratch, b int) {
			hk.addMoments(s, b*keyBlock, min((b+1)*keyBlock, L), s.moments)
		}, func(s *scratch) { addTo(moments, s.moments) }, r)
	}
	sRows := make([][]float64, len(rowsOf)) // per block: sum of H^T dy (causal only)
	for b, rows := range rowsOf {
		cEnd, mom := L, moments
		if p.Causal {
			cEnd = b * keyBlock
			if b == 0 {
				mom = nil
			}
		}
		st.dSum = make([]float64, r*e1)
		if err := run.rowsBackward(ctx, st, rows, mom, cEnd, dq); err != nil {
			return err
		}
		sRows[b] = st.dSum
		if p.Causal && b*keyBlock < L {
			s := run.scratchFor(1, r)[0]
			hk.addMoments(s, b*keyBlock, min((b+1)*keyBlock, L), moments)
		}
	}
	// Backward over the keys: the moments of key block b were read by every
	// row whose block is after b (causal), or by every row.
	if !p.Causal {
		run.keysBackward(ctx, st, 0, L, sRows[0])
	} else {
		suffix := make([]float64, r*e1)
		for b := len(rowsOf) - 1; b >= 0; b-- {
			if b*keyBlock < L {
				run.keysBackward(ctx, st, b*keyBlock, min((b+1)*keyBlock, L), suffix)
			}
			addTo(suffix, sRows[b])
		}
	}
	return nil
}

// rowsBackward processes rows whose moments cover keys [0, cEnd) (mom nil
// for none) and whose keys [cEnd, limit_i) are exact terms: it writes dQ,
// stores dy and accumulates H^T dy into st.dSum and the exact terms'
// key gradients into st.dU, st.dV.
func (run *runner[T]) rowsBackward(ctx context.Context, st *gradState[T], rows []int, mom []float64, cEnd int, dq []T) error {
	var failed error
	var fmu sync.Mutex
	blocks := (len(rows) + queryBlock - 1) / queryBlock
	run.parallelBlocks(ctx, 0, blocks, func(s *scratch, b int) {
		blk := rows[b*queryBlock : min((b+1)*queryBlock, len(rows))]
		if err := run.blockBackward(s, st, blk, mom, 0, cEnd, st.dSum, dq); err != nil {
			fmu.Lock()
			failed = err
			fmu.Unlock()
		}
	}, nil, st.hk.r)
	if failed != nil {
		return failed
	}
	return ctx.Err()
}

// blockBackward processes a block of rows, by degree, as groupBackward;
// rows computed exactly read no moments.
func (run *runner[T]) blockBackward(s *scratch, st *gradState[T], blk []int, mom []float64, cStart, cEnd int, dSum []float64, dq []T) error {
	byDegree := map[int][]int{}
	for _, i := range blk {
		if rowKeys(run.p, st.h, i) > 0 {
			byDegree[st.hp.degree[i]] = append(byDegree[st.hp.degree[i]], i)
		}
	}
	for gdeg, group := range byDegree {
		m, c0, c1 := mom, cStart, cEnd
		if gdeg == exactRow {
			m, c0, c1 = nil, 0, 0
		}
		if err := run.groupBackward(s, st, gdeg, group, m, c0, c1, dSum, dq); err != nil {
			return err
		}
	}
	return nil
}

// groupBackward processes rows of one degree whose moments cover keys
// [cStart, cEnd) (mom nil for none) and whose keys [lo_i, cStart) and
// [cEnd, limit_i) are exact terms, adding H^T dy to dSum.
func (run *runner[T]) groupBackward(s *scratch, st *gradState[T], degree int, group []int, mom []float64, cStart, cEnd int, dSum []float64, dq []T) error {
	p, hk, hp, h := run.p, st.hk, st.hp, st.h
	d, e, e1 := p.D, p.E, p.E+1
	cnt := len(group)
	gs := s.gradBuffers(hk.r, d, e)
	rg := 1
	coef := st.coefs[degree]
	if mom != nil {
		rg = len(coef)
	}
	mono := hk.mono
	w := s.w[:cnt*d]
	limits := gs.limits[:cnt]
	for k, i := range group {
		q := p.Q[(h*p.N+i)*d : (h*p.N+i+1)*d]
		for t := range d {
			w[k*d+t] = p.Scale * hp.radius * float64(q[t])
		}
		limits[k] = p.KeyLimit(h, i)
	}
	// Recompute y = H C + exact terms.
	y := s.y[:cnt*e1]
	clear(y)
	feats := gs.feats[:cnt*rg] // monomials w^alpha, before coefficients
	hbuf := s.h[:cnt*rg]
	if mom != nil {
		for k := range cnt {
			fk, hk := feats[k*rg:(k+1)*rg], hbuf[k*rg:(k+1)*rg]
			mono.eval(w[k*d:(k+1)*d], fk, rg)
			for al, c := range coef {
				hk[al] = fk[al] * c
			}
		}
		kernels.GemmNN64(cnt, e1, rg, hbuf, rg, mom, e1, y, e1)
	}
	starts := run.rowStarts(h, group) // nil without a window
	edges := run.exactEdges(starts, limits, cStart, cEnd)
	for _, x := range edges {
		hk.addExactRange(s, w, starts, x.limits, x.from, y)
	}
	// dy from dO, T and w. A sink adds sigma_i = exp(sink - s q_i.mu) to
	// the denominator (in the centred keys' units): w_i = y_i[e] + sigma_i,
	// formed as the forward does through log-sum-exps, so that
	// shrink = y_i[e] / w_i cannot overflow. sigma_i's gradient dy_i[e]
	// reaches the sink (times sigma_i) and q_i (times -s sigma_i mu).
	dy := gs.dy[:cnt*e1]
	sink := p.Sink(h)
	dsink := gs.dsink[:cnt]
	var headSink float64
	for k, i := range group {
		yr := y[k*e1 : (k+1)*e1]
		den := yr[e]
		if !(den > 0) || math.IsInf(den, 0) {
			return fmt.Errorf("poly: internal error: row %d of head %d has denominator %g", i, h, den)
		}
		shrink, rest := 1.0, 0.0 // y_i[e] / w_i and sigma_i / w_i
		if !math.IsInf(sink, -1) {
			lse := accurate.ScaledDot(p.Q[(h*p.N+i)*d:(h*p.N+i+1)*d], hp.mu, p.Scale) + math.Log(den)
			both := max(lse, sink) + math.Log1p(math.Exp(-math.Abs(lse-sink)))
			shrink, rest = math.Exp(lse-both), -math.Expm1(lse-both)
		}
		inv := shrink / den // 1 / w_i
		do := st.dO[(h*p.N+i)*e : (h*p.N+i+1)*e]
		var dot float64
		for c := range e {
			dot += float64(do[c]) * yr[c] * inv
			dy[k*e1+c] = float64(do[c]) * inv
		}
		dy[k*e1+e] = -dot * inv
		dsink[k] = -dot * rest // dy_i[e] sigma_i
		headSink += dsink[k]
		copy(st.dy[i*e1:(i+1)*e1], dy[k*e1:(k+1)*e1])
	}
	dw := gs.dw[:cnt*d]
	clear(dw)
	if mom != nil {
		// dH = dy C^T, then dG = dH * coefficients, then back through the
		// monomial recurrence G_a = G_parent(a) * w_t(a).
		dH := gs.dH[:cnt*rg]
		kernels.GemmNT64(cnt, rg, e1, dy, e1, mom, e1, dH, rg)
		parent, vari := mono.parent[:rg], mono.vari[:rg]
		for k := range cnt {
			dG := dH[k*rg : (k+1)*rg]
			G := feats[k*rg : (k+1)*rg]
			wk := w[k*d : (k+1)*d]
			dwk := dw[k*d : (k+1)*d]
			for al, c := range coef {
				dG[al] *= c
			}
			for al := rg - 1; al >= 1; al-- {
				par, t := parent[al], vari[al]
				g := dG[al]
				dG[par] += g * wk[t]
				dwk[t] += g * G[par]
			}
		}
		// dSum += H^T dy.
		ht := gs.ht[:rg*cnt]
		for k := range cnt {
			for al, x := range hbuf[k*rg : (k+1)*rg] {
				ht[al*cnt+k] = x
			}
		}
		part := gs.part[:rg*e1]
		clear(part)
		kernels.GemmNN64(rg, e1, cnt, ht, cnt, dy, e1, part, e1)
		st.mu.Lock()
		addTo(dSum[:rg*e1], part)
		st.mu.Unlock()
	}
	for _, x := range edges {
		run.exactBackward(s, st, w, starts, x.limits, x.from, dy, dw)
	}
	for k, i := range group {
		for t := range d {
			dq[(h*p.N+i)*d+t] = T(dw[k*d+t]*p.Scale*hp.radius - p.Scale*hp.mu[t]*dsink[k])
		}
	}
	if headSink != 0 {
		st.mu.Lock()
		st.dSink += headSink
		st.mu.Unlock()
	}
	return nil
}

// exactBackward differentiates the exact terms exp(w_k . u_j) [v_j, 1] for
// keys max(from, starts_k)..limit_k-1 (starts nil: from on): dx = p (dy . [v_j, 1]), dw_k += dx u_j, du_j += dx w_k,
// dv_j += p dy_k[:e].
func (run *runner[T]) exactBackward(s *scratch, st *gradState[T], w []float64, starts, limits []int, from int, dy, dw []float64) {
	hk := st.hk
	cnt, d, e, e1 := len(limits), run.p.D, run.p.E, run.p.E+1
	gs := s.gradBuffers(hk.r, d, e)
	hk.exactBlocks(w, starts, limits, from, gs.pm, func(j0, j1 int, pm []float64) {
		bs := j1 - j0
		dp := gs.dp[:cnt*bs]
		kernels.GemmNT64(cnt, bs, e1, dy, e1, hk.valueBlock(s, j0, j1), e1, dp, bs)
		for x := range dp {
			dp[x] *= pm[x] // dx
		}
		kernels.GemmNN64(cnt, d, bs, dp, bs, hk.uk[j0*d:], d, dw, d)
		// Key side: du = dx^T w, dv = p^T dy[:, :e].
		dxt, pt := gs.dxt[:bs*cnt], gs.pt[:bs*cnt]
		for k := range cnt {
			for j := range bs {
				dxt[j*cnt+k] = dp[k*bs+j]
				pt[j*cnt+k] = pm[k*bs+j]
			}
		}
		du, dv := gs.du[:bs*d], gs.dv[:bs*e]
		clear(du)
		clear(dv)
		kernels.GemmNN64(bs, d, cnt, dxt, cnt, w, d, du, d)
		kernels.GemmNN64(bs, e, cnt, pt, cnt, dy, e1, dv, e)
		st.mu.Lock()
		addTo(st.dU[j0*d:j1*d], du)
		addTo(st.dV[j0*e:j1*e], dv)
		st.mu.Unlock()
	})
}

// keysBackward adds the gradients that keys j0..j1-1 receive through their
// moments, given S = the sum of H_i^T dy_i over the rows that read them.
func (run *runner[T]) keysBackward(ctx context.Context, st *gradState[T], j0, j1 int, S []float64) {
	r := st.hk.r
	st1 := transposed(S, r, run.p.E+1)
	blocks := (j1 - j0 + keyBlock - 1) / keyBlock
	run.parallelBlocks(ctx, 0, blocks, func(s *scratch, b int) {
		k0 := j0 + b*keyBlock
		run.keyBlockBackward(s, st, k0, min(k0+keyBlock, j1), S, st1)
	}, nil, r)
}

// keyBlockBackward adds the gradients keys k0..k1-1 (one block) receive
// through their moments, given S and its transpose st1.
func (run *runner[T]) keyBlockBackward(s *scratch, st *gradState[T], k0, k1 int, S, st1 []float64) {
	hk := st.hk
	r, d, e, e1 := hk.r, run.p.D, run.p.E, run.p.E+1
	bs := k1 - k0
	f := hk.features(s, k0, k1)
	m := hk.mono
	// dF = S [v, 1]^T; dV^T = S^T F.
	gs := s.gradBuffers(r, d, e)
	dF := gs.dF[:r*bs]
	kernels.GemmNT64(r, bs, e1, S, e1, hk.valueBlock(s, k0, k1), e1, dF, bs)
	dvt := gs.dvt[:e1*bs]
	clear(dvt)
	kernels.GemmNN64(e1, bs, r, st1, r, f, bs, dvt, bs)
	// Back through F_a = F_parent(a) * u_t(a).
	dut := gs.dut[:d*bs]
	clear(dut)
	for a := r - 1; a >= 1; a-- {
		par, t := int(m.parent[a]), int(m.vari[a])
		u := hk.ut[t*hk.L+k0 : t*hk.L+k1]
		ga, gp, fp, ut := dF[a*bs:(a+1)*bs], dF[par*bs:(par+1)*bs], f[par*bs:(par+1)*bs], dut[t*bs:(t+1)*bs]
		for j, g := range ga {
			gp[j] += g * u[j]
			ut[j] += g * fp[j]
		}
	}
	st.mu.Lock()
	for j := range bs {
		for t := range d {
			st.dU[(k0+j)*d+t] += dut[t*bs+j]
		}
		for c := range e {
			st.dV[(k0+j)*e+c] += dvt[c*bs+j]
		}
	}
	st.mu.Unlock()
}

// raise prepares degree g for rows whose forward degree is g - bump: it
// extends the thresholds and makes the table's degree-g polynomial the
// interpolant of that degree on the forward degree's interval
// [-B, B], B = maxBeta[g-bump], which holds every such row's beta, instead
// of on the degree's own, wider interval.
//
// Why: the gradient differentiates P, and the derivative of an
// interpolant's error e^x - P(x), which equioscillates with amplitude
// eps_A on [-B_g, B_g], is about g^2 eps_A / B_g. Where B_g is small (low
// degrees, as every row has with identical keys or small queries at small
// eps) that is eps_A amplified by 1/B_g, growing as eps shrinks (like
// eps^(-1/(g+1))). On the narrower interval the extra degree makes P' as
// accurate as a degree-(g-1) interpolant there, about eps_A, whatever B.
func (t *degreeTable) raise(g, bump int) error {
	if err := t.extend(g); err != nil {
		return err
	}
	t.mu.Lock()
	_, done := t.approx[g]
	t.mu.Unlock()
	if done || bump <= 0 {
		return nil
	}
	b := t.maxBeta[g-bump]
	if !(b > 0) {
		return nil // the table's own polynomial
	}
	// The lowest degree certified to within degree g's certificate on
	// [-B, B] is g itself unless the certificates saturate at the float64
	// floor (not for eps >= MinEps64); then keep the table's polynomial.
	a, err := polyexp.Symmetric(b, polyexp.CertifiedBound(g, b)*(1+1e-9))
	if err != nil || a.Degree != g {
		return nil
	}
	t.mu.Lock()
	t.approx[g] = a
	t.mu.Unlock()
	return nil
}
