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
package fastattn

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
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

func (t Tensor[T]) check(name string) error {
	n := 1
	for _, s := range t.Shape {
		if s < 0 {
			return fmt.Errorf("%s has a negative dimension in shape %v", name, t.Shape)
		}
		if s > 0 && n > math.MaxInt/s {
			return fmt.Errorf("%s has shape %v, whose size overflows an int", name, t.Shape)
		}
		n *= s
	}
	if n != len(t.Data) {
		return fmt.Errorf("%s has shape %v (%d elements) but %d data values", name, t.Shape, n, len(t.Data))
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
	// of valid keys: aligned bottom-right, like FlashAttention >= 2.1 (and
	// unlike PyTorch's is_causal, which aligns top-left). For n == L this is
	// the usual j > i; when decoding with a key cache (n < L) the last query
	// sees every key; when n > L the first n - L queries see none.
	Causal bool

	// KeyLengths holds the number of valid keys per sequence (the rest are
	// padding): one entry per batch element, shared by its heads, or one per
	// head (batch*heads entries). nil means every key is valid.
	KeyLengths []int

	// Method names the algorithm: "exact", "poly", ..., "auto" to let the
	// planner pick the fastest that meets Eps, or "" for DefaultMethod.
	// See Methods.
	Method string

	// Eps is the entrywise error target of approximate methods, relative to
	// each value column's largest magnitude; 0 means DefaultEps.
	Eps float64
}

// PaperScale returns 1/d, the scale used by Alman & Song and Gupta et al.
func PaperScale(d int) float64 { return 1 / float64(d) }

// Report describes one call: what ran, on what, how fast and how accurately.
type Report struct {
	CallReport
	KeyLengths []int   `json:"key_lengths,omitempty"` // per head, when padding was used
	ErrorBound float64 `json:"error_bound"`
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
	name, reason := opts.Method, ""
	if name == "" {
		name, reason = DefaultMethod, "default method"
	}
	if name == Auto {
		if name, reason, err = choose(p); err != nil {
			return nil, err
		}
	}
	m, ok := methods[name]
	if !ok {
		return nil, invalid("unknown method %q; choose one of %v or %s", name, Methods(), Auto)
	}
	note, slower := slowerThanExact(p, opts.Method)
	out := attn.NewOutput(p)
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
	if err != nil {
		return nil, fmt.Errorf("fastattn: %s: %w", name, err)
	}
	secs := time.Since(start).Seconds()
	rep := Report{CallReport: newCallReport(name, p, secs, st), KeyLengths: p.KeyLens, ErrorBound: st.ErrorBound}
	rep.Reason, rep.Note, rep.PredictedSlowerThanExact = reason, note, slower
	return &Result[T]{
		Out:    Tensor[T]{Data: out.O, Shape: append(slices.Clone(lead), p.N, p.E)},
		LSE:    Tensor[float64]{Data: out.LSE, Shape: append(slices.Clone(lead), p.N)},
		Report: rep,
	}, nil
}

// problem checks shapes and options and builds the internal problem.
func problem[T Float](q, k, v Tensor[T], opts Options) (*attn.Problem[T], []int, error) {
	for _, t := range []struct {
		name string
		t    Tensor[T]
	}{{"Q", q}, {"K", k}, {"V", v}} {
		if r := len(t.t.Shape); r < 2 || r > 4 {
			return nil, nil, invalid("%s has rank %d (shape %v); use (n, d), (heads, n, d) or (batch, heads, n, d)", t.name, r, t.t.Shape)
		}
		if err := t.t.check(t.name); err != nil {
			return nil, nil, inputError{err}
		}
	}
	if len(q.Shape) != len(k.Shape) || len(q.Shape) != len(v.Shape) {
		return nil, nil, invalid("Q, K and V must have the same rank, got shapes %v, %v and %v", q.Shape, k.Shape, v.Shape)
	}
	r := len(q.Shape)
	lead := q.Shape[:r-2]
	if !slices.Equal(lead, k.Shape[:r-2]) || !slices.Equal(lead, v.Shape[:r-2]) {
		return nil, nil, invalid("Q, K and V must share their leading (batch, heads) dimensions, got shapes %v, %v and %v", q.Shape, k.Shape, v.Shape)
	}
	n, d := q.Shape[r-2], q.Shape[r-1]
	m, e := k.Shape[r-2], v.Shape[r-1]
	if k.Shape[r-1] != d {
		return nil, nil, invalid("K's last dimension is %d but Q's is %d; queries and keys need the same head dimension", k.Shape[r-1], d)
	}
	if v.Shape[r-2] != m {
		return nil, nil, invalid("V has %d rows but K has %d; every key needs a value", v.Shape[r-2], m)
	}
	heads := 1
	for _, s := range lead {
		heads *= s
	}
	if heads == 0 || n == 0 || m == 0 || d == 0 || e == 0 {
		return nil, nil, invalid("empty input: shapes %v, %v and %v", q.Shape, k.Shape, v.Shape)
	}
	// The output is heads x n x e: refuse sizes no machine holds before
	// allocating (small inputs can ask for a huge output, e.g. n x 1 and
	// 1 x e).
	if out := float64(heads) * float64(n) * float64(e); out > MaxOutputElements {
		return nil, nil, invalid("the output would have %.3g elements (heads %d x n %d x e %d), above the limit of %.3g", out, heads, n, e, float64(MaxOutputElements))
	}
	scale := opts.Scale
	if scale == 0 {
		scale = 1 / math.Sqrt(float64(d))
	}
	eps := opts.Eps
	if eps == 0 {
		eps = DefaultEps
	}
	keyLens, err := expandKeyLengths(opts.KeyLengths, lead, m)
	if err != nil {
		return nil, nil, err
	}
	p := &attn.Problem[T]{
		Heads: heads, N: n, M: m, D: d, E: e,
		Q: q.Data, K: k.Data, V: v.Data,
		Scale: scale, Causal: opts.Causal, KeyLens: keyLens, Eps: eps,
	}
	if err := p.Validate(); err != nil {
		return nil, nil, inputError{err}
	}
	return p, lead, nil
}

// expandKeyLengths turns per-sequence lengths into per-head ones.
func expandKeyLengths(lens []int, lead []int, m int) ([]int, error) {
	if lens == nil {
		return nil, nil
	}
	heads := 1
	for _, s := range lead {
		heads *= s
	}
	for _, l := range lens {
		if l < 0 || l > m {
			return nil, invalid("key length %d is outside [0, %d]", l, m)
		}
	}
	switch {
	case len(lens) == heads:
		return lens, nil
	case len(lead) == 2 && len(lens) == lead[0]:
		out := make([]int, 0, heads)
		for _, l := range lens {
			for range lead[1] {
				out = append(out, l)
			}
		}
		return out, nil
	}
	return nil, invalid("%d key lengths for leading shape %v; give one per batch element or one per head", len(lens), lead)
}

func dtypeName[T Float]() string {
	var x T
	if _, ok := any(x).(float32); ok {
		return "float32"
	}
	return "float64"
}
