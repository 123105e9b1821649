package exact

import (
	"context"
	"math"
	"runtime"
	"slices"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/kernels"
	"github.com/fastattn/fastattn/internal/parallel"
	"github.com/fastattn/fastattn/internal/vscale"
)

// bfloat16 attention on hardware bfloat16 products.
//
// When the queries, keys, values and output are all bfloat16 and the CPU
// multiplies bfloat16 in hardware (kernels.PackedBF16Fast: AMX's tile
// units, or else AVX512_BF16's VDPBF16PS where that beats widening), the
// forward pass multiplies the bfloat16 values as given instead of widening
// them to float32: S = Q K^T in float32 (each product of two bfloat16
// values is exact, the sums float32), the online softmax in float32 and
// float64 as on the float32 path, then P V with P in bfloat16 and float32
// sums. P is stored in bfloat16 one of two ways:
//
//   - rounded once (FlashAttention-3 rounds P to FP8 the same way): each
//     weight gains a relative error up to 2^-8, so the bound is about
//     2^-7 max|V| and only an eps at least that loose allows it;
//   - split in two, P = hi + lo with hi and lo bfloat16 (kernels.SplitBF16):
//     two products instead of one, and the weights are within 2^-16 of the
//     float32 ones, so the bound is close to the float32 path's. This is
//     the default: with eps = 0 (no target; then its bound must be at most
//     1e-3) and whenever eps is below the rounded storage's bound (the
//     default eps, 1e-3, is).
//
// The keys are not centred (their centred values would have to be rounded
// back to bfloat16), so the logits' bound uses the keys as given; when the
// bound misses eps, or the inputs hold subnormal numbers (AMX and
// VDPBF16PS read them as zero), NaN or Inf, or values beyond float32 sums'
// range, the problem goes to the float32 path instead.

// Tile sizes of the bfloat16 path: query rows per task (a multiple of AMX's
// 16 rows) and keys per tile (a multiple of its 32-deep k step).
const (
	bf16QueryTile = 64
	bf16KeyTile   = 512
)

// bf16Mode is how P is stored for the P V product.
type bf16Mode int

const (
	bf16Rounded bf16Mode = iota // P rounded to bfloat16 once
	bf16Split                   // P = hi + lo, two bfloat16 products
)

// String names the mode and the instructions the products run on here, as
// the report's details give them.
func (m bf16Mode) String() string {
	engine := "VDPBF16PS"
	if kernels.AMX() {
		engine = "AMX tiles"
	}
	return "bfloat16 on " + engine + [...]string{", P rounded to bfloat16", ", P split into two bfloat16 terms"}[m]
}

// Test hooks: testForceBF16Mode picks the P storage whatever eps says
// (the bound reported is still that mode's); testNoBF16Tiles turns the
// bfloat16 path off, for tests of the float32 path on bfloat16 inputs.
var (
	testForceBF16Mode *bf16Mode
	testNoBF16Tiles   bool
)

// bf16NoTarget is the bound the bfloat16 path must meet when eps is 0 (no
// target): with values so small that flushing to zero matters, or
// logits so large, its bound grows past what the float32 path (which
// scales values and centres keys) would give, and that path runs instead.
const bf16NoTarget = 1e-3

// bf16Plan is the bfloat16 path's decision for one problem.
type bf16Plan struct {
	mode  bf16Mode
	bound float64 // before the output's rounding to bfloat16
	logit float64 // B, as keyStats.logit but for the keys as given
}

// bf16MinRows is how many query rows a key/value head must have (its
// group's heads times N) for the bfloat16 path: it scans and packs every
// key and value of the head, which few rows do not repay. With 8 query heads
// on 2 key/value heads, d = 128, bfloat16 output, AMX took 2.4-2.5 ms at
// 4096 keys and 20-21 ms at 32768 for 1-16 rows per query head (4-64
// rows per key/value head); the float32 path, planned, took 1.7 and 13.6
// ms at 8 rows (32 per key/value head), 2.3 and 18.7 at 16, 3.4 and 26 at
// 32 (AMX 2.7 and 22), and in one pass (speculate.go) 2.8 and 20 at 32,
// 5.2 and 36 at 64 (AMX 3.8 and 30). It is a constant measured here, not
// timed at start-up as the planners' rates are: the path decides the
// arithmetic, and a call's result should not depend on how fast the
// machine was when the process started. On VDPBF16PS (a Zen 4, the same
// shapes, best of 15 calls alternating) 128 rows per key/value head took
// 3.3 ms against the float32 path's 3.5 at 4096 keys and 26 against 23 at
// 32768, and 256 rows 5.8 against 6.9 and 45 against 46: the crossover
// lies a little above 128 there, close enough to keep one constant.
// Tests set it to 0 to run the bfloat16 kernels on small shapes.
var bf16MinRows = 128

// bf16Applies reports whether p goes to the bfloat16 path: bfloat16
// queries, keys and values (the output in bfloat16 or float32), no mask
// tensor, more than bf16MinRows query rows per key/value head, hardware
// bfloat16 products here. Without AMX that rests on kernels.BF16Dot, which
// times VDPBF16PS against the float32 FMAs once per process: on the cores
// measured their flop rates differ twofold (VDPBF16PS twice as fast on Zen
// 4, half as fast on the first Xeon), so the choice, and with it the
// arithmetic, does not change from one process to the next.
func bf16Applies(p *attn.Problem[float32]) bool {
	return p.KVFormat == attn.BFloat16 && p.Q16 != nil && p.Mask == nil && p.Group()*p.N > bf16MinRows && !testNoBF16Tiles && kernels.PackedBF16Fast()
}

// bf16Scan is one pass over rows of bfloat16 values: per column the
// largest magnitude's bits (magnitudes of bfloat16 values order as their
// bits without the sign), and the least of (bits without the sign) - 1
// over all values. A value is NaN or Inf when its column's bits reach
// 0x7f80 and there is a subnormal number when the least is below 0x7f, so
// the pass needs only integer max and min.
type bf16Scan struct {
	colMax  []uint16
	leastM1 uint16
}

func newBF16Scan(cols int) bf16Scan {
	return bf16Scan{colMax: make([]uint16, cols), leastM1: math.MaxUint16}
}

// add scans x, whole rows of len(s.colMax) values.
func (s *bf16Scan) add(x []uint16) {
	s.leastM1 = kernels.ColumnMaxAbsBits16(x, len(s.colMax), s.colMax, s.leastM1)
}

func (s *bf16Scan) merge(o bf16Scan) {
	for t, v := range o.colMax {
		s.colMax[t] = max(s.colMax[t], v)
	}
	s.leastM1 = min(s.leastM1, o.leastM1)
}

// normal reports whether every value scanned is zero or a finite normal
// number.
func (s *bf16Scan) normal() bool {
	return s.leastM1 >= 0x7f && slices.Max(append(s.colMax, 0)) < 0x7f80
}

func bf16f(x uint16) float64 { return float64(math.Float32frombits(uint32(x) << 16)) }

// absDotBF16 is sum_t |q_t| box_t in float64, over four running sums (one
// sum's chain of dependent additions took 155 µs for 4096 rows at d = 64
// on one core, four 121); the order of the additions does not change the
// gamma_d bound planBF16 allows for them.
func absDotBF16(q []uint16, box []float64) float64 {
	box = box[:len(q)]
	var s0, s1, s2, s3 float64
	t := 0
	for ; t+4 <= len(q); t += 4 {
		s0 += bf16f(q[t]&0x7fff) * box[t]
		s1 += bf16f(q[t+1]&0x7fff) * box[t+1]
		s2 += bf16f(q[t+2]&0x7fff) * box[t+2]
		s3 += bf16f(q[t+3]&0x7fff) * box[t+3]
	}
	for ; t < len(q); t++ {
		s0 += bf16f(q[t]&0x7fff) * box[t]
	}
	return (s0 + s1) + (s2 + s3)
}

// bf16ScanRows is how many query rows one task of planBF16's scans reads.
const bf16ScanRows = 1024

// planBF16 measures p's inputs and decides: ok false sends p to the
// float32 path. The bound follows bound.go's, with three changes: the
// logits use the keys as given (B from their box, not the centred one),
// each weight gains the storage's rounding (2^-8 rounded, 2^-16 split),
// and the flushing of subnormal results to zero (AMX and VDPBF16PS both
// flush; at most 2^-125 per product and sum) adds absolute terms:
// s d 2^-125 to each logit, and to the output, relative to its value
// column's max c, l 2^-126 (weights below 2^-126 stored as zero) plus
// steps·2^-125 / c (the P V sums, steps = l or 2l products per entry).
//
// Each key tile is packed into buf (bf16Buffers.pack) as soon as it is
// scanned, while it is in cache: read again after the scans, the inputs
// came from memory, and packing them took 2% of a call at d = 64,
// n = 4096. When ok is false that packing was for nothing.
func planBF16(ctx context.Context, p *attn.Problem[float32], workers int, buf *bf16Buffers) (bf16Plan, bool) {
	d, e := p.D, p.E
	kvh := p.KVHeadCount()
	// Keys and values, a key tile per task.
	type task struct{ kh, b, j0, j1 int }
	var tasks []task
	for kh := range kvh {
		for j := 0; j < kvKeys(p, kh); j += bf16KeyTile {
			tasks = append(tasks, task{kh, j / bf16KeyTile, j, min(j+bf16KeyTile, kvKeys(p, kh))})
		}
	}
	buf.size(p)
	keys, vals := make([]bf16Scan, len(tasks)), make([]bf16Scan, len(tasks))
	parallel.For(ctx, workers, len(tasks), func(x int) {
		tk := tasks[x]
		keys[x], vals[x] = newBF16Scan(d), newBF16Scan(e)
		keys[x].add(p.K16[(tk.kh*p.M+tk.j0)*d : (tk.kh*p.M+tk.j1)*d])
		vals[x].add(p.V16[(tk.kh*p.M+tk.j0)*e : (tk.kh*p.M+tk.j1)*e])
		buf.pack(p, tk.kh, tk.b)
	})
	box, colMax := make([][]float64, kvh), make([][]float64, kvh)
	for kh := range kvh {
		k, v := newBF16Scan(d), newBF16Scan(e)
		for x, tk := range tasks {
			if tk.kh == kh {
				k.merge(keys[x])
				v.merge(vals[x])
			}
		}
		if !k.normal() || !v.normal() {
			return bf16Plan{}, false
		}
		box[kh], colMax[kh] = make([]float64, d), make([]float64, e)
		for t, b := range k.colMax {
			box[kh][t] = bf16f(b)
		}
		for c, b := range v.colMax {
			colMax[kh][c] = bf16f(b)
		}
	}
	// B = s max_i sum_t |q_it| box_t, over chunks of query rows; the
	// queries are checked in the same pass.
	qTasks := (p.Heads*p.N + bf16ScanRows - 1) / bf16ScanRows
	logits, qScans := make([]float64, qTasks), make([]bf16Scan, qTasks)
	parallel.For(ctx, workers, qTasks, func(x int) {
		r0, r1 := x*bf16ScanRows, min((x+1)*bf16ScanRows, p.Heads*p.N)
		q := p.Q16[r0*d : r1*d]
		qScans[x] = newBF16Scan(d)
		qScans[x].add(q)
		var big float64
		for r := r0; r < r1; r++ {
			big = max(big, absDotBF16(q[(r-r0)*d:(r-r0+1)*d], box[p.KVHead(r/p.N)]))
		}
		logits[x] = big
	})
	if ctx.Err() != nil {
		return bf16Plan{}, false
	}
	var pl bf16Plan
	for x := range qScans {
		if !qScans[x].normal() {
			return bf16Plan{}, false
		}
		pl.logit = max(pl.logit, logits[x])
	}
	// Dot products beyond 2^120 could overflow float32's partial sums.
	if pl.logit*(1+float64(d+2)*u64) >= 0x1p120 {
		return bf16Plan{}, false
	}
	pl.logit *= p.Scale * (1 + float64(d+2)*u64)
	// The smallest nonzero value column max (a zero column's output is
	// exactly zero) and the largest, which must keep a tile's float32 P V
	// sums finite.
	// A query head that sees fewer keys than another of its group is
	// measured in its own unit, which may be smaller (vscale.ShorterHeads).
	smallest := smallestColumnMax(slices.Concat(colMax...), vscale.ShorterHeads(p))
	largest, l := 0.0, 0
	for kh, cm := range colMax {
		l = max(l, kvKeys(p, kh))
		largest = max(largest, slices.Max(append(cm, 0)))
	}
	if largest > valueHi32 {
		return bf16Plan{}, false
	}
	if math.IsInf(smallest, 1) {
		smallest = 1 // every value is zero: so is every output, exactly
	}
	boundOf := func(mode bf16Mode) float64 {
		return bf16Bound(mode, pl.logit, p.Scale, d, l, smallest)
	}
	target := p.Eps
	if target == 0 {
		target = bf16NoTarget
	}
	switch {
	case testForceBF16Mode != nil:
		pl.mode = *testForceBF16Mode
	case p.Eps > 0 && boundOf(bf16Rounded) <= p.Eps:
		pl.mode = bf16Rounded
	case boundOf(bf16Split) <= target:
		pl.mode = bf16Split
	default:
		return bf16Plan{}, false
	}
	pl.bound = boundOf(pl.mode)
	return pl, !math.IsInf(pl.bound, 1)
}

// bf16Bound is the bfloat16 path's bound (see planBF16) for logits up to b,
// scale s, head dimension d, rows of at most l keys and value columns
// whose nonzero maxima are at least smallest.
func bf16Bound(mode bf16Mode, b, s float64, d, l int, smallest float64) float64 {
	const u = 0x1p-24
	uw, terms := 0x1p-8, float64(bf16KeyTile)
	if mode == bf16Split {
		uw, terms = 0x1p-16, 2*bf16KeyTile
	}
	// The last term is s log2 e formed in float64 for the base-2
	// exponential, as roundingBound's.
	delta := gammaOf(float64(d+5), u)*b + s*float64(d)*0x1p-125*(1+float64(d+5)*u) + 2*u64*b
	tau := math.Exp(delta)*(1+expErr32)*(1+u)*(1+uw) - 1
	eta := tau + gammaOf(terms, u) + gammaOf(float64(l/bf16KeyTile+4), u64)
	if !(eta < 0.5) {
		return math.Inf(1)
	}
	flush := float64(l)*0x1p-126 + terms/bf16KeyTile*float64(l)*0x1p-125/smallest
	return 2*eta/(1-eta) + u + 2*u64 + 2*flush
}

// bf16ShiftLag is how far, in base-2 units, a row's scores in a tile may
// rise above its running max and still be weighed against it: weights up
// to 2^4, which leave the bound as it is (see lagShifts).
const bf16ShiftLag = 4

// lagShifts forms the bfloat16 weights and sums of the first rows rows of
// the scores s (cols of them, a multiple of 16, every row with a running
// max) against each row's running max, and learns each row's max score in
// the same pass (Exp2RowsMaxBF16): the pass over the scores that finds the
// maxima first took 4.6-7% of a call's CPU time at d = 64, n = 4096 in
// profiles, and the call 3.5-7% longer than now. A row whose scores
// rise more than bf16ShiftLag above its running max is done again with the
// new max (grow). The others keep their running max, so their weights may
// reach 2^bf16ShiftLag, which changes nothing the bound rests on: each
// weight's relative error is the same at any size; the sum is still at
// least 1 (it holds the weight, 1, of the score that set the max); and a
// tile's float32 P V sums stay below 2^9 * 2^4 * 2^110 (valueHi32), under
// float32's 2^128. The scores are finite: planBF16 admits only normal
// inputs whose dot products stay below 2^120.
func (st *bf16State) lagShifts(s []float32, rows, cols int, scale float32, lo []uint16, grow func(r int, mx float32)) {
	const kt = bf16KeyTile
	for r := range rows {
		st.shifts[r] = float32(st.rowMax[r])
		st.alpha[r] = 1
	}
	kernels.Exp2RowsMaxBF16(s, kt, rows, cols, scale, st.shifts[:rows], st.sums[:rows], st.hi, lo)
	for r := range rows {
		mx := st.shifts[r] // the row's max score now
		if float64(scale*mx) <= st.rowMax[r]+bf16ShiftLag {
			continue
		}
		grow(r, mx)
		st.shifts[r] = float32(st.rowMax[r])
		var rowLo []uint16
		if lo != nil {
			rowLo = lo[r*kt:]
		}
		kernels.Exp2RowsBF16(s[r*kt:], kt, 1, cols, scale, st.shifts[r:r+1], st.sums[r:r+1], st.hi[r*kt:], rowLo)
	}
}

// bf16State is one worker's scratch space.
type bf16State struct {
	q              []uint16  // the query tile, rows and head dimension zero-padded
	s              []float32 // scores, then weights, bf16QueryTile x bf16KeyTile
	hi, lo         []uint16  // the weights in bfloat16 (lo: split mode)
	pv             []float32 // one tile's P V
	acc            []float64 // the unnormalised output
	rowMax, rowSum []float64
	natMax         []float64 // each row's largest logit as the natural exponential rounds it
	alpha          []float64
	lo0, hi0       []int // each row's key range
	// The row-block softmax kernels' per-row maxima, shifts and sums.
	blockMax, shifts, sums []float32
}

// size gives st the buffers of tiles of head dimension dp and value
// dimensions ep (both padded) and e, for P stored as mode says; their
// contents are unspecified (tile clears what it reads before writing it).
func (st *bf16State) size(dp, ep, e int, mode bf16Mode) {
	const qt, kt = bf16QueryTile, bf16KeyTile
	st.q, st.s, st.hi, st.pv = resized(st.q, qt*dp), resized(st.s, qt*kt), resized(st.hi, qt*kt), resized(st.pv, qt*ep)
	st.acc = resized(st.acc, qt*e)
	st.rowMax, st.rowSum, st.natMax, st.alpha = resized(st.rowMax, qt), resized(st.rowSum, qt), resized(st.natMax, qt), resized(st.alpha, qt)
	st.lo0, st.hi0 = resized(st.lo0, qt), resized(st.hi0, qt)
	st.blockMax, st.shifts, st.sums = resized(st.blockMax, qt), resized(st.shifts, qt), resized(st.sums, qt)
	if mode == bf16Split {
		st.lo = resized(st.lo, qt*kt)
	}
}

// bf16Buffers are a bfloat16 call's packed keys and values and its workers'
// states, kept for the next call (a stream of calls of one shape then
// allocates nothing: made afresh, their zeroing took 4% of a call at
// d = 64, n = 4096).
type bf16Buffers struct {
	kp, vp []uint16
	states []*bf16State
}

var bf16Recycled recycler[bf16Buffers]

// bf16Layout is where a problem's packed keys and values lie in
// bf16Buffers: keys packed once per head for Q K^T, kLen values a head;
// values packed per key tile for P V (so a tile's product starts at the
// tile's own k = 0), vLen a head, vLen/blocks a tile.
func bf16Layout(p *attn.Problem[float32]) (kLen, vLen, blocks int) {
	blocks = (p.M + bf16KeyTile - 1) / bf16KeyTile
	return kernels.PackedBF16Len(p.M, p.D), blocks * kernels.PackedBF16Len(p.E, bf16KeyTile), blocks
}

// size gives b the packed keys and values of p. They are left as the last
// call left them: every block a product reads is packed, and packing
// clears what it covers.
func (b *bf16Buffers) size(p *attn.Problem[float32]) {
	kLen, vLen, _ := bf16Layout(p)
	kvh := p.KVHeadCount()
	b.kp, b.vp = resized(b.kp, kvh*kLen), resized(b.vp, kvh*vLen)
}

// pack packs key tile t of key/value head kh of p into b (sized for p).
func (b *bf16Buffers) pack(p *attn.Problem[float32], kh, t int) {
	d, e := p.D, p.E
	kLen, vLen, blocks := bf16Layout(p)
	j0 := t * bf16KeyTile
	// Only the keys some row attends are packed (the rest stay zero):
	// padding beyond a head's key length may hold anything.
	kb := min(bf16KeyTile, kvKeys(p, kh)-j0)
	if kb <= 0 {
		return
	}
	// A tile of keys is its own run of panels in the packed keys.
	kernels.PackBF16NT(b.kp[kh*kLen+j0*roundUp(d, 32):], kb, d, p.K16[(kh*p.M+j0)*d:], d)
	kernels.PackBF16NN(b.vp[kh*vLen+t*vLen/blocks:], kb, e, p.V16[(kh*p.M+j0)*e:], e)
}

// forwardBF16 is exact attention on bfloat16 products for a problem
// bf16Applies to and planBF16 accepted, with the keys and values planBF16
// packed into buf, into out.O16 (rounded to bfloat16) or out.O.
func forwardBF16(ctx context.Context, workers int, p *attn.Problem[float32], out *attn.Output[float32], pl bf16Plan, buf *bf16Buffers) (attn.Stats, error) {
	d, e := p.D, p.E
	dp, ep := roundUp(d, 32), roundUp(e, 16)
	kLen, vLen, blocks := bf16Layout(p)
	kp, vp := buf.kp, buf.vp
	tiles := (p.N + bf16QueryTile - 1) / bf16QueryTile
	if workers <= 0 {
		workers = 1
	}
	for len(buf.states) < min(workers, p.Heads*tiles) {
		buf.states = append(buf.states, new(bf16State))
	}
	states := buf.states[:min(workers, p.Heads*tiles)]
	for _, st := range states {
		st.size(dp, ep, e, pl.mode)
	}
	parallel.ForEach(ctx, states, 0, p.Heads*tiles, func(st *bf16State, t int) {
		h, i0 := t/tiles, t%tiles*bf16QueryTile
		kh := p.KVHead(h)
		st.tile(ctx, p, out, pl.mode, h, i0, kp[kh*kLen:(kh+1)*kLen], vp[kh*vLen:(kh+1)*vLen], vLen/blocks)
	})
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}
	bound := pl.bound
	if out.O16 != nil {
		bound += outputRounding(p, attn.BFloat16)
	}
	return attn.Stats{
		Flops:      Flops(p),
		ErrorBound: bound,
		LSEBound:   lseBound(p, out.LSE, pl.bound, nil),
		Details:    map[string]any{"arithmetic": pl.mode.String(), "centred_heads": 0, "max_logit": pl.logit},
	}, nil
}

func roundUp(x, m int) int { return (x + m - 1) / m * m }

// tile computes output rows i0.. of query head h (at most bf16QueryTile)
// against the packed keys kp and values vp (vBlock values per key tile).
func (st *bf16State) tile(ctx context.Context, p *attn.Problem[float32], out *attn.Output[float32], mode bf16Mode, h, i0 int, kp, vp []uint16, vBlock int) {
	d, e := p.D, p.E
	dp, ep := roundUp(d, 32), roundUp(e, 16)
	rows := min(bf16QueryTile, p.N-i0)
	rp := roundUp(rows, 16)
	q := st.q[:rp*dp]
	clear(q)
	for r := range rows {
		copy(q[r*dp:r*dp+d], p.Q16[(h*p.N+i0+r)*d:])
	}
	ja, jb := p.M, 0
	maxLo, minHi := 0, p.M // the keys every row of the tile sees
	for r := range rows {
		lo, hi := p.KeyRange(h, i0+r)
		st.lo0[r], st.hi0[r] = lo, hi
		if lo < hi {
			ja, jb = min(ja, lo), max(jb, hi)
		}
		maxLo, minHi = max(maxLo, lo), min(minHi, hi)
		st.rowMax[r], st.rowSum[r] = math.Inf(-1), 0
	}
	acc := st.acc[:rows*e]
	clear(acc)
	keys := kvKeys(p, p.KVHead(h))
	var lo []uint16 // P's remainders, when P is split
	if mode == bf16Split {
		lo = st.lo
	}
	// The weights come from a base-2 exponential of the logits times
	// log2 e, as on the float32 path (attendRows, which says why): the
	// running maxima are in base-2 units, rounded as the exp kernels
	// round scale*x, and natMax keeps each row's largest logit as the
	// natural exponential would round it, the max its log-sum-exp is
	// built on.
	scale, natScale := float32(p.Scale*math.Log2E), float32(p.Scale)
	// grow folds the largest dot product mx of row r in this tile into
	// its running max, rescaling its sum (alpha says by how much).
	grow := func(r int, mx float32) {
		st.alpha[r] = 1
		tileMax := float64(scale * mx)
		if tileMax > st.rowMax[r] {
			alpha := math.Exp2(st.rowMax[r] - tileMax)
			st.alpha[r] = alpha
			st.rowSum[r] *= alpha
			st.rowMax[r] = tileMax
			st.natMax[r] = float64(natScale * mx)
		}
	}
	for j0, n := ja/bf16KeyTile*bf16KeyTile, 0; j0 < jb; j0, n = j0+bf16KeyTile, n+1 {
		if n%cancelCheckTiles == cancelCheckTiles-1 && ctx.Err() != nil {
			return
		}
		cols := min(bf16KeyTile, jb-j0)
		// The P V product's depth (only the tile's keys a row may attend:
		// short on the causal diagonal) and the depth its values were
		// packed for.
		kc, kPacked := roundUp(cols, 32), roundUp(min(bf16KeyTile, keys-j0), 32)
		s := st.s[:rp*bf16KeyTile]
		kernels.GemmPackedBF16(rp, roundUp(cols, 16), dp, q, dp, kp[j0*dp:], s, bf16KeyTile, false)
		// A tile every row sees whole, with finite scores, goes through
		// the softmax in two calls for all its rows (the row-block
		// kernels, whole vectors only) instead of two per row, the second
		// storing the weights in bfloat16 for the P V product directly.
		blockRows := 0
		whole := j0 >= maxLo && j0+cols <= minHi && cols%16 == 0
		switch {
		case whole && !slices.ContainsFunc(st.rowMax[:rows], func(m float64) bool { return math.IsInf(m, -1) }):
			// Every row has seen keys: its weights are taken against its
			// running max as it stands, and the tile's maxima come out of
			// the same pass (the scores are finite: see lagShifts).
			st.lagShifts(s, rows, cols, scale, lo, grow)
		case whole && kernels.MaxRows32(s, bf16KeyTile, rows, cols, st.blockMax[:rows]):
			for r, mx := range st.blockMax[:rows] {
				grow(r, mx)
				st.shifts[r] = float32(st.rowMax[r])
			}
			kernels.Exp2RowsBF16(s, bf16KeyTile, rows, cols, scale, st.shifts[:rows], st.sums[:rows], st.hi, lo)
		default:
			whole = false
		}
		if whole {
			for r, sum := range st.sums[:rows] {
				st.rowSum[r] += float64(sum)
				// The padding up to kc weighs zero.
				clear(st.hi[r*bf16KeyTile+cols : r*bf16KeyTile+kc])
				if lo != nil {
					clear(lo[r*bf16KeyTile+cols : r*bf16KeyTile+kc])
				}
			}
			blockRows = rows
		}
		for r := blockRows; r < rp; r++ {
			row := s[r*bf16KeyTile : r*bf16KeyTile+kc]
			st.alpha[r] = 1
			a, b := 0, 0
			if r < rows {
				a, b = min(max(st.lo0[r]-j0, 0), cols), min(max(st.hi0[r]-j0, 0), cols)
			}
			if a >= b {
				clear(row)
				continue
			}
			grow(r, kernels.Max32(row[a:b]))
			st.rowSum[r] += float64(kernels.Exp2ShiftSum32(row[a:b], scale, float32(st.rowMax[r])))
			// Keys outside the row's range (and the padding up to kc)
			// weigh zero.
			clear(row[:a])
			clear(row[b:])
		}
		// The other rows' weights to bfloat16.
		if rest := s[blockRows*bf16KeyTile:]; len(rest) > 0 {
			if lo != nil {
				kernels.SplitBF16(st.hi[blockRows*bf16KeyTile:], lo[blockRows*bf16KeyTile:], rest)
			} else {
				kernels.Float32ToBF16(st.hi[blockRows*bf16KeyTile:], rest)
			}
		}
		vt := vp[j0/bf16KeyTile*vBlock:]
		pv := st.pv[:rp*ep]
		kernels.GemmPackedBF16Prefix(rp, ep, kc, kPacked, st.hi, bf16KeyTile, vt, pv, ep, false)
		if lo != nil {
			kernels.GemmPackedBF16Prefix(rp, ep, kc, kPacked, lo, bf16KeyTile, vt, pv, ep, true)
		}
		if ep == e && allOne(st.alpha[:rows]) {
			// No row's max moved: one call for the tile.
			kernels.Accumulate32(acc, 1, pv[:rows*e])
			continue
		}
		for r := range rows {
			kernels.Accumulate32(acc[r*e:(r+1)*e], st.alpha[r], pv[r*ep:r*ep+e])
		}
	}
	for r := range rows {
		if !math.IsInf(st.rowMax[r], -1) {
			st.rowMax[r] = st.natMax[r]
		}
	}
	lse := out.LSE[h*p.N+i0:]
	for r := range rows {
		x0 := (h*p.N + i0 + r) * e
		if out.O16 == nil {
			lse[r] = finishRow(out.O[x0:x0+e], acc[r*e:(r+1)*e], st.rowMax[r], st.rowSum[r], p.Sink(h))
		} else {
			lse[r] = finishRow16(out.O16[x0:x0+e], attn.BFloat16, acc[r*e:(r+1)*e], st.rowMax[r], st.rowSum[r], p.Sink(h))
		}
	}
}

// forward32BF16 is Forward32's bfloat16 path: ok false when it does not
// apply (and then nothing was written).
func forward32BF16(ctx context.Context, workers int, p *attn.Problem[float32], out *attn.Output[float32]) (attn.Stats, bool, error) {
	if !bf16Applies(p) {
		return attn.Stats{}, false, nil
	}
	if p.Workers > 0 {
		workers = p.Workers
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	buf := bf16Recycled.get()
	if buf == nil {
		buf = new(bf16Buffers)
	}
	defer bf16Recycled.put(buf)
	pl, ok := planBF16(ctx, p, workers, buf)
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, true, err
	}
	if !ok {
		return attn.Stats{}, false, nil
	}
	st, err := forwardBF16(ctx, workers, p, out, pl, buf)
	return st, true, err
}
