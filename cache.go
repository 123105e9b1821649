package fastattn

import (
	"context"
	"math"
	"time"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/exact"
	"github.com/fastattn/fastattn/internal/kernels"
	"github.com/fastattn/fastattn/internal/lsebound"
	"github.com/fastattn/fastattn/poly"
)

// Cache is the key/value cache of one attention layer, for autoregressive
// decoding: each call appends the new tokens' keys and values and attends
// their queries causally against everything cached, the new tokens being
// the last ones (the causal mask aligned bottom-right). Prefill (many
// tokens) and decoding (one or a few per step) go through the same calls.
//
// It holds batch sequences of kvHeads key/value heads each; the sequences
// may have different lengths (see Forward's newTokens). With more query
// heads than key/value heads (CacheOptions.QueryHeads), query head h uses
// key/value head h / (QueryHeads/kvHeads): grouped-query attention, as
// PyTorch's enable_gqa.
//
// Methods (CacheOptions.Method):
//
//   - "exact" streams over the cached keys, split across the workers and
//     merged by log-sum-exp; a step allocates nothing. The keys are stored
//     once in the layout the kernels read.
//   - "poly" keeps, per key/value head, the polynomial method's key moments,
//     so a step costs O(r e) whatever the context length, with the
//     entrywise guarantee |T - Att| <= eps max_l |V_lj| at every step. Rows
//     the kept degree cannot certify are computed another way that keeps
//     the guarantee (higher degree over rebuilt moments, or exact), and the
//     step's statistics say so.
//   - "auto" runs exact attention until the context is long enough for the
//     polynomial state to pay, then poly.
//
// A Cache is not safe for concurrent use.
type Cache[T Float] struct {
	batch, kvHeads, heads, group, d, e int
	capacity                           int
	scale, eps                         float64
	method                             string
	kvFormat                           HalfFormat
	window                             int // Left, or -1
	sinks                              []float64
	assumeFinite                       bool
	lens                               []int // per sequence
	keys                               []*exact.DecodeKeys[T]
	keyNorm                            []float64 // per key head: the largest |k| appended
	keySum                             []float64 // per key head: the sum of the keys appended (d)
	keyBox                             []float64 // per key head: max |k_t| of the keys appended (d)
	valueMax                           []float64 // per key head: max |v_c| of the values appended (e)
	dec                                *exact.Decoder[T]

	ws     *poly.DecodeWorkspace[T] // nil: no polynomial states
	states []*poly.DecodeState[T]
	view   *prefixKeys[T]

	// Buffers reused by every call, sized for the largest so far.
	units    []exact.DecodeUnit[T]
	lo, hi   []int
	rowSinks []float64 // per row of a call, when there are sinks
	kRound   []T       // the call's keys and values rounded to kvFormat
	vRound   []T
	fallback []bool
	stepNew  []int
}

// CacheOptions configure a Cache. The zero value means multi-head
// attention, a cache that grows, scale 1/sqrt(d) and exact attention.
type CacheOptions struct {
	// QueryHeads is the number of query heads; 0 means as many as
	// key/value heads. It must be a multiple of them.
	QueryHeads int
	// Capacity, when positive, is the most tokens a sequence holds: the
	// storage is allocated up front and a call that would exceed it is an
	// error. 0 means the cache grows as tokens arrive.
	Capacity int
	// Scale multiplies Q K^T; 0 means 1/sqrt(d).
	Scale float64
	// Method is "exact" (the default, also for ""), "poly" or "auto".
	Method string
	// Eps is the entrywise error target of "poly" and "auto"; 0 means
	// DefaultEps.
	Eps float64
	// Workers caps the goroutines of exact decoding; 0 means GOMAXPROCS.
	Workers int
	// Window, when not nil, is a sliding window (FlashAttention-2's
	// window_size): the token at position p sees keys p - Left <= j <= p.
	// Right is capped at 0 by causality; Left = -1 is unbounded. Keys
	// leave the window as tokens arrive; the polynomial state subtracts
	// their moments (and counts them in its rounding bound).
	Window *Window
	// Sinks, when not nil, holds one logit per query head that joins each
	// row's softmax denominator without a value (as in GPT-OSS); the LSE
	// includes it. -Inf is no sink.
	Sinks []float64
	// AssumeFinite promises that Q, K and V hold no NaN or Inf, so calls
	// skip their checks for them.
	AssumeFinite bool
	// KVFormat, when Float16 or BFloat16, stores the keys and values in 16
	// bits (a float32 cache only): each call rounds the new keys and values
	// to it (to nearest, ties to even), and attention is computed on the
	// stored values in float32 with float64 sums, exact decoding reading
	// half the bytes. The zero value stores float32.
	KVFormat HalfFormat
}

// CacheStep describes one call of a Cache.
type CacheStep struct {
	// Method is what ran: "exact", "poly", or "poly+exact" when some rows
	// were computed exactly.
	Method string `json:"method"`
	// Tokens is the number of tokens appended, Context the longest
	// sequence after the call.
	Tokens  int `json:"tokens"`
	Context int `json:"context"`
	// PolyRows were computed from the polynomial state and ExactRows
	// exactly; FallbackRows of those exact rows were computed exactly
	// because the polynomial state could not certify them (a key or query
	// pushed the range beyond what the kept degree certifies, or rounding
	// would exceed eps). Rebuilds counts rebuilds of the polynomial state
	// from the cached keys.
	PolyRows     int `json:"poly_rows"`
	ExactRows    int `json:"exact_rows"`
	FallbackRows int `json:"fallback_rows"`
	Rebuilds     int `json:"rebuilds"`
	// Degree and Beta are the largest polynomial degree used and the
	// largest row range s |q| max |k - mu|.
	Degree int     `json:"degree"`
	Beta   float64 `json:"beta_max"`
	// ErrorBound is the step's entrywise bound, relative to max_l |V_lj|
	// over each row's keys: the polynomial rows' certified bound and, for
	// rows computed exactly, the a priori bound of the exact Decoder's
	// float arithmetic (exact.DecodeBound, from the largest key entries and
	// values appended since the last Reset: truncation and windows leave
	// it valid, if looser); +Inf when values lie where unscaled sums are
	// not bounded (beyond about 2^110 or below 2^-100 in float32). The
	// stored keys and values are the reference: rounding them to a 16-bit
	// KVFormat is not counted.
	ErrorBound float64 `json:"error_bound"`
	// LSEBound bounds, in nats, the error of the step's log-sum-exps
	// (Report.LSEBound).
	LSEBound float64 `json:"lse_bound"`
	Flops    float64 `json:"flops"`
	Seconds  float64 `json:"seconds"`
}

// NewCache returns an empty cache for batch sequences of kvHeads key/value
// heads, keys of d entries and values of e.
func NewCache[T Float](batch, kvHeads, d, e int, opts CacheOptions) (*Cache[T], error) {
	heads := opts.QueryHeads
	if heads == 0 {
		heads = kvHeads
	}
	switch {
	case batch < 1 || kvHeads < 1 || d < 1 || e < 1:
		return nil, invalid("cache sizes must be positive, got batch %d, key/value heads %d, d %d, e %d", batch, kvHeads, d, e)
	case heads < kvHeads || heads%kvHeads != 0:
		return nil, invalid("%d query heads is not a multiple of the %d key/value heads", heads, kvHeads)
	case opts.Capacity < 0:
		return nil, invalid("cache capacity %d is negative", opts.Capacity)
	case opts.Scale < 0 || math.IsNaN(opts.Scale) || math.IsInf(opts.Scale, 0):
		return nil, invalid("scale must be positive and finite, got %g", opts.Scale)
	case !(opts.Eps >= 0 && opts.Eps < 1):
		return nil, invalid("eps must be in [0, 1), got %g", opts.Eps)
	case opts.KVFormat != attn.NoHalf && (attn.DTypeName[T]() != "float32" || (opts.KVFormat != Float16 && opts.KVFormat != BFloat16)):
		return nil, invalid("16-bit key/value storage (%v) needs a float32 cache and Float16 or BFloat16", opts.KVFormat)
	case opts.Window != nil && opts.Window.Left < -1:
		return nil, invalid("window left %d is below -1 (unbounded)", opts.Window.Left)
	case opts.Sinks != nil && len(opts.Sinks) != heads:
		return nil, invalid("%d sinks for %d query heads; give one per query head", len(opts.Sinks), heads)
	}
	for h, s := range opts.Sinks {
		if math.IsNaN(s) || math.IsInf(s, 1) {
			return nil, invalid("sink %d is %g; sinks must be finite or -Inf", h, s)
		}
	}
	c := &Cache[T]{batch: batch, kvHeads: kvHeads, heads: heads, group: heads / kvHeads, d: d, e: e,
		capacity: opts.Capacity, scale: opts.Scale, eps: opts.Eps, method: opts.Method, window: -1,
		sinks: append([]float64(nil), opts.Sinks...), assumeFinite: opts.AssumeFinite, kvFormat: opts.KVFormat,
		lens: make([]int, batch), keyNorm: make([]float64, batch*kvHeads), keySum: make([]float64, batch*kvHeads*d),
		keyBox: make([]float64, batch*kvHeads*d), valueMax: make([]float64, batch*kvHeads*e),
		dec: exact.NewDecoder[T](opts.Workers), view: &prefixKeys[T]{}}
	if c.scale == 0 {
		c.scale = 1 / math.Sqrt(float64(d))
	}
	if opts.Window != nil {
		c.window = opts.Window.Left
	}
	if opts.Sinks == nil {
		c.sinks = nil
	}
	if c.eps == 0 {
		c.eps = DefaultEps
	}
	switch c.method {
	case "":
		c.method = "exact"
	case "exact":
	case "poly", Auto:
		ws, err := poly.NewDecodeWorkspace[T](d, e, c.scale, c.eps, 0)
		if err != nil && c.method == "poly" {
			return nil, inputError{err}
		}
		if err == nil {
			c.ws = ws
			c.states = make([]*poly.DecodeState[T], batch*kvHeads)
			for i := range c.states {
				c.states[i] = poly.NewDecodeState(ws)
			}
		}
	default:
		return nil, invalid("unknown cache method %q; choose exact, poly or %s", c.method, Auto)
	}
	c.keys = make([]*exact.DecodeKeys[T], batch*kvHeads)
	for i := range c.keys {
		c.keys[i] = exact.NewDecodeKeys[T](d, e)
		if c.kvFormat != attn.NoHalf {
			c.keys[i] = any(exact.NewDecodeKeysHalf(d, e, c.kvFormat)).(*exact.DecodeKeys[T])
		}
		if c.capacity > 0 {
			c.keys[i].Reserve(c.capacity)
		}
	}
	return c, nil
}

// Len returns the number of tokens cached for sequence b.
func (c *Cache[T]) Len(b int) int { return c.lens[b] }

// Reset empties every sequence, keeping the storage.
func (c *Cache[T]) Reset() {
	clear(c.lens)
	clear(c.keyNorm)
	clear(c.keySum)
	clear(c.keyBox)
	clear(c.valueMax)
	for i, kv := range c.keys {
		kv.Truncate(0)
		if c.states != nil {
			c.states[i].Reset()
		}
	}
}

// Truncate drops the last drop tokens of sequence b (speculative decoding
// rejecting a draft), or of every sequence if b is -1.
func (c *Cache[T]) Truncate(b, drop int) error {
	if b < -1 || b >= c.batch {
		return invalid("sequence %d is outside [0, %d)", b, c.batch)
	}
	for s := range c.batch {
		if (b == -1 || s == b) && (drop < 0 || drop > c.lens[s]) {
			return invalid("cannot drop %d tokens of sequence %d, which holds %d", drop, s, c.lens[s])
		}
	}
	for s := range c.batch {
		if b != -1 && s != b {
			continue
		}
		c.lens[s] -= drop
		for h := range c.kvHeads {
			c.keys[s*c.kvHeads+h].Truncate(c.lens[s])
			// The polynomial state no longer matches the cache: its
			// next step rebuilds it from the keys that remain.
			if c.states != nil {
				c.states[s*c.kvHeads+h].Reset()
			}
		}
	}
	return nil
}

// Forward appends the keys k (batch, kvHeads, n, d) and values v
// (batch, kvHeads, n, e) of n new tokens to every sequence and returns the
// attention of their queries q (batch, heads, n, d), causally against
// every cached token: the output is (batch, heads, n, e). A cache of one
// sequence also takes (heads, n, ...) tensors, and one of a single head
// (n, ...).
func (c *Cache[T]) Forward(ctx context.Context, q, k, v Tensor[T]) (*Result[T], error) {
	return c.ForwardRagged(ctx, q, k, v, nil)
}

// ForwardRagged is Forward for sequences that add different numbers of
// tokens: sequence b adds the first newTokens[b] of the n tokens of the
// tensors (the rest are padding, whose output rows are zero with LSE -Inf).
// nil means n for every sequence.
func (c *Cache[T]) ForwardRagged(ctx context.Context, q, k, v Tensor[T], newTokens []int) (*Result[T], error) {
	n, err := c.tokens(q, k, v)
	if err != nil {
		return nil, err
	}
	lead := q.Shape[:len(q.Shape)-2]
	out := Tensor[T]{Data: make([]T, c.batch*c.heads*n*c.e), Shape: append(append([]int(nil), lead...), n, c.e)}
	lse := Tensor[float64]{Data: make([]float64, c.batch*c.heads*n), Shape: append(append([]int(nil), lead...), n)}
	st, err := c.Step(ctx, out.Data, lse.Data, q, k, v, newTokens)
	if err != nil {
		return nil, err
	}
	m := 0
	for _, l := range c.lens {
		m = max(m, l)
	}
	rep := Report{CallReport: CallReport{Method: st.Method, DType: attn.DTypeName[T](),
		Batch: c.batch * c.heads, N: n, M: m, D: c.d, E: c.e, Scale: c.scale, Causal: true, Eps: c.eps,
		Seconds: st.Seconds, Flops: st.Flops, GFlops: st.Flops / st.Seconds / 1e9,
		Version: Version(), Kernels: kernels.Implementation()}, ErrorBound: st.ErrorBound, LSEBound: st.LSEBound}
	if c.kvFormat != attn.NoHalf {
		rep.KVFormat = c.kvFormat.String()
	}
	if c.ws != nil {
		rep.Details = map[string]any{"poly_rows": st.PolyRows, "exact_rows": st.ExactRows, "fallback_rows": st.FallbackRows,
			"rebuilds": st.Rebuilds, "degree_max": st.Degree, "beta_max": st.Beta}
	}
	return &Result[T]{Out: out, LSE: lse, Report: rep}, nil
}

// Append adds the keys k (batch, kvHeads, n, d) and values v
// (batch, kvHeads, n, e) of n tokens to every sequence (the first
// newTokens[b] to sequence b; nil means all n) without attending any query:
// a prompt whose outputs are not needed. The polynomial states take the
// keys in too.
func (c *Cache[T]) Append(k, v Tensor[T], newTokens []int) error {
	n, err := c.tokens(Tensor[T]{}, k, v)
	if err != nil {
		return err
	}
	if err := c.checkTokens(n, newTokens); err != nil {
		return err
	}
	if err := c.checkFinite(nil, k.Data, v.Data); err != nil {
		return err
	}
	k.Data, v.Data = c.rounded(k.Data, v.Data)
	c.append(k.Data, v.Data, n)
	for b, nb := range c.stepNew {
		for g := range c.kvHeads {
			if c.states == nil {
				break
			}
			kv := c.keys[b*c.kvHeads+g]
			base := (b*c.kvHeads + g) * n
			chunk := c.polyChunk()
			for i0 := 0; i0 < nb; i0 += chunk {
				cn := min(chunk, nb-i0)
				c.view.kv, c.view.n = kv, c.lens[b]+i0+cn
				c.states[b*c.kvHeads+g].Append(c.view, c.keyFrom(c.lens[b]+i0), k.Data[(base+i0)*c.d:(base+i0+cn)*c.d], v.Data[(base+i0)*c.e:(base+i0+cn)*c.e], cn)
			}
		}
		c.lens[b] += nb
	}
	return nil
}

// tokens checks the shapes of a call and returns its n. A q without a
// shape is not checked (Append).
func (c *Cache[T]) tokens(q, k, v Tensor[T]) (int, error) {
	n := -1
	for _, t := range []struct {
		name        string
		t           Tensor[T]
		heads, last int
	}{{"Q", q, c.heads, c.d}, {"K", k, c.kvHeads, c.d}, {"V", v, c.kvHeads, c.e}} {
		if t.t.Shape == nil && t.name == "Q" {
			continue
		}
		if err := t.t.check(t.name); err != nil {
			return 0, inputError{err}
		}
		s := t.t.Shape
		want := []int{c.batch, t.heads}
		ok := len(s) >= 2 && len(s) <= 4
		if ok {
			lead := s[:len(s)-2]
			// Leading dimensions of 1 may be left out.
			for len(lead) < 2 {
				lead = append([]int{1}, lead...)
			}
			ok = lead[0] == want[0] && lead[1] == want[1] && s[len(s)-1] == t.last && (n < 0 || s[len(s)-2] == n)
		}
		if !ok {
			return 0, invalid("%s has shape %v; the cache wants (%d, %d, n, %d) with the same n for Q, K and V", t.name, s, c.batch, t.heads, t.last)
		}
		n = s[len(s)-2]
	}
	if n == 0 {
		return 0, invalid("no tokens: K has shape %v", k.Shape)
	}
	return n, nil
}

// Step is Forward writing into out (the output, batch*heads*n*e values)
// and lse (batch*heads*n), which it does not allocate: with exact
// attention, a decoding step allocates nothing once the cache has room.
// It returns the step's statistics. An error in the input or options
// leaves the cache unchanged; after a cancellation (or an overflow of the
// logits) the tokens stay appended, and Truncate removes them.
func (c *Cache[T]) Step(ctx context.Context, out []T, lse []float64, q, k, v Tensor[T], newTokens []int) (CacheStep, error) {
	start := time.Now()
	var st CacheStep
	n, err := c.tokens(q, k, v)
	if err != nil {
		return st, err
	}
	rows := c.batch * c.heads * n
	if len(out) != rows*c.e || len(lse) != rows {
		return st, invalid("the output needs %d values and the LSE %d, got %d and %d", rows*c.e, rows, len(out), len(lse))
	}
	if err := c.checkTokens(n, newTokens); err != nil {
		return st, err
	}
	for _, nb := range c.stepNew {
		st.Tokens += nb
	}
	if err := c.checkFinite(q.Data, k.Data, v.Data); err != nil {
		return st, err
	}
	k.Data, v.Data = c.rounded(k.Data, v.Data)
	c.append(k.Data, v.Data, n)
	c.rowRanges(n)
	st, err = c.attend(ctx, out, lse, q.Data, k.Data, v.Data, n, st)
	for b, nb := range c.stepNew {
		c.lens[b] += nb
		st.Context = max(st.Context, c.lens[b])
	}
	st.Seconds = time.Since(start).Seconds()
	return st, err
}

// checkTokens checks the new-token counts of a call of n tokens against
// the capacity and sets c.stepNew.
func (c *Cache[T]) checkTokens(n int, newTokens []int) error {
	if newTokens != nil && len(newTokens) != c.batch {
		return invalid("%d new-token counts for %d sequences", len(newTokens), c.batch)
	}
	c.stepNew = c.stepNew[:0]
	for b := range c.batch {
		nb := n
		if newTokens != nil {
			nb = newTokens[b]
		}
		if nb < 0 || nb > n {
			return invalid("sequence %d adds %d tokens, outside [0, %d]", b, nb, n)
		}
		if c.capacity > 0 && c.lens[b]+nb > c.capacity {
			return invalid("sequence %d holds %d tokens and adds %d, above the capacity %d", b, c.lens[b], nb, c.capacity)
		}
		c.stepNew = append(c.stepNew, nb)
	}
	return nil
}

// checkFinite refuses NaN and Inf inputs, unless the caller promised none.
func (c *Cache[T]) checkFinite(q, k, v []T) error {
	if c.assumeFinite {
		return nil
	}
	for _, t := range []struct {
		name string
		x    []T
	}{{"Q", q}, {"K", k}, {"V", v}} {
		if i := attn.FirstNonFinite(t.x); i >= 0 {
			return invalid("%s has a non-finite value %v at flat index %d", t.name, t.x[i], i)
		}
	}
	return nil
}

// rounded returns the keys and values as the cache stores them: copies
// rounded to its 16-bit format (which the polynomial states then see), or
// k and v themselves.
func (c *Cache[T]) rounded(k, v []T) ([]T, []T) {
	if c.kvFormat == attn.NoHalf {
		return k, v
	}
	c.kRound, c.vRound = grow(c.kRound, len(k)), grow(c.vRound, len(v))
	copy(c.kRound, k)
	copy(c.vRound, v)
	return c.keys[0].Round(c.kRound), c.keys[0].Round(c.vRound)
}

// append stores the new tokens' keys and values.
func (c *Cache[T]) append(k, v []T, n int) {
	d, e := c.d, c.e
	for b, nb := range c.stepNew {
		for h := range c.kvHeads {
			kv := c.keys[b*c.kvHeads+h]
			base := (b*c.kvHeads + h) * n
			for i := range nb {
				key := k[(base+i)*d : (base+i+1)*d]
				kv.Append(key, v[(base+i)*e:(base+i+1)*e])
				var s float64
				sum := c.keySum[(b*c.kvHeads+h)*d : (b*c.kvHeads+h+1)*d]
				box := c.keyBox[(b*c.kvHeads+h)*d : (b*c.kvHeads+h+1)*d]
				for t, x := range key {
					s += float64(x) * float64(x)
					sum[t] += float64(x)
					box[t] = max(box[t], math.Abs(float64(x)))
				}
				vmax := c.valueMax[(b*c.kvHeads+h)*e : (b*c.kvHeads+h+1)*e]
				for x, y := range v[(base+i)*e : (base+i+1)*e] {
					vmax[x] = max(vmax[x], math.Abs(float64(y)))
				}
				c.keyNorm[b*c.kvHeads+h] = max(c.keyNorm[b*c.kvHeads+h], math.Sqrt(s))
			}
		}
	}
}

// rowRanges sets the key range (and sink) of every query row of the call:
// token i of sequence b sits at position p = lens[b] + i and sees keys
// p - Left..p (0..p without a window); padding rows see none.
func (c *Cache[T]) rowRanges(n int) {
	rows := c.batch * c.heads * n
	c.lo, c.hi = grow(c.lo, rows), grow(c.hi, rows)
	c.fallback = grow(c.fallback, rows)
	if c.sinks != nil {
		c.rowSinks = grow(c.rowSinks, rows)
	}
	for b, nb := range c.stepNew {
		for h := range c.heads {
			for i := range n {
				r := (b*c.heads+h)*n + i
				c.lo[r], c.hi[r] = 0, 0
				if i < nb {
					c.lo[r], c.hi[r] = c.keyFrom(c.lens[b]+i), c.lens[b]+i+1
				}
				if c.sinks != nil {
					c.rowSinks[r] = math.Inf(-1)
					if i < nb {
						c.rowSinks[r] = c.sinks[h]
					}
				}
			}
		}
	}
}

// keyFrom is the first key the token at position p sees.
func (c *Cache[T]) keyFrom(p int) int {
	if c.window < 0 {
		return 0
	}
	return max(0, p-c.window)
}

func grow[S ~[]E, E any](s S, n int) S {
	if cap(s) < n {
		return make(S, n)
	}
	return s[:n]
}

// attend computes every row: per (sequence, key/value head), through the
// polynomial state or exactly.
func (c *Cache[T]) attend(ctx context.Context, out []T, lse []float64, q, k, v []T, n int, st CacheStep) (CacheStep, error) {
	d, e, G := c.d, c.e, c.group
	c.units = c.units[:0]
	// unit adds rows r0..r0+rows-1 of the call to the exact units.
	unit := func(kv *exact.DecodeKeys[T], r0, rows int) {
		u := exact.DecodeUnit[T]{Keys: kv, Rows: rows,
			Q: q[r0*d : (r0+rows)*d], Out: out[r0*e : (r0+rows)*e], LSE: lse[r0 : r0+rows],
			Lo: c.lo[r0 : r0+rows], Hi: c.hi[r0 : r0+rows]}
		if c.sinks != nil {
			u.Sinks = c.rowSinks[r0 : r0+rows]
		}
		c.units = append(c.units, u)
	}
	usedPoly := false
	for b, nb := range c.stepNew {
		for g := range c.kvHeads {
			kv := c.keys[b*c.kvHeads+g]
			r0 := (b*c.heads + g*G) * n // the group's first row
			if nb == 0 || !c.usePoly(b, g, nb, q[r0*d:], n) {
				unit(kv, r0, G*n)
				st.ExactRows += G * nb
				continue
			}
			usedPoly = true
			// Padding rows are computed (as empty) by the exact units.
			for i := nb; i < n; i++ {
				for h := range G {
					unit(kv, r0+h*n+i, 1)
				}
			}
			fallbacks := 0
			state := c.states[b*c.kvHeads+g]
			base := (b*c.kvHeads + g) * n
			chunk := c.polyChunk()
			for i0 := 0; i0 < nb; i0 += chunk {
				cn := min(chunk, nb-i0)
				c.view.kv, c.view.n = kv, c.lens[b]+i0+cn
				rows := poly.DecodeRows[T]{Q: q[(r0+i0)*d:], Out: out[(r0+i0)*e:], LSE: lse[r0+i0:],
					Heads: G, Stride: n, Fallback: c.fallback[r0+i0:]}
				if c.sinks != nil {
					rows.Sinks = c.sinks[g*G : (g+1)*G]
				}
				ps, err := state.Step(c.view, c.keyFrom(c.lens[b]+i0), k[(base+i0)*d:(base+i0+cn)*d], v[(base+i0)*e:(base+i0+cn)*e], cn, &rows)
				if err != nil {
					return st, err
				}
				st.PolyRows += ps.PolyRows
				fallbacks += ps.FallbackRows
				st.Rebuilds += ps.Rebuilds
				st.Degree = max(st.Degree, ps.Degree)
				st.Beta = max(st.Beta, ps.Beta)
				st.ErrorBound = max(st.ErrorBound, ps.Bound)
				st.LSEBound = max(st.LSEBound, ps.LSEBound)
				st.Flops += 2 * float64(ps.Rank*(e+1)) * float64(cn*(1+G))
				for h := range G {
					for i := i0; i < i0+cn; i++ {
						if c.fallback[r0+h*n+i] {
							unit(kv, r0+h*n+i, 1)
						}
					}
				}
			}
			st.FallbackRows += fallbacks
			st.ExactRows += fallbacks
		}
	}
	st.Method = "exact"
	if usedPoly {
		st.Method = "poly"
		if st.ExactRows > 0 {
			st.Method = "poly+exact"
		}
	}
	st.Flops += exact.DecodeFlops(c.units)
	if st.ExactRows == 0 {
		return st, c.dec.Attend(ctx, c.units, c.scale)
	}
	eb := c.exactBound(q, n)
	st.ErrorBound = max(st.ErrorBound, eb)
	if err := c.dec.Attend(ctx, c.units, c.scale); err != nil {
		return st, err
	}
	// The Decoder's bound has exact attention's form, 2 eta / (1 - eta)
	// and more; it does not centre the keys.
	var worst float64
	for _, u := range c.units {
		for r, l := range u.LSE[:u.Rows] {
			if !math.IsInf(l, -1) {
				sink := math.Inf(-1)
				if u.Sinks != nil {
					sink = u.Sinks[r]
				}
				worst = max(worst, lsebound.Rounding[T](nil, nil, c.scale, sink, l, u.Keys.Len()))
			}
		}
	}
	st.LSEBound = max(st.LSEBound, lsebound.FromOutputBound(eb)+worst)
	return st, nil
}

// exactBound is the a priori bound of the exact Decoder on this call's
// rows: per (sequence, key/value head), B from the group's queries and the
// keys' largest entries, over the sequence's keys after the call.
func (c *Cache[T]) exactBound(q []T, n int) float64 {
	d, e, G := c.d, c.e, c.group
	var bound float64
	for b, nb := range c.stepNew {
		for g := range c.kvHeads {
			if nb == 0 {
				continue
			}
			kh := b*c.kvHeads + g
			box := c.keyBox[kh*d : (kh+1)*d]
			var big float64
			r0 := (b*c.heads + g*G) * n
			for r := r0; r < r0+G*n; r++ {
				var s float64
				for t, x := range q[r*d : (r+1)*d] {
					s += math.Abs(float64(x)) * box[t]
				}
				big = max(big, s)
			}
			// The sum above rounds d times: (1 + (d+2) u) covers it.
			big *= math.Abs(c.scale) * (1 + float64(d+2)*0x1p-53)
			bound = max(bound, exact.DecodeBound[T](big, d, c.lens[b]+nb, c.valueMax[kh*e:(kh+1)*e]))
		}
	}
	return bound
}

// polyChunk is how many tokens a polynomial state takes at once: with a
// window the first key moves every token, so one.
func (c *Cache[T]) polyChunk() int {
	if c.window >= 0 {
		return 1
	}
	return poly.DecodeChunk
}

// usePoly decides whether key/value head g of sequence b runs through its
// polynomial state this call, whose nb tokens have queries q (the group's
// rows, n per head): always for "poly"; for "auto" once the state exists,
// or once reading the cached keys costs more than the polynomial of the
// degree the range suggests.
func (c *Cache[T]) usePoly(b, g, nb int, q []T, n int) bool {
	if c.ws == nil {
		return false
	}
	st := c.states[b*c.kvHeads+g]
	if c.method == "poly" || st.Built() {
		return true
	}
	// The range s |q| max |k - mean| is at most s |q| (max |k| + |mean|),
	// from running sums: enough to skip the state while the context is
	// short (the state certifies its own range when built).
	d := c.d
	var mean, qmax float64
	L := c.lens[b] + nb
	for _, x := range c.keySum[(b*c.kvHeads+g)*d : (b*c.kvHeads+g+1)*d] {
		mean += (x / float64(L)) * (x / float64(L))
	}
	for h := range c.group {
		for i := range nb {
			var s float64
			for _, x := range q[(h*n+i)*d : (h*n+i+1)*d] {
				s += float64(x) * float64(x)
			}
			qmax = max(qmax, s)
		}
	}
	beta := c.scale * math.Sqrt(qmax) * (c.keyNorm[b*c.kvHeads+g] + math.Sqrt(mean))
	_, r, err := c.ws.DegreeFor(beta)
	if err != nil {
		return false
	}
	if c.window >= 0 {
		L = min(L, c.window+1)
	}
	return float64(L)*float64(c.d+c.e)*float64(c.group) > 4*float64(r)*float64(c.e+1)*float64(1+c.group)
}

// prefixKeys shows the first n keys of a store, for the polynomial state
// (which sees the call's tokens one chunk at a time).
type prefixKeys[T Float] struct {
	kv *exact.DecodeKeys[T]
	n  int
}

func (p *prefixKeys[T]) Len() int                 { return p.n }
func (p *prefixKeys[T]) Key(j int, dst []float64) { p.kv.Key(j, dst) }
func (p *prefixKeys[T]) Value(j int) []T          { return p.kv.Value(j) }
