// Package fastattn computes softmax attention, exactly or approximately with
// a certified entrywise error bound:
//
//	Att(Q, K, V) = softmax(scale * Q K^T) V
//
// Inputs are row-major tensors of rank 2 (n, d), 3 (heads, n, d) or 4
// (batch, heads, n, d), as PyTorch lays them out, in float32 or float64. The
// default scale is 1/sqrt(d), as in PyTorch's scaled_dot_product_attention;
// the papers behind the approximate methods use 1/d (see PaperScale).
//
// Every approximate result satisfies, for every output entry,
//
//	|T_ij - Att_ij| <= eps * max_l |V_lj|
//
// and its Report says which method ran and what bound it guarantees.
//
// The default method is exact attention; Options.Method names another
// ("poly", "anytemp") or "auto" for the fastest predicted to meet eps. A
// method asked for by name runs unless it cannot certify eps (an error
// matching ErrUnsupported); when it was predicted slower than exact
// attention, its Report says so. The algorithms, their error bounds and the
// hardness results behind them are described in the repository's
// docs/ALGORITHMS.md.
package fastattn

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/exact"
)

// Float is the set of supported element types.
type Float = attn.Float

// Tensor is a dense row-major array: Data holds prod(Shape) elements.
type Tensor[T Float] struct {
	Data  []T
	Shape []int
}

// NewTensor wraps data with a shape, checking that the sizes agree.
func NewTensor[T Float](data []T, shape ...int) (Tensor[T], error) {
	t := Tensor[T]{Data: data, Shape: shape}
	if err := t.check("tensor"); err != nil {
		return Tensor[T]{}, err
	}
	return t, nil
}

func (t Tensor[T]) check(name string) error { return checkShape(name, t.Shape, len(t.Data)) }

// checkShape checks that shape has size elements.
func checkShape(name string, shape []int, size int) error {
	n := 1
	for _, s := range shape {
		if s < 0 {
			return fmt.Errorf("%s has a negative dimension in shape %v", name, shape)
		}
		if s > 0 && n > math.MaxInt/s {
			return fmt.Errorf("%s has shape %v, whose size overflows an int", name, shape)
		}
		n *= s
	}
	if n != size {
		return fmt.Errorf("%s has shape %v (%d elements) but %d data values", name, shape, n, size)
	}
	return nil
}

// MaxOutputElements caps heads*n*e: 2^34 elements is 64 GiB of float32.
const MaxOutputElements = 1 << 34

// DefaultEps is the error target of approximate methods when Options.Eps is 0.
const DefaultEps = 1e-3

// Options tune Attend. The zero value means exact-or-better defaults: scale
// 1/sqrt(d), no mask, the default method and DefaultEps.
type Options struct {
	// Scale multiplies Q K^T; 0 means 1/sqrt(d). PaperScale(d) gives 1/d.
	Scale float64

	// Causal masks key j for query i when j > i + L - n, L being the number
	// of valid keys: aligned bottom-right, like FlashAttention >= 2.1. For
	// n == L this is the usual j > i; when decoding with a key cache (n < L)
	// the last query sees every key; when n > L the first n - L queries see
	// none. CausalAlign = TopLeft gives PyTorch's is_causal (j > i).
	Causal bool

	// CausalAlign is the corner the causal mask and Window are aligned to:
	// BottomRight (the zero value) or TopLeft.
	CausalAlign CausalAlignment

	// Window, when not nil, is a sliding window with FlashAttention-2's
	// window_size semantics: query i sees keys j with
	// i + L - n - Left <= j <= i + L - n + Right (i - Left <= j <= i + Right
	// with TopLeft); -1 leaves a side unbounded. It combines with Causal
	// (which caps Right at 0) and KeyLengths.
	Window *Window

	// Mask, when not nil, is PyTorch's attn_mask: boolean (true = takes
	// part) or additive (added to the scaled logits, -Inf allowed), of a
	// shape that broadcasts to (batch, query heads, n, m). See BoolMask and
	// AdditiveMask.
	Mask *Mask

	// Sinks, when not nil, holds one logit per query head (the heads of
	// one batch element; one entry for 2-D inputs) that joins each row's
	// softmax denominator and carries no value, as GPT-OSS's sinks:
	// out_i = sum_j e^{l_ij} v_j / (e^{sink} + sum_j e^{l_ij}). The LSE
	// includes it. -Inf is no sink.
	Sinks []float64

	// KeyLengths holds the number of valid keys per sequence (the rest are
	// padding): one entry per batch element, shared by its heads, one per
	// query head (batch*heads entries) or one per key/value head. nil
	// means every key is valid.
	KeyLengths []int

	// Method names the algorithm: "exact", "poly", ..., "auto" to let the
	// planner pick the fastest that meets Eps, or "" for DefaultMethod.
	// See Methods.
	Method string

	// Eps is the entrywise error target of approximate methods, relative to
	// each value column's largest magnitude; 0 means DefaultEps.
	Eps float64

	// Workers caps the goroutines one call uses; 0 means GOMAXPROCS. A
	// server running several calls side by side can give each a share.
	Workers int

	// AssumeFinite promises that Q, K and V hold no NaN or Inf, so the
	// call skips its checks for them. With a broken promise the output is
	// unspecified.
	AssumeFinite bool
}

// CausalAlignment is the corner the causal mask and windows are aligned
// to: BottomRight (FlashAttention >= 2.1, the default) or TopLeft
// (PyTorch's is_causal).
type CausalAlignment = attn.CausalAlignment

// The causal alignments.
const (
	BottomRight = attn.BottomRight
	TopLeft     = attn.TopLeft
)

// Window is a sliding window, FlashAttention-2's window_size = (Left,
// Right); -1 means unbounded on that side. See Options.Window.
type Window = attn.Window

// Mask is a mask tensor, PyTorch's attn_mask, made by BoolMask or
// AdditiveMask.
type Mask struct {
	bools []bool
	add   []float64
	shape []int
}

// BoolMask returns a boolean mask of the given shape (rank 1 to 4,
// broadcasting to (batch, query heads, n, m) as in PyTorch): true means
// the key takes part. data is used, not copied.
func BoolMask(data []bool, shape ...int) (*Mask, error) {
	m := &Mask{bools: data, shape: slices.Clone(shape)}
	return m, m.check(len(data))
}

// AdditiveMask returns an additive mask of the given shape (rank 1 to 4,
// broadcasting to (batch, query heads, n, m)): its values are added to the
// scaled logits; -Inf excludes a key. float64 data is used, not copied;
// float32 data is converted once here. NaN and +Inf are refused.
func AdditiveMask[T Float](data []T, shape ...int) (*Mask, error) {
	m := &Mask{shape: slices.Clone(shape)}
	if d, ok := any(data).([]float64); ok {
		m.add = d
	} else {
		m.add = make([]float64, len(data))
		for i, x := range data {
			m.add[i] = float64(x)
		}
	}
	if err := m.check(len(data)); err != nil {
		return nil, err
	}
	for i, x := range m.add {
		if math.IsNaN(x) || math.IsInf(x, 1) {
			return nil, invalid("additive mask entry %d is %v; use finite values or -Inf", i, x)
		}
	}
	return m, nil
}

func (m *Mask) check(n int) error {
	if len(m.shape) < 1 || len(m.shape) > 4 {
		return invalid("a mask has rank 1 to 4, got shape %v", m.shape)
	}
	if err := checkShape("mask", m.shape, n); err != nil {
		return inputError{err}
	}
	return nil
}

// Shape returns the mask's shape.
func (m *Mask) Shape() []int { return slices.Clone(m.shape) }

// broadcast resolves the mask against the target shape (batch, query
// heads, n, m) (batch and heads 1 when the inputs have no such dimension).
func (m *Mask) broadcast(target [4]int) (*attn.Mask, error) {
	var strides [4]int
	stride := 1
	for x := 1; x <= len(m.shape); x++ {
		dim := m.shape[len(m.shape)-x]
		t := 1
		if x <= 4 {
			t = target[4-x]
		}
		switch {
		case dim == t && dim != 1:
			if x <= 4 {
				strides[4-x] = stride
			}
		case dim == 1:
		default:
			return nil, invalid("mask shape %v does not broadcast to (batch, heads, n, m) = %v", m.shape, target)
		}
		stride *= dim
	}
	return &attn.Mask{
		Bool: m.bools, Add: m.add, HeadsPerBatch: target[1],
		BatchStride: strides[0], HeadStride: strides[1], RowStride: strides[2], ColStride: strides[3],
	}, nil
}

// PaperScale returns 1/d, the scale used by Alman & Song and Gupta et al.
func PaperScale(d int) float64 { return 1 / float64(d) }

// Report describes one call: what ran, on what, how fast and how accurately.
type Report struct {
	CallReport
	KeyLengths []int   `json:"key_lengths,omitempty"` // per head, when padding was used
	ErrorBound float64 `json:"error_bound"`
	// LSEBound bounds, in nats, how far each row's log-sum-exp
	// (Result.LSE) is from the log of the row's exact sum, rounding
	// included. Merge weighs its parts by their log-sum-exps, so their
	// errors join its ErrorBound through it.
	LSEBound float64 `json:"lse_bound"`
	// ObservedError is, for approximate methods, the largest error measured
	// on SampledRows rows recomputed with an accurate reference, relative to
	// max_l |V_lj| like ErrorBound; both are 0 when no row was sampled.
	ObservedError float64 `json:"observed_error"`
	SampledRows   int     `json:"sampled_rows"`
}

// Result is the output of Attend.
type Result[T Float] struct {
	// Out has Q's leading shape and V's last dimension.
	Out Tensor[T]
	// LSE has Q's shape without its last dimension and holds each row's
	// log(sum_j exp(scale q_i.k_j)) over the valid keys: -Inf for a row with
	// no valid key, whose output row is zero. Merge and gradients use it.
	LSE    Tensor[float64]
	Report Report
}

// methods maps names to implementations. Each method other than exact
// registers itself from a file of its own (methods_NAME.go).
var methods = map[string]attn.Method{
	"exact": exact.Method{},
}

// registerMethod adds a method; called from init functions.
func registerMethod(m attn.Method) { methods[m.Name()] = m }

// DefaultMethod is used when Options.Method is empty.
const DefaultMethod = "exact"

// Methods lists the method names Options.Method accepts.
func Methods() []string {
	names := make([]string, 0, len(methods))
	for n := range methods {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ErrInvalidInput is wrapped by every error caused by the caller's input or
// options (as opposed to cancellation or an internal failure).
var ErrInvalidInput = errors.New("invalid input")

func invalid(format string, args ...any) error {
	return inputError{fmt.Errorf(format, args...)}
}

// inputError is an error in the caller's input: it matches ErrInvalidInput
// under errors.Is without repeating "invalid input" in every message.
type inputError struct{ err error }

func (e inputError) Error() string        { return "fastattn: " + e.err.Error() }
func (e inputError) Unwrap() error        { return e.err }
func (e inputError) Is(target error) bool { return target == ErrInvalidInput }

// Attend computes attention of q (..., n, d) against k (..., m, d) and
// v (..., m, e). The leading dimensions of the three must be equal. It
// returns ctx.Err() if ctx is cancelled first.
func Attend[T Float](ctx context.Context, q, k, v Tensor[T], opts Options) (*Result[T], error) {
	p, lead, err := problem(q, k, v, opts)
	if err != nil {
		return nil, err
	}
	return attend(ctx, p, lead, opts)
}

// attend runs the method opts name (or the planner's choice) on p.
func attend[T Float](ctx context.Context, p *attn.Problem[T], lead []int, opts Options) (*Result[T], error) {
	out := attn.NewOutput(p)
	rep, err := run(ctx, p, opts, out)
	if err != nil {
		return nil, err
	}
	return &Result[T]{
		Out:    Tensor[T]{Data: out.O, Shape: append(slices.Clone(lead), p.N, p.E)},
		LSE:    Tensor[float64]{Data: out.LSE, Shape: append(slices.Clone(lead), p.N)},
		Report: rep,
	}, nil
}

// run runs the method opts name (or the planner's choice) on p into out.
func run[T Float](ctx context.Context, p *attn.Problem[T], opts Options, out *attn.Output[T]) (Report, error) {
	var err error
	name, reason := opts.Method, ""
	if name == "" {
		name, reason = DefaultMethod, "default method"
	}
	if name == Auto {
		if name, reason, err = choose(p); err != nil {
			return Report{}, err
		}
	}
	m, ok := methods[name]
	if !ok {
		return Report{}, invalid("unknown method %q; choose one of %v or %s", name, Methods(), Auto)
	}
	note, slower := slowerThanExact(p, opts.Method)
	start := time.Now()
	st, err := attn.Forward(ctx, m, p, out)
	if err != nil && opts.Method == Auto && name != DefaultMethod && errors.Is(err, attn.ErrUnsupported) {
		// The planner's estimate was wrong about applicability: exact
		// attention always applies, so fall back rather than fail.
		reason += fmt.Sprintf("; %s then declined (%v), so %s ran", name, err, DefaultMethod)
		name, m = DefaultMethod, methods[DefaultMethod]
		start = time.Now()
		st, err = attn.Forward(ctx, m, p, out)
	}
	if errors.Is(err, attn.ErrBadProblem) {
		return Report{}, inputError{methodError(name, "", err)}
	}
	if err != nil {
		return Report{}, fmt.Errorf("fastattn: %w", methodError(name, "", err))
	}
	secs := time.Since(start).Seconds()
	rep := Report{CallReport: newCallReport(name, p, secs, st), KeyLengths: p.KeyLens, ErrorBound: st.ErrorBound,
		LSEBound: st.LSEBound, ObservedError: st.ObservedError, SampledRows: st.SampledRows}
	rep.Reason, rep.Note, rep.PredictedSlowerThanExact = reason, note, slower
	return rep, nil
}

// recordOptions records p's options beyond the classic ones in r.
func recordOptions[T Float](r *CallReport, p *attn.Problem[T]) {
	if p.KVHeads != p.Heads {
		r.KVHeads = p.KVHeads
	}
	if p.CausalAlign != BottomRight {
		r.CausalAlign = p.CausalAlign.String()
	}
	if p.Window != nil {
		w := *p.Window
		r.Window = &w
	}
	r.Mask = p.Mask != nil
	r.Sinks = p.Features()&attn.AttentionSinks != 0
	if p.KVFormat != attn.NoHalf {
		r.KVFormat = p.KVFormat.String()
	}
	if p.Q16 != nil {
		r.QOFormat = p.KVFormat.String()
	}
}

// problem checks shapes and options and builds the internal problem. Q's
// leading dimensions are (batch, query heads), K's and V's (batch, kv
// heads), kv heads dividing query heads. It does not scan the values
// (attn.Forward does, unless the method checks them itself).
func problem[T Float](q, k, v Tensor[T], opts Options) (*attn.Problem[T], []int, error) {
	p := new(attn.Problem[T])
	lead, err := fillProblem(p, nil, shapeOf(q), shapeOf(k), shapeOf(v), opts)
	if err != nil {
		return nil, nil, err
	}
	p.Q, p.K, p.V = q.Data, k.Data, v.Data
	if err := p.ValidateShapes(); err != nil {
		return nil, nil, inputError{err}
	}
	return p, lead, nil
}

// shaped is a tensor's shape and number of values, whatever its element
// type (K and V may be stored in 16 bits).
type shaped struct {
	shape []int
	size  int
}

func shapeOf[T Float](t Tensor[T]) shaped { return shaped{t.Shape, len(t.Data)} }

// problemScratch keeps what building a problem would allocate, for calls
// that repeat with the same options (AttendInto).
type problemScratch struct {
	keyLens    []int
	mask       attn.Mask
	maskOf     *Mask
	maskTarget [4]int
}

// fillProblem is problem writing into p, with scratch (may be nil) for the
// expanded key lengths and the broadcast mask, from the shapes of Q, K
// and V; the caller sets p.Q, p.K and p.V (or their 16-bit forms) and then
// validates p.
func fillProblem[T Float](p *attn.Problem[T], scratch *problemScratch, q, k, v shaped, opts Options) ([]int, error) {
	for _, t := range []struct {
		name string
		t    shaped
	}{{"Q", q}, {"K", k}, {"V", v}} {
		if r := len(t.t.shape); r < 2 || r > 4 {
			return nil, invalid("%s has rank %d (shape %v); use (n, d), (heads, n, d) or (batch, heads, n, d)", t.name, r, t.t.shape)
		}
		if err := checkShape(t.name, t.t.shape, t.t.size); err != nil {
			return nil, inputError{err}
		}
	}
	if len(q.shape) != len(k.shape) || len(q.shape) != len(v.shape) {
		return nil, invalid("Q, K and V must have the same rank, got shapes %v, %v and %v", q.shape, k.shape, v.shape)
	}
	r := len(q.shape)
	lead, kvLead := q.shape[:r-2], k.shape[:r-2]
	if !slices.Equal(kvLead, v.shape[:r-2]) {
		return nil, invalid("K and V must share their leading (batch, heads) dimensions, got shapes %v and %v", k.shape, v.shape)
	}
	if r == 4 && lead[0] != kvLead[0] {
		return nil, invalid("Q has batch %d but K and V have %d (shapes %v, %v and %v)", lead[0], kvLead[0], q.shape, k.shape, v.shape)
	}
	if r >= 3 && (kvLead[r-3] == 0 || lead[r-3]%kvLead[r-3] != 0) {
		return nil, invalid("K and V have %d heads, which does not divide Q's %d heads (grouped-query attention needs kv heads dividing query heads; shapes %v, %v and %v)", kvLead[r-3], lead[r-3], q.shape, k.shape, v.shape)
	}
	n, d := q.shape[r-2], q.shape[r-1]
	m, e := k.shape[r-2], v.shape[r-1]
	if k.shape[r-1] != d {
		return nil, invalid("K's last dimension is %d but Q's is %d; queries and keys need the same head dimension", k.shape[r-1], d)
	}
	if v.shape[r-2] != m {
		return nil, invalid("V has %d rows but K has %d; every key needs a value", v.shape[r-2], m)
	}
	heads, kvHeads := product(lead), product(kvLead)
	if heads == 0 || n == 0 || m == 0 || d == 0 || e == 0 {
		return nil, invalid("empty input: shapes %v, %v and %v", q.shape, k.shape, v.shape)
	}
	// The output is heads x n x e: refuse sizes no machine holds before
	// allocating (small inputs can ask for a huge output, e.g. n x 1 and
	// 1 x e).
	if out := float64(heads) * float64(n) * float64(e); out > MaxOutputElements {
		return nil, invalid("the output would have %.3g elements (heads %d x n %d x e %d), above the limit of %.3g", out, heads, n, e, float64(MaxOutputElements))
	}
	scale := opts.Scale
	if scale == 0 {
		scale = 1 / math.Sqrt(float64(d))
	}
	eps := opts.Eps
	if eps == 0 {
		eps = DefaultEps
	}
	var buf []int
	if scratch != nil {
		buf = scratch.keyLens[:0]
	}
	keyLens, err := expandKeyLengths(buf, opts.KeyLengths, lead, kvHeads, m)
	if err != nil {
		return nil, err
	}
	if scratch != nil && keyLens != nil {
		scratch.keyLens = keyLens
	}
	// target is (batch, query heads, n, m) for masks and sinks.
	target := [4]int{1, 1, n, m}
	for x := range lead {
		target[2-len(lead)+x] = lead[x]
	}
	*p = attn.Problem[T]{
		Heads: heads, N: n, M: m, D: d, E: e,
		KVHeads: kvHeads,
		Scale:   scale, Causal: opts.Causal, CausalAlign: opts.CausalAlign, KeyLens: keyLens, Eps: eps,
		Workers: opts.Workers, AssumeFinite: opts.AssumeFinite, Window: opts.Window,
	}
	if opts.Sinks != nil {
		if len(opts.Sinks) != target[1] {
			return nil, invalid("%d sinks for %d query heads; give one per query head (of one batch element)", len(opts.Sinks), target[1])
		}
		p.Sinks = opts.Sinks
	}
	if opts.Mask != nil {
		switch {
		case scratch != nil && scratch.maskOf == opts.Mask && scratch.maskTarget == target:
			p.Mask = &scratch.mask
		default:
			if p.Mask, err = opts.Mask.broadcast(target); err != nil {
				return nil, err
			}
			if scratch != nil {
				scratch.mask, scratch.maskOf, scratch.maskTarget = *p.Mask, opts.Mask, target
			}
		}
	}
	return lead, nil
}

func product(xs []int) int {
	n := 1
	for _, x := range xs {
		n *= x
	}
	return n
}

// expandKeyLengths turns per-sequence or per-kv-head lengths into per
// query head ones.
// Repeated lengths are appended to buf.
func expandKeyLengths(buf, lens []int, lead []int, kvHeads, m int) ([]int, error) {
	if lens == nil {
		return nil, nil
	}
	heads := product(lead)
	for _, l := range lens {
		if l < 0 || l > m {
			return nil, invalid("key length %d is outside [0, %d]", l, m)
		}
	}
	repeat := func(each int) []int {
		out := buf
		for _, l := range lens {
			for range each {
				out = append(out, l)
			}
		}
		return out
	}
	switch {
	case len(lens) == heads:
		return lens, nil
	case len(lens) == kvHeads:
		return repeat(heads / kvHeads), nil
	case len(lead) == 2 && len(lens) == lead[0]:
		return repeat(lead[1]), nil
	}
	return nil, invalid("%d key lengths for leading shape %v; give one per batch element or one per head", len(lens), lead)
}

// methodError names the method (and pass) err came from, unless its
// message already starts with the method's name, as the contract's
// UnsupportedError does ("poly does not support ...").
func methodError(name, pass string, err error) error {
	if strings.HasPrefix(err.Error(), name) {
		return err
	}
	return fmt.Errorf("%s%s: %w", name, pass, err)
}
