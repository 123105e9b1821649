package exact

import (
	"context"
	"math"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/kernels"
	"github.com/fastattn/fastattn/internal/vscale"
)

// Certified decoding in one pass over the keys and values.
//
// A certified call measures every key and value before it computes (the
// key statistics: the keys' bounding box, which decides the centring and
// bounds the logits, and the values' column maxima), then reads them all
// again to compute. In a decoding-shaped call both passes stream the keys
// and values from L3 or memory, and the first took as long as the second.
// Such calls are computed first as if the statistics will ask for nothing
// (no centring, no scaling of the values, the input's own arithmetic),
// each key and value tile measured by the worker that reads it, while it
// is in cache. If the statistics, complete at the end, agree, the result
// is the one the plan would have computed, bit for bit (the same call of
// forward, and the minima and maxima do not depend on the order they are
// taken in), with the same bound; if not (keys to centre, values to
// scale, a bound above p.Eps, a NaN or an Inf), the output is restored
// and the call planned as usual, after one wasted pass. 16-bit keys and
// values (Forward32) are widened a tile at a time, and the planned call
// they are compared with is the one on their widened copies.

// keyScan is one worker's measurements of the key and value tiles it
// reads (attendRows), per key/value head: the keys' lower and upper ends
// per coordinate (d each) and the bits of the values' largest magnitude
// per column (e each, in bits32 for float32 and bits64 for float64).
type keyScan[T attn.Float] struct {
	on     bool
	d, e   int
	lo, hi []T
	bits32 []uint32 // float32 values
	bits64 []uint64 // float64 values
}

// reset makes s measure kvh heads of d-wide keys and e-wide values, from
// nothing.
func (s *keyScan[T]) reset(kvh, d, e int) {
	s.on, s.d, s.e = true, d, e
	s.lo, s.hi = resized(s.lo, kvh*d), resized(s.hi, kvh*d)
	for t := range s.lo {
		s.lo[t], s.hi[t] = T(math.Inf(1)), T(math.Inf(-1))
	}
	if _, is32 := any(T(0)).(float32); is32 {
		s.bits32 = resized(s.bits32, kvh*e)
		clear(s.bits32)
	} else {
		s.bits64 = resized(s.bits64, kvh*e)
		clear(s.bits64)
	}
}

// add measures keys k and values v (whole rows) of key/value head kh.
func (s *keyScan[T]) add(kh int, k, v []T) {
	s.addKeys(kh, k)
	s.addValues(kh, v)
}

// addKeys measures keys k (whole rows) of key/value head kh.
func (s *keyScan[T]) addKeys(kh int, k []T) {
	d := s.d
	switch k := any(k).(type) {
	case []float32:
		kernels.ColumnRange32(k, d, any(s.lo[kh*d:(kh+1)*d]).([]float32), any(s.hi[kh*d:(kh+1)*d]).([]float32))
	case []float64:
		kernels.ColumnRange64(k, d, any(s.lo[kh*d:(kh+1)*d]).([]float64), any(s.hi[kh*d:(kh+1)*d]).([]float64))
	}
}

// addValues measures values v (whole rows) of key/value head kh.
func (s *keyScan[T]) addValues(kh int, v []T) {
	e := s.e
	switch v := any(v).(type) {
	case []float32:
		kernels.ColumnMaxAbsBits32(v, e, s.bits32[kh*e:(kh+1)*e])
	case []float64:
		kernels.ColumnMaxAbsBits64(v, e, s.bits64[kh*e:(kh+1)*e])
	}
}

// mergeInto widens merged (finishKeyStats' layout) by s's measurements.
func (s *keyScan[T]) mergeInto(merged []float64) {
	d, e := s.d, s.e
	w := 2*d + e
	_, is32 := any(T(0)).(float32)
	for h := range len(s.lo) / max(d, 1) {
		m := merged[h*w : (h+1)*w]
		for t := range d {
			m[t] = min(m[t], float64(s.lo[h*d+t]))
			m[d+t] = max(m[d+t], float64(s.hi[h*d+t]))
		}
		for c := range e {
			// Unsigned, the bits order the magnitudes, a NaN above Inf.
			var x float64
			if is32 {
				x = float64(math.Float32frombits(s.bits32[h*e+c]))
			} else {
				x = math.Float64frombits(s.bits64[h*e+c])
			}
			m[2*d+c] = max(m[2*d+c], x)
		}
	}
}

// testNoSpeculation, set by tests, makes bounded plan every call first
// (to compare the two).
var testNoSpeculation = false

// decodingShaped reports whether p may be computed in one pass
// (speculated): queries not in 16 bits, keys and values that no key/value
// head packs (its group's queries make one tile: tileRows), and tiles
// whose keys reach every key the statistics measure (kvKeys), so that the
// tiles read are all the keys measured. 16-bit keys and values are
// widened a tile at a time, so each tile is the planned call's widened
// copy of it.
func decodingShaped[T attn.Float](p *attn.Problem[T]) bool {
	g, n := p.Group(), p.N
	if p.Q16 != nil || n >= queryTile/2 || g*n > queryTile {
		return false
	}
	for kh := range p.KVHeadCount() {
		if lo, hi := tileKeys(p, kh*g*n, g*n); hi > lo && (lo > 0 || hi < kvKeys(p, kh)) {
			return false
		}
	}
	return true
}

// speculated is bounded for a decoding-shaped p in one pass (see above).
// It reports false, with out as it was, when p is not decoding-shaped or
// its statistics ask for more than the pass did; the caller then plans p
// (or its widened copy) as usual.
func speculated[T attn.Float](ctx context.Context, workers int, p *attn.Problem[T], out *attn.Output[T]) (attn.Stats, bool, error) {
	st, _, ok, err := speculate(ctx, workers, p, out)
	return st, ok, err
}

// speculate is speculated, also returning the statistics of a pass it
// kept.
func speculate[T attn.Float](ctx context.Context, workers int, p *attn.Problem[T], out *attn.Output[T]) (attn.Stats, []keyStats, bool, error) {
	if testNoSpeculation || !decodingShaped(p) {
		return attn.Stats{}, nil, false, nil
	}
	savedO, savedLSE := append([]T(nil), out.O...), append([]float64(nil), out.LSE...)
	restore := func() (attn.Stats, []keyStats, bool, error) {
		copy(out.O, savedO)
		copy(out.LSE, savedLSE)
		return attn.Stats{}, nil, false, nil
	}
	st, stats, err := scannedForward(ctx, workers, p, out)
	if ctx.Err() != nil {
		return attn.Stats{}, nil, true, ctx.Err()
	}
	if err != nil {
		return restore()
	}
	b := bound[T](p, stats)
	lo, hi := valueLo64, valueHi64
	if u, _ := unitOf[T](); u != u64 {
		lo, hi = valueLo32, valueHi32
	}
	if math.IsNaN(b) || math.IsInf(b, 0) || (p.Eps != 0 && b > p.Eps) || vscale.Needed(columnMaxima(stats), lo, hi) || vscale.CheckFinite("exact", out) != nil {
		return restore()
	}
	for _, s := range stats {
		if s.centre != nil {
			return restore()
		}
	}
	st.ErrorBound = b
	st.LSEBound = lseBound(p, out.LSE, b, nil)
	st.Details = map[string]any{"arithmetic": plain.String(), "centred_heads": 0, "max_logit": maxLogit(stats), "values_scaled": false}
	return st, stats, true, nil
}

// speculatedHalf is speculated for 16-bit keys and values, whose queries
// or output may be in 16 bits as well (AttendHalf): the queries, few in
// a decoding-shaped call, are widened first, and the output is rounded
// once the pass is kept, its rounding added to the bound as halfOutput
// adds it. What it computes is then what halfOutput or measuredFirst
// computes on the widened problem, bit for bit.
func speculatedHalf(ctx context.Context, workers int, p *attn.Problem[float32], out *attn.Output[float32]) (attn.Stats, bool, error) {
	if p.Q16 == nil && out.O16 == nil {
		return speculated(ctx, workers, p, out)
	}
	if testNoSpeculation || p.N >= queryTile/2 {
		return attn.Stats{}, false, nil // not decoding-shaped: Q need not be widened
	}
	wp, o := p, out
	if p.Q16 != nil {
		w := *p
		w.Q, w.Q16 = make([]float32, len(p.Q16)), nil
		widen(p.KVFormat, w.Q, p.Q16)
		wp = &w
	}
	if out.O16 != nil {
		o = &attn.Output[float32]{O: make([]float32, len(out.O16)), LSE: out.LSE}
	}
	st, stats, ok, err := speculate(ctx, workers, wp, o)
	if !ok || err != nil || out.O16 == nil {
		return st, ok, err
	}
	for i, x := range o.O {
		out.O16[i] = attn.Float32ToHalf(p.KVFormat, x)
	}
	// The pass measured each group's values over the keys any of its
	// heads sees, as vscale.ColumnMax.
	st.ErrorBound += roundingTo(p.KVFormat, columnMaxima(stats), vscale.ShorterHeads(p))
	return st, true, nil
}

// scannedForward is forward (without centring) measuring every key and
// value tile it reads, and the key statistics made of the measurements.
func scannedForward[T attn.Float](ctx context.Context, workers int, p *attn.Problem[T], out *attn.Output[T]) (attn.Stats, []keyStats, error) {
	ws, rec := getWorkspace[T]()
	defer rec.put(ws)
	ws.scanning = true
	st, err := ws.forward(ctx, workers, p, out, nil)
	ws.scanning = false
	d, e := p.D, p.E
	w := 2*d + e
	merged := make([]float64, p.KVHeadCount()*w)
	for h := range p.KVHeadCount() {
		for t := range d {
			merged[h*w+t], merged[h*w+d+t] = math.Inf(1), math.Inf(-1)
		}
	}
	for _, ts := range ws.states {
		if ts.scan.on {
			ts.scan.mergeInto(merged)
			ts.scan.on = false
		}
	}
	// The measurements are of the widened values: the statistics are
	// those of the widened problem, which is what the planned call
	// measures (finishKeyStats would measure 16-bit values again).
	wide := *p
	wide.KVFormat = attn.NoHalf
	return st, finishKeyStats(&wide, merged, true, workers), err
}
