package exact

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/accurate"
	"github.com/fastattn/fastattn/internal/lsebound"
	"github.com/fastattn/fastattn/internal/parallel"
	"github.com/fastattn/fastattn/internal/sinkshift"
	"github.com/fastattn/fastattn/internal/vscale"
)

// Exact attention's a priori rounding bound, and the key centring that
// keeps it small.
//
// Softmax does not change when every key of a head is shifted by the same
// vector c: q.(k_j - c) = q.k_j - q.c, a constant of the row. The rounding
// of q.k_j does change: it is about u |q| |k_j|, so a common offset of the
// keys (1e4, say) makes float32 logits wrong by whole units. Each head's
// keys are therefore shifted by the centre of their bounding box when that
// shrinks them (the box measured from its centre is less than half the
// box measured from the origin): while packing them for the Q K^T kernels,
// or tile by tile on the unpacked (decoding) path, never by copying K
// otherwise.
//
// The bound (relative to max_l |V_lj|, as the approximate methods'): with
// B the largest |s q_i.(k_j - c)| allowed by Cauchy-Schwarz per coordinate,
// B = s max_i sum_t |q_it| max_j |k_jt - c_t|, each computed logit
// s q.(k_j - c) is within gamma_T(d + 3) B of exact (the dot product's d
// roundings, the key shift, the scale's rounding to T and the product by
// it), and its difference y_j from the row max (measured from the computed
// max: softmax ignores the shift) is rounded once more, by u_T y_j <= 2 u_T B.
// So each weight is exact times (1 + tau), tau = e^delta (1 + eps_exp)
// (1 + u_T) - 1 with delta = gamma_T(d + 5) B, where eps_exp is the
// exp kernel's error (2 ulp in float32, 1e-15 in float64) and u_T the
// rounding of the stored weight. float32 weights come from a base-2
// exponential of the logits times log2 e (attendRows): the same float32
// roundings in base-2 units, where the scale s log2 e is formed in
// float64 (with log2 e itself rounded) before its rounding to float32, so
// delta gains 2 u_64 B. The sums add gamma_T(wideTile) inside a
// tile (P V and the row sum in T) and gamma_64(tiles + 4) across tiles in
// float64 (float64 inputs: gamma_64(L + 4) for the whole row). With eta
// the sum of those relative errors, numerator and denominator are each
// within eta of exact relative to D max|V| and D, so
//
//	|O - Att| <= (2 eta / (1 - eta) + u_T + 2 u_64) max_l |V_lj|  (+ a
//	subnormal output's half step, relative to its column's max).
type keyStats struct {
	centre []float64 // c subtracted from the keys; nil when not centred
	box    []float64 // max_j |k_jt - c_t| per coordinate (rounded up)
	logit  float64   // B: the largest |s q_i.(k_j - c)| possible
	colMax []float64 // max_l |V_lc| per value column (the contract's unit)
}

// Rounding constants of exp: the float32 kernel is within 2 ulp (4 units
// of 2^-24), the float64 one within 1e-15 (10 units of 2^-53). See
// internal/kernels/README.md.
const (
	expErr32 = 4 * 0x1p-24
	expErr64 = 10 * 0x1p-53
	u64      = 0x1p-53
)

// unitOf returns T's unit roundoff and its exp kernel's relative error.
func unitOf[T attn.Float]() (u, expErr float64) {
	var x T
	if _, ok := any(x).(float32); ok {
		return 0x1p-24, expErr32
	}
	return u64, expErr64
}

func gammaOf(n, u float64) float64 { return n * u / (1 - n*u) }

// statsChunk is the number of keys one task of the key statistics reads.
const statsChunk = 4096

// kvKeys is how many keys of key/value head kh any of its query heads
// attends at most.
func kvKeys[T attn.Float](p *attn.Problem[T], kh int) int {
	g, l := p.Group(), 0
	for h := kh * g; h < (kh+1)*g; h++ {
		l = max(l, p.KeyLen(h))
	}
	return l
}

// headKeyStats measures every key/value head's keys and values and its
// queries, in one parallel pass over chunks of keys (each reading its keys'
// bounding box and its values' column maxima) and one over Q, and decides
// the centring. An additive mask's largest finite magnitude joins B: it is
// added to the logits before their rounding.
func headKeyStats[T attn.Float](ctx context.Context, p *attn.Problem[T], workers int) []keyStats {
	return keyStatsOf(ctx, p, workers, true)
}

// keyStatsOf is headKeyStats; with mayCentre false the keys are never
// centred (Workspace.Forward's arithmetic).
func keyStatsOf[T attn.Float](ctx context.Context, p *attn.Problem[T], workers int, mayCentre bool) []keyStats {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	d, e := p.D, p.E
	type task struct{ h, j0, j1 int }
	var tasks []task
	kvh := p.KVHeadCount()
	for h := range kvh {
		for j := 0; j < kvKeys(p, h); j += statsChunk {
			tasks = append(tasks, task{h, j, min(j+statsChunk, kvKeys(p, h))})
		}
	}
	// Per task: lo, hi (d each) and the value maxima (e).
	w := 2*d + e
	parts := make([]float64, len(tasks)*w)
	for x := range tasks {
		for t := range d {
			parts[x*w+t], parts[x*w+d+t] = math.Inf(1), math.Inf(-1)
		}
	}
	halfKV := p.KVFormat != attn.NoHalf
	parallel.For(ctx, min(workers, max(len(tasks), 1)), len(tasks), func(x int) {
		tk := tasks[x]
		pt := parts[x*w : (x+1)*w]
		attn.RowRange(p.K[(tk.h*p.M+tk.j0)*d:(tk.h*p.M+tk.j1)*d], pt[:d], pt[d:2*d])
		if !halfKV {
			attn.MaxAbsRows(p.V[(tk.h*p.M+tk.j0)*e:(tk.h*p.M+tk.j1)*e], pt[2*d:])
		}
	})
	// Per head: its tasks' parts merged, in the same layout.
	merged := make([]float64, kvh*w)
	x := 0
	for h := range kvh {
		m := merged[h*w : (h+1)*w]
		for t := range d {
			m[t], m[d+t] = math.Inf(1), math.Inf(-1)
		}
		for ; x < len(tasks) && tasks[x].h == h; x++ {
			pt := parts[x*w : (x+1)*w]
			for t := range d {
				m[t] = min(m[t], pt[t])
				m[d+t] = max(m[d+t], pt[d+t])
			}
			for c := range e {
				m[2*d+c] = max(m[2*d+c], pt[2*d+c])
			}
		}
	}
	return finishKeyStats(p, merged, mayCentre, workers)
}

// finishKeyStats makes the key statistics of p from each key/value head's
// measurements (head h's at merged[h*(2d+e):]: the keys' lower and upper
// ends per coordinate, d each, then the values' column maxima, e; those
// are measured again here for 16-bit values): it decides the centring
// (never with mayCentre false) and bounds the logits.
func finishKeyStats[T attn.Float](p *attn.Problem[T], merged []float64, mayCentre bool, workers int) []keyStats {
	d, e := p.D, p.E
	w := 2*d + e
	stats := make([]keyStats, p.KVHeadCount())
	for h := range stats {
		l := kvKeys(p, h)
		m := merged[h*w : (h+1)*w]
		lo, hi := m[:d], m[d:2*d]
		st := &stats[h]
		st.colMax = slices.Clone(m[2*d:])
		if p.KVFormat != attn.NoHalf {
			copy(st.colMax, attn.ColumnMaxAbs(p, h*p.Group(), l))
		}
		st.box = make([]float64, d)
		if l == 0 {
			continue
		}
		// The centre is the middle of the keys' bounding box, rounded to T
		// (the keys are shifted in T): it minimises the largest
		// |k_jt - c_t|, which B is made of. The keys are centred when that
		// box, measured from the centre, is less than half the box
		// measured from the origin.
		centre := make([]float64, d)
		var boxC2, box02 float64
		for t := range d {
			centre[t] = float64(T(lo[t]/2 + hi[t]/2))
			r := max(math.Abs(hi[t]-centre[t]), math.Abs(lo[t]-centre[t]))
			boxC2 += r * r
			r0 := max(math.Abs(hi[t]), math.Abs(lo[t]))
			box02 += r0 * r0
		}
		if !mayCentre || testNoCentring || boxC2 >= 0.25*box02 {
			for t := range d {
				st.box[t] = max(math.Abs(hi[t]), math.Abs(lo[t]))
			}
		} else {
			st.centre = centre
			for t := range d {
				st.box[t] = max(math.Abs(hi[t]-centre[t]), math.Abs(lo[t]-centre[t])) * (1 + 2*u64)
			}
		}
	}
	// B = s max_i sum_t |q_it| box_t over the query heads of each group.
	for h := range p.Heads {
		st := &stats[p.KVHead(h)]
		best := maxWeightedAbs(p.Q[h*p.N*d:(h+1)*p.N*d], d, st.box, workers)
		st.logit = max(st.logit, p.Scale*best*(1+float64(d+2)*u64))
	}
	if m := p.Mask; m != nil && m.Add != nil {
		var big float64
		for _, x := range m.Add {
			if !math.IsInf(x, 0) {
				big = max(big, math.Abs(x))
			}
		}
		for h := range stats {
			stats[h].logit += big
		}
	}
	return stats
}

// weightedAbsRows is how many rows of queries one task of maxWeightedAbs
// takes.
const weightedAbsRows = 1024

// maxWeightedAbs returns the largest sum_t |x_t| w_t over the rows x of q
// (rows of d values), or NaN if one is NaN, on up to workers goroutines:
// one goroutine took 0.76 ms at n = 16384, d = 64 (best of 20), two 0.43,
// in calls whose attention takes 100-200 ms. Each row is summed in order,
// so the result does not depend on the workers.
func maxWeightedAbs[T attn.Float](q []T, d int, w []float64, workers int) float64 {
	if d == 0 {
		return 0
	}
	n := len(q) / d
	w = w[:d]
	// rowsMax is the largest sum over rows i0..i1-1.
	rowsMax := func(i0, i1 int) float64 {
		var m float64
		for i := i0; i < i1; i++ {
			var s float64
			for t, v := range q[i*d : (i+1)*d] {
				s += math.Abs(float64(v)) * w[t]
			}
			m = max(m, s)
		}
		return m
	}
	tasks := (n + weightedAbsRows - 1) / weightedAbsRows
	if tasks <= 1 {
		return rowsMax(0, n) // a decoding step's few rows: no goroutines, no allocation
	}
	best := make([]float64, tasks)
	parallel.For(context.Background(), min(workers, tasks), tasks, func(x int) {
		best[x] = rowsMax(x*weightedAbsRows, min((x+1)*weightedAbsRows, n))
	})
	var m float64
	for _, b := range best {
		m = max(m, b)
	}
	return m
}

// testNoCentring, set by tests, turns the key centring off (to show what
// it is for).
var testNoCentring = false

// roundingBound is the bound of the comment above for element type T on
// rows of at most l keys with logits up to b (B), before the output's
// subnormal term.
func roundingBound[T attn.Float](b float64, d, l int) float64 {
	u, expErr := unitOf[T]()
	delta := gammaOf(float64(d+5), u) * b
	if u != u64 {
		delta += 2 * u64 * b // s log2 e in float64 (see above)
	}
	tau := math.Exp(delta)*(1+expErr)*(1+u) - 1
	var sums float64
	if u == u64 {
		sums = gammaOf(float64(l+4), u64)
	} else {
		// float32 tiles hold up to wideTile keys; counting the float64
		// steps per keyTile keys overcounts them for the forward and is
		// what the Decoder's bound (decode_bound.go) passes l for.
		sums = gammaOf(wideTile, u) + gammaOf(float64(l/keyTile+4), u64)
	}
	// The AVX-512 exp kernels flush weights below the normal range to
	// zero (each under 2^-126 in float32, 2^-1022 in float64), against a
	// row sum of at least 1.
	flush := 0x1p-1022
	if u != u64 {
		flush = 0x1p-126
	}
	eta := tau + sums + float64(l)*flush
	if !(eta < 0.5) {
		return math.Inf(1)
	}
	return 2*eta/(1-eta) + u + 2*u64
}

// bound is exact attention's bound on p in element type U (T, or float64
// for promoted arithmetic), from the key statistics: the largest over
// key/value heads of roundingBound, plus the subnormal output term of the
// values.
func bound[U, T attn.Float](p *attn.Problem[T], stats []keyStats) float64 {
	var b float64
	for h, st := range stats {
		if l := kvKeys(p, h); l > 0 {
			b = max(b, roundingBound[U](st.logit, p.D, l))
		}
	}
	return b + subnormal[U](p, stats) + sinkShift(p, stats)
}

// sinkShift is the part of the bound that centring costs the heads with a
// sink (package sinkshift): rowSink takes s q_i.c from the sink's logit in
// float64. (Found by a random search: with keys offset by 2.7e4, a
// float64 row was off by 2.3e-12 against a bound of 3.7e-15 without it.)
// The row's largest logit, against which the sink is weighed, is within B
// of 0 in the centred frame and already counted.
func sinkShift[T attn.Float](p *attn.Problem[T], stats []keyStats) float64 {
	var b float64
	for h := range p.Heads {
		b = max(b, sinkshift.Bound(p, h, stats[p.KVHead(h)].centre, nil))
	}
	return b
}

// subnormal is the part of the bound (relative to max_l |V_lj|) that
// underflow costs, in element type T computed in U: a subnormal output's
// half step of T over its column's maximum (vscale.Subnormal of the
// statistics' maxima); and for a query head that sees fewer keys than
// another of its group, whose maxima over its own keys (the unit of its
// rows) may be far below its group's, which the values are scaled by
// (into [lo, hi]), the same over its own, plus half a subnormal step of U
// for each of its products p_j v_j, in the scaled unit. (With the group's
// maxima, at least lo, those products' underflow is at most 2^-50 per key
// in float32, under 1% of the smallest float32 bound, 6e-5, below 2^29
// keys, and 2^-115 in float64: left out.)
func subnormal[U, T attn.Float](p *attn.Problem[T], stats []keyStats) float64 {
	cm := columnMaxima(stats)
	b := vscale.Subnormal[T](cm)
	short := vscale.ShorterHeads(p)
	if len(short) == 0 {
		return b
	}
	lo, hi := valueLo64, valueHi64
	if u, _ := unitOf[U](); u != u64 {
		lo, hi = valueLo32, valueHi32
	}
	scaled := vscale.Needed(cm, lo, hi)
	for _, s := range short {
		kh := p.KVHead(s.Head)
		for c, m := range s.Max {
			if m <= 0 {
				continue // a column of zeros: outputs of zero, exact
			}
			unit := m
			if scaled { // as vscale.FitMax scales the group's column
				_, exp := math.Frexp(cm[kh*p.E+c])
				unit = math.Ldexp(m, -exp)
			}
			b = max(b, float64(s.Keys)*vscale.HalfStepOver[U](unit)+vscale.HalfStepOver[T](m))
		}
	}
	return b
}

// columnMaxima is the statistics' value column maxima, kvHeads x e, as
// vscale.ColumnMax returns them.
func columnMaxima(stats []keyStats) []float64 {
	var cm []float64
	for _, st := range stats {
		cm = append(cm, st.colMax...)
	}
	return cm
}

// Arithmetic is how exact attention computes a problem: the fastest one
// whose bound meets eps.
type arithmetic int

const (
	plain       arithmetic = iota // the input's type, SIMD kernels
	promote                       // float32 input computed in float64
	compensated                   // double-double logits, compensated sums (package accurate)
)

func (a arithmetic) String() string {
	return [...]string{"native", "float64 (the float32 bound misses eps)", "compensated (double-double logits; the float64 bound misses eps)"}[a]
}

// planned is what the planner and the forward decide before computing:
// the key statistics, the arithmetic and its bound.
type planned struct {
	stats []keyStats
	bound float64
	arith arithmetic
}

// planPrecision measures p and picks the arithmetic: the input's type if
// its bound meets p.Eps (or p.Eps is 0, no target), float64 for a float32
// input whose float32 bound does not, compensated arithmetic when neither
// does; an error wrapping attn.ErrUnsupported when even that cannot meet
// p.Eps, saying which eps is reachable.
func planPrecision[T attn.Float](ctx context.Context, p *attn.Problem[T], workers int) (planned, error) {
	pl := planned{stats: headKeyStats(ctx, p, workers)}
	if err := ctx.Err(); err != nil {
		return pl, err
	}
	pl.bound = bound[T](p, pl.stats)
	if math.IsNaN(pl.bound) || math.IsInf(pl.bound, 1) {
		// A NaN or Inf among the inputs (exact attention scans them as it
		// reads them, so the caller has not): say so as the scan would.
		if err := p.CheckFinite(); err != nil {
			return pl, err
		}
	}
	if p.Eps == 0 || pl.bound <= p.Eps {
		return pl, nil
	}
	u, _ := unitOf[T]()
	sub := subnormal[float64](p, pl.stats)
	if u != u64 {
		if b := bound[float64](p, pl.stats) + u; b <= p.Eps {
			pl.bound, pl.arith = b, promote
			return pl, nil
		}
	}
	b := accurate.Error(p.M) + sub
	if u != u64 {
		b += u
	}
	if b <= p.Eps {
		pl.bound, pl.arith = b, compensated
		return pl, nil
	}
	return pl, fmt.Errorf("%w: exact attention cannot certify eps = %g here: its rounding bound is %.3g relative to max|V| in %s (logits up to %.3g after centring the keys) and %.3g with compensated arithmetic; the smallest eps it can certify is %.3g",
		attn.ErrUnsupported, p.Eps, pl.bound, attn.DTypeName[T](), maxLogit(pl.stats), b, b)
}

func maxLogit(stats []keyStats) float64 {
	var b float64
	for _, st := range stats {
		b = max(b, st.logit)
	}
	return b
}

// centreRows writes src - c (rows of len(c) keys) into dst, in T: c is
// already rounded to T, so each entry is rounded once.
func centreRows[T attn.Float](dst, src []T, c []float64) {
	d := len(c)
	ct := make([]T, d)
	for t, x := range c {
		ct[t] = T(x)
	}
	for j := 0; j < len(src); j += d {
		for t := range d {
			dst[j+t] = src[j+t] - ct[t]
		}
	}
}

// Value ranges that keep the sums finite and exact enough (see package
// vscale): a tile's P V in float32 sums up to wideTile values, and float64
// accumulations up to 2^34 keys; columns outside are scaled by powers of
// two first.
const (
	valueLo32, valueHi32 = 0x1p-100, 0x1p110
	valueLo64, valueHi64 = 0x1p-960, 0x1p960
)

// bounded is Forward: it plans the precision (refusing an eps the bound
// cannot meet), scales extreme values, computes with centred keys, and
// reports the bound.
func bounded[T attn.Float](ctx context.Context, workers int, p *attn.Problem[T], out *attn.Output[T]) (attn.Stats, error) {
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}
	if p.Workers > 0 {
		workers = p.Workers
	}
	if st, ok, err := speculated(ctx, workers, p, out); ok { // speculate.go
		return st, err
	}
	return measuredFirst(ctx, workers, p, out)
}

// measuredFirst is bounded without speculation: the key statistics
// first, then the computation they plan.
func measuredFirst[T attn.Float](ctx context.Context, workers int, p *attn.Problem[T], out *attn.Output[T]) (attn.Stats, error) {
	pl, err := planPrecision(ctx, p, workers)
	if err != nil {
		return attn.Stats{}, err
	}
	switch pl.arith {
	case promote:
		return promoted(ctx, workers, p, out)
	case compensated:
		return compensate(ctx, workers, p, out, pl.bound)
	}
	lo, hi := valueLo64, valueHi64
	if u, _ := unitOf[T](); u != u64 {
		lo, hi = valueLo32, valueHi32
	}
	q, sc := vscale.FitMax(p, columnMaxima(pl.stats), lo, hi)
	centres := make([][]float64, len(pl.stats))
	centred := 0
	for h, st := range pl.stats {
		centres[h] = st.centre
		if st.centre != nil {
			centred++
		}
	}
	st, err := forward(ctx, workers, q, out, centres)
	if err != nil {
		return st, err
	}
	vscale.Restore(sc, out)
	// The log-sum-exps of centred heads lack s q_i.c.
	for h := range p.Heads {
		c := centres[p.KVHead(h)]
		if c == nil {
			continue
		}
		for r := h * p.N; r < (h+1)*p.N; r++ {
			out.LSE[r] += centreShift(p, r, c)
		}
	}
	// The forward scanned the output unless told its inputs are finite;
	// since then only the log-sum-exps have changed, unless the values
	// were scaled back.
	checked := out
	if sc == nil && !q.AssumeFinite {
		checked = &attn.Output[T]{LSE: out.LSE}
	}
	if err := vscale.CheckFinite("exact", checked); err != nil {
		return attn.Stats{}, err
	}
	st.ErrorBound = pl.bound
	st.LSEBound = lseBound(p, out.LSE, pl.bound, centres)
	st.Details = map[string]any{"arithmetic": plain.String(), "centred_heads": centred, "max_logit": maxLogit(pl.stats), "values_scaled": sc != nil}
	return st, nil
}

// promoted computes a float32 problem in float64 arithmetic (its float32
// bound missed eps): inputs converted, the float64 path, outputs rounded.
func promoted[T attn.Float](ctx context.Context, workers int, p *attn.Problem[T], out *attn.Output[T]) (attn.Stats, error) {
	conv := func(x []T) []float64 {
		y := make([]float64, len(x))
		for i, v := range x {
			y[i] = float64(v)
		}
		return y
	}
	p64 := attn.Problem[float64]{Heads: p.Heads, N: p.N, M: p.M, D: p.D, E: p.E, KVHeads: p.KVHeads,
		Q: conv(p.Q), K: conv(p.K), V: conv(p.V), Scale: p.Scale, Causal: p.Causal, CausalAlign: p.CausalAlign,
		Window: p.Window, Mask: p.Mask, Sinks: p.Sinks, KeyLens: p.KeyLens, Workers: p.Workers, AssumeFinite: true}
	out64 := attn.NewOutput(&p64)
	st, err := bounded(ctx, workers, &p64, out64)
	if err != nil {
		return st, err
	}
	for i, v := range out64.O {
		out.O[i] = T(v)
	}
	copy(out.LSE, out64.LSE)
	u, _ := unitOf[T]()
	st.ErrorBound += u + vscale.SubnormalOutput(p)
	st.Details["arithmetic"] = promote.String()
	return st, nil
}

// compensate computes every row with package accurate, in parallel over
// blocks of rows: slow (scalar, about 20 times exact's float64 kernels) but
// within a few units of float64 rounding whatever the logits.
func compensate[T attn.Float](ctx context.Context, workers int, p *attn.Problem[T], out *attn.Output[T], b float64) (attn.Stats, error) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	const block = 16
	perHead := (p.N + block - 1) / block
	parallel.For(ctx, workers, p.Heads*perHead, func(t int) {
		row := make([]float64, p.E)
		h, i0 := t/perHead, t%perHead*block
		for i := i0; i < min(i0+block, p.N); i++ {
			out.LSE[h*p.N+i] = accurate.Row(p, h, i, row)
			for c, x := range row {
				out.O[(h*p.N+i)*p.E+c] = T(x)
			}
		}
	})
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}
	if err := vscale.CheckFinite("exact", out); err != nil {
		return attn.Stats{}, err
	}
	return attn.Stats{Flops: Flops(p), ErrorBound: b, LSEBound: lseBound(p, out.LSE, b, nil), Details: map[string]any{"arithmetic": compensated.String()}}, nil
}

// lseBound is Stats.LSEBound for exact attention whose output bound is b,
// on keys centred on centres[kvHead] (nil: none). Every arithmetic's bound
// (roundingBound, bf16Bound, accurate.Error) is at least 2 eta / (1 - eta),
// with eta the relative error of a row's sum, so lsebound.FromOutputBound
// applies.
func lseBound[T attn.Float](p *attn.Problem[T], lse []float64, b float64, centres [][]float64) float64 {
	return lsebound.Bound(p, lse, lsebound.FromOutputBound(b), func(h int) []float64 {
		if centres == nil {
			return nil
		}
		return centres[p.KVHead(h)]
	})
}

// centredBackward runs the backward pass on keys shifted by their centre
// where the forward shifts them: P_ij = exp(s q_i.(k_j - c) - (LSE_i -
// s q_i.c)) is then formed from small numbers (a float32 key offset of 1e8
// otherwise leaves nothing of it), dK and dV are unchanged and dQ too,
// since sum_j dS_ij = 0. It costs a copy of the keys and log-sum-exps of
// the centred heads.
func centredBackward[T attn.Float](ctx context.Context, workers int, p *attn.Problem[T], out *attn.Output[T], dO []T, g *attn.Gradients[T], k ops[T]) (attn.Stats, error) {
	if err := attn.CheckGradientSizes(p, out, dO, g); err != nil {
		return attn.Stats{}, err
	}
	stats := headKeyStats(ctx, p, workers)
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}
	centred := false
	for _, st := range stats {
		centred = centred || st.centre != nil
	}
	if !centred {
		return backward(ctx, workers, p, out, dO, g, k, out.LSE)
	}
	q := *p
	q.K = slices.Clone(p.K)
	o := &attn.Output[T]{O: out.O, LSE: slices.Clone(out.LSE)}
	d := p.D
	for kh, st := range stats {
		if st.centre == nil {
			continue
		}
		l := kvKeys(p, kh)
		centreRows(q.K[kh*p.M*d:(kh*p.M+l)*d], p.K[kh*p.M*d:(kh*p.M+l)*d], st.centre)
	}
	for h := range p.Heads {
		c := stats[p.KVHead(h)].centre
		if c == nil {
			continue
		}
		for r := h * p.N; r < (h+1)*p.N; r++ {
			o.LSE[r] -= centreShift(p, r, c)
		}
	}
	// The sinks' gradient -P_sink Delta_i is formed against the forward's
	// own log-sum-exps: the sinks are not centred.
	st, err := backward(ctx, workers, &q, o, dO, g, k, out.LSE)
	if err != nil || p.Sinks == nil {
		return st, err
	}
	// With a sink a row's dS_ij sum to Delta_i P_sink instead of 0, so
	// centring took s c Delta_i P_sink from dQ_i: give it back.
	for h := range p.Heads {
		c, sink := stats[p.KVHead(h)].centre, p.Sink(h)
		if c == nil || math.IsInf(sink, -1) {
			continue
		}
		for r := h * p.N; r < (h+1)*p.N; r++ {
			if math.IsInf(out.LSE[r], -1) {
				continue
			}
			var delta float64
			for x, v := range out.O[r*p.E : (r+1)*p.E] {
				delta += float64(v) * float64(dO[r*p.E+x])
			}
			w := p.Scale * delta * math.Exp(sink-out.LSE[r])
			dq := g.DQ[r*d : (r+1)*d]
			for t := range dq {
				dq[t] += T(w * c[t])
			}
		}
	}
	return st, nil
}

// UncentredBounds are the a priori bounds of exact attention computed as
// Workspace.Forward computes it: in T with keys as given (not centred) and
// values as given (not scaled). out is relative to max_l |V_lj| as
// Forward's ErrorBound; lse bounds the log-sum-exps, in nats, as
// Forward's LSEBound (lsebound.FromOutputBound of out plus
// lsebound.RoundingAPriori for the largest logit possible). They cost what
// Forward's certification costs: one parallel pass over the keys and
// values on workers goroutines (0: GOMAXPROCS) and one over Q. Both are
// +Inf where that arithmetic has no bound: values whose column maxima lie
// outside the range its sums keep finite and exact (Forward scales such
// values first), or logits too large for any. They do not look for NaN (a
// NaN key is ignored): callers check finiteness.
func UncentredBounds[T attn.Float](ctx context.Context, p *attn.Problem[T], workers int) (out, lse float64) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	stats := keyStatsOf(ctx, p, workers, false)
	lo, hi := valueLo64, valueHi64
	if u, _ := unitOf[T](); u != u64 {
		lo, hi = valueLo32, valueHi32
	}
	for _, m := range columnMaxima(stats) {
		if math.IsNaN(m) {
			return m, m
		}
		if m > 0 && (m < lo || m > hi) {
			return math.Inf(1), math.Inf(1)
		}
	}
	out = bound[T](p, stats)
	var rounding float64
	for h := range p.Heads {
		if l := p.KeyLen(h); l > 0 || !math.IsInf(p.Sink(h), -1) {
			rounding = max(rounding, lsebound.RoundingAPriori(stats[p.KVHead(h)].logit, p.Sink(h), l))
		}
	}
	return out, lsebound.FromOutputBound(out) + rounding
}
