// Package attn defines the contract between fastattn and its attention
// methods, as gonum's blas package defines one for BLAS implementations.
//
// A Method computes softmax attention for a batch of independent heads laid
// out row-major. Every method (exact, poly, anytemp, ...) implements Method
// and runs the shared conformance suite in package attntest.
package attn

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/fastattn/fastattn/internal/kernels"
)

// Float is the set of element types attention is computed in.
type Float interface{ ~float32 | ~float64 }

// Problem is a batch of Heads independent attention problems. For query
// head h, Q[h] is N x D; it attends key/value head KVHead(h), whose keys
// K[KVHead(h)] are M x D and values V[KVHead(h)] are M x E. All are
// row-major and packed head after head.
type Problem[T Float] struct {
	Heads, N, M, D, E int
	Q, K, V           []T

	// KVHeads is the number of key/value heads, dividing Heads; 0 means
	// Heads. With G = Heads/KVHeads, query heads h with the same h/G share
	// key/value head h/G: grouped-query attention (multi-query for
	// KVHeads = 1 per batch element), as PyTorch's enable_gqa=True. With
	// heads flattened from (batch, query heads) this maps query head hq of
	// batch element b to key/value head b*Hkv + hq/G, PyTorch's mapping.
	KVHeads int

	// Scale multiplies Q K^T before the exponential. Must be positive.
	Scale float64

	// Causal masks key j for query i when j > i + offset, where offset is
	// L - N for CausalAlign = BottomRight (L being the head's number of
	// valid keys: FlashAttention >= 2.1, the last query sees every valid
	// key) and 0 for TopLeft (PyTorch's is_causal). For N == L both are
	// the usual j > i.
	Causal bool

	// CausalAlign says which corner the causal mask and the window are
	// aligned to (see Causal and Window).
	CausalAlign CausalAlignment

	// Window, when not nil, restricts query i to keys
	// i + offset - Left <= j <= i + offset + Right (offset as for Causal;
	// -1 leaves that side unbounded): FlashAttention-2's window_size. It
	// combines with Causal (which caps Right at 0) and KeyLens.
	Window *Window

	// Mask, when not nil, is a mask tensor (PyTorch's attn_mask): boolean,
	// or additive on the scaled logits. It applies on top of the key range.
	Mask *Mask

	// Sinks, when not nil, holds one logit per query head of a batch
	// element (query head h uses Sinks[h % len(Sinks)]): an extra term
	// exp(sink) in each row's softmax denominator that carries no value,
	// as in GPT-OSS. -Inf is no sink. The LSE includes it.
	Sinks []float64

	// KeyLens, when not nil, holds one entry per query head: only keys
	// 0 <= j < KeyLens[h] are attended (the rest are padding).
	KeyLens []int

	// Eps is the error target: every output entry must satisfy
	// |T_ij - Att_ij| <= Eps * max_l |V_lj|. A method that cannot certify
	// it declines (an error wrapping ErrUnsupported); exact attention picks
	// its arithmetic by it. 0 means no target (exact methods only).
	Eps float64

	// Workers caps the goroutines a method uses; 0 means GOMAXPROCS.
	Workers int

	// KVFormat, when not NoHalf, says K and V are stored as 16-bit floats
	// in K16 and V16 (K and V are then nil), laid out as K and V would be;
	// computation is in T, which must be float32. Q and the output stay in
	// T unless Q16 (and Output.O16) are set.
	KVFormat HalfFormat
	K16, V16 []uint16

	// Q16, when not nil, holds the queries in KVFormat instead of Q (Q is
	// then nil), laid out as Q would be: 16-bit storage for Q, K and V
	// (feature HalfQO).
	Q16 []uint16

	// AssumeFinite is the caller's promise that Q, K and V hold no NaN or
	// Inf: Validate and Forward skip their scans, and methods that check
	// as they go skip that too. A broken promise gives unspecified output.
	AssumeFinite bool
}

// HalfFormat is a 16-bit floating-point storage format.
type HalfFormat int

const (
	// NoHalf: K and V are stored in the problem's element type.
	NoHalf HalfFormat = iota
	// Float16 is IEEE 754 binary16 (5 exponent, 10 mantissa bits).
	Float16
	// BFloat16 is the upper half of a float32 (8 exponent, 7 mantissa bits).
	BFloat16
)

func (f HalfFormat) String() string {
	switch f {
	case NoHalf:
		return "none"
	case Float16:
		return "float16"
	case BFloat16:
		return "bfloat16"
	}
	return fmt.Sprintf("HalfFormat(%d)", int(f))
}

// HalfToFloat32 returns the value of h in format f.
func HalfToFloat32(f HalfFormat, h uint16) float32 {
	if f == BFloat16 {
		return math.Float32frombits(uint32(h) << 16)
	}
	sign := uint32(h>>15) << 31
	exp, man := uint32(h>>10)&0x1f, uint32(h)&0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN
		return math.Float32frombits(sign | 0xff<<23 | man<<13)
	case exp == 0 && man == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: man * 2^-24
		v := float32(man) * (1.0 / (1 << 24))
		if sign != 0 {
			v = -v
		}
		return v
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | man<<13)
}

// Float32ToHalf rounds x to format f, to nearest with ties to even; values
// beyond the format's range become infinities.
func Float32ToHalf(f HalfFormat, x float32) uint16 {
	if f == BFloat16 {
		return Float32ToBFloat16(x)
	}
	b := math.Float32bits(x)
	sign := uint16(b>>16) & 0x8000
	abs := b & 0x7fffffff
	switch {
	case abs > 0x7f800000:
		return sign | 0x7e00
	case abs >= 0x477ff000: // 65520 and up round to Inf
		return sign | 0x7c00
	case abs >= 0x38800000: // normal in float16: rebias the exponent, round 23 -> 10 bits
		m := abs - 0x38000000
		return sign | uint16((m+0xfff+(m>>13)&1)>>13)
	}
	return sign | uint16(math.RoundToEven(float64(math.Float32frombits(abs))*(1<<24)))
}

// Float32ToBFloat16 is Float32ToHalf(BFloat16, x), small enough for the
// compiler to inline into loops that round every value of an output (a
// call per value took 3% of a bfloat16 prefill at d = 64).
func Float32ToBFloat16(x float32) uint16 {
	b := math.Float32bits(x)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40 // quiet NaN
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// FirstNonFiniteHalf returns the index of the first NaN or Inf among the
// 16-bit values x of format f, or -1.
func FirstNonFiniteHalf(f HalfFormat, x []uint16) int {
	exp := uint16(0x7c00) // float16's exponent bits
	if f == BFloat16 {
		exp = 0x7f80
	}
	for i, h := range x {
		if h&exp == exp {
			return i
		}
	}
	return -1
}

// Key writes key j of key/value head kh into dst (D values), from K or K16.
func (p *Problem[T]) Key(kh, j int, dst []float64) {
	p.row(p.K, p.K16, (kh*p.M+j)*p.D, dst[:p.D])
}

// Value writes value j of key/value head kh into dst (E values).
func (p *Problem[T]) Value(kh, j int, dst []float64) {
	p.row(p.V, p.V16, (kh*p.M+j)*p.E, dst[:p.E])
}

func (p *Problem[T]) row(x []T, x16 []uint16, off int, dst []float64) {
	if p.KVFormat != NoHalf {
		for t := range dst {
			dst[t] = float64(HalfToFloat32(p.KVFormat, x16[off+t]))
		}
		return
	}
	for t := range dst {
		dst[t] = float64(x[off+t])
	}
}

// CausalAlignment is the corner the causal mask and windows are aligned to.
type CausalAlignment int

const (
	// BottomRight aligns to the last valid key: query i sees keys
	// j <= i + L - N (FlashAttention >= 2.1). The default.
	BottomRight CausalAlignment = iota
	// TopLeft aligns to the first key: query i sees keys j <= i
	// (PyTorch's is_causal).
	TopLeft
)

func (a CausalAlignment) String() string {
	switch a {
	case BottomRight:
		return "bottom-right"
	case TopLeft:
		return "top-left"
	}
	return fmt.Sprintf("CausalAlignment(%d)", int(a))
}

// Window is a sliding window, FlashAttention-2's window_size = (Left,
// Right): query i sees keys i + offset - Left <= j <= i + offset + Right,
// where offset aligns the window as the causal mask (see Problem.Causal).
// -1 means unbounded on that side.
type Window struct {
	Left  int `json:"left"`
	Right int `json:"right"`
}

// Mask is a mask tensor broadcast to (batch, query heads, N, M). Exactly
// one of Bool (true: the key takes part) and Add (added to the scaled
// logits; -Inf masks the key) is set. Entry (h, i, j), for flattened query
// head h, is at
//
//	(h / HeadsPerBatch)*BatchStride + (h % HeadsPerBatch)*HeadStride + i*RowStride + j*ColStride
//
// A stride of 0 broadcasts that dimension.
type Mask struct {
	Bool []bool
	Add  []float64
	// HeadsPerBatch is the number of query heads per batch element; it
	// divides Heads. 0 means Heads (one batch element).
	HeadsPerBatch                                 int
	BatchStride, HeadStride, RowStride, ColStride int
}

// Offset returns the index of entry (h, i, 0).
func (m *Mask) Offset(h, i int) int {
	hb := max(m.HeadsPerBatch, 1)
	return (h/hb)*m.BatchStride + (h%hb)*m.HeadStride + i*m.RowStride
}

// Heads returns the mask of query heads h0..h0+count-1 alone, for a
// problem made of those heads; they must belong to one batch element.
func (m *Mask) Heads(h0, count int) *Mask {
	off := m.Offset(h0, 0)
	sub := &Mask{HeadsPerBatch: count, HeadStride: m.HeadStride, RowStride: m.RowStride, ColStride: m.ColStride}
	if m.Bool != nil {
		sub.Bool = m.Bool[off:]
	} else {
		sub.Add = m.Add[off:]
	}
	return sub
}

// At returns element idx of the mask as an additive term: 0 or -Inf for a
// boolean mask, the value for an additive one.
func (m *Mask) At(idx int) float64 {
	if m.Bool != nil {
		if m.Bool[idx] {
			return 0
		}
		return math.Inf(-1)
	}
	return m.Add[idx]
}

// Logit returns the term the mask adds to logit (h, i, j).
func (m *Mask) Logit(h, i, j int) float64 { return m.At(m.Offset(h, i) + j*m.ColStride) }

// Len is the number of elements the mask holds.
func (m *Mask) Len() int {
	if m.Bool != nil {
		return len(m.Bool)
	}
	return len(m.Add)
}

// Feature is an option of a Problem that a method may or may not support.
// Plain attention with Causal (bottom-right) and KeyLens is supported by
// every method; Features lists what a problem uses beyond that.
type Feature uint

const (
	// GQA: fewer key/value heads than query heads (KVHeads).
	GQA Feature = 1 << iota
	// TopLeftAlign: CausalAlign = TopLeft where it differs from
	// BottomRight (a causal mask or window on a head with N != L).
	TopLeftAlign
	// SlidingWindow: a Window bounded on at least one side.
	SlidingWindow
	// MaskTensor: a Mask.
	MaskTensor
	// AttentionSinks: Sinks.
	AttentionSinks
	// HalfKV: K and V stored in 16 bits (KVFormat).
	HalfKV
	// HalfQO: queries (Q16) or the output (Output.O16) stored in 16 bits
	// too, in KVFormat.
	HalfQO
)

// String names the features, each with the Problem field (and root
// Options field) that asks for it.
func (f Feature) String() string {
	names := []struct {
		f    Feature
		name string
	}{
		{GQA, "grouped-query attention (KVHeads)"},
		{TopLeftAlign, "top-left causal alignment (CausalAlign)"},
		{SlidingWindow, "a sliding window (Window)"},
		{MaskTensor, "a mask tensor (Mask)"},
		{AttentionSinks, "attention sinks (Sinks)"},
		{HalfKV, "16-bit keys and values (KVFormat)"},
		{HalfQO, "16-bit queries or output (Q16, Output.O16)"},
	}
	var s []string
	for _, n := range names {
		if f&n.f != 0 {
			s = append(s, n.name)
		}
	}
	if len(s) == 0 {
		return "no feature"
	}
	return strings.Join(s, ", ")
}

// Capable is implemented by methods that support some Features. A method
// that does not implement it supports none of them.
type Capable interface {
	// Supports lists the features Forward (and Estimate) handle.
	Supports() Feature
}

// BackwardCapable is implemented by Differentiable methods whose backward
// pass supports fewer features than their forward; without it, Backward
// supports what Supports says.
type BackwardCapable interface {
	BackwardSupports() Feature
}

// SupportedFeatures returns what m's forward pass (or, with backward, its
// backward pass) supports.
func SupportedFeatures(m Method, backward bool) Feature {
	if backward {
		if b, ok := m.(BackwardCapable); ok {
			return b.BackwardSupports()
		}
	}
	if c, ok := m.(Capable); ok {
		return c.Supports()
	}
	return 0
}

// Features returns the features p uses.
func (p *Problem[T]) Features() Feature {
	var f Feature
	if p.KVHeads != 0 && p.KVHeads != p.Heads {
		f |= GQA
	}
	w := p.Window != nil && (p.Window.Left >= 0 || p.Window.Right >= 0)
	if w {
		f |= SlidingWindow
	}
	if p.CausalAlign == TopLeft && (p.Causal || w) {
		for h := range p.Heads {
			if p.KeyLen(h) != p.N {
				f |= TopLeftAlign
				break
			}
		}
	}
	if p.Mask != nil {
		f |= MaskTensor
	}
	for _, s := range p.Sinks {
		if !math.IsInf(s, -1) {
			f |= AttentionSinks
			break
		}
	}
	if p.KVFormat != NoHalf {
		f |= HalfKV
	}
	if p.Q16 != nil {
		f |= HalfQO
	}
	return f
}

// UnsupportedError is the error for a problem using features a method does
// not support. It wraps ErrUnsupported.
type UnsupportedError struct {
	Method   string
	Missing  Feature
	Backward bool
}

func (e *UnsupportedError) Error() string {
	pass := ""
	if e.Backward {
		pass = "'s backward pass"
	}
	return fmt.Sprintf("%s%s does not support %v: %v", e.Method, pass, e.Missing, ErrUnsupported)
}

func (e *UnsupportedError) Unwrap() error { return ErrUnsupported }

// CheckSupport returns an *UnsupportedError if p uses a feature m (its
// backward pass, with backward) does not support, else nil. Forward,
// Backward and EstimateCost call it, so methods never see such problems.
func CheckSupport[T Float](m Method, p *Problem[T], backward bool) error {
	if missing := p.Features() &^ SupportedFeatures(m, backward); missing != 0 {
		return &UnsupportedError{Method: m.Name(), Missing: missing, Backward: backward}
	}
	return nil
}

// FiniteChecker is implemented by methods that detect non-finite inputs
// among what they read as they compute (and return an error wrapping
// ErrBadProblem), so Forward need not scan Q, K and V first.
type FiniteChecker interface {
	ChecksFinite() bool
}

// Output receives a method's results: O is Heads*N*E, LSE is Heads*N and
// holds log(sum_j exp(Scale q_i.k_j)) per row, or -Inf for a row with no
// valid key (whose output row is zero). O16, when not nil, receives the
// output rounded to the problem's KVFormat (to nearest, ties to even)
// instead of O, which is then nil (feature HalfQO); LSE stays float64.
// Problem.Eps then applies to the computation before that rounding, which
// is the storage the caller chose: Stats.ErrorBound includes it (u |out|,
// u = 2^-11 for float16 and 2^-8 for bfloat16, at most u max_l |V_lj|).
type Output[T Float] struct {
	O   []T
	O16 []uint16
	LSE []float64
}

// NewOutput allocates an Output sized for p.
func NewOutput[T Float](p *Problem[T]) *Output[T] {
	return &Output[T]{O: make([]T, p.Heads*p.N*p.E), LSE: make([]float64, p.Heads*p.N)}
}

// Stats is what a method reports about one call.
type Stats struct {
	// Flops is the number of floating-point operations the method performed
	// (multiply and add counted separately).
	Flops float64
	// ErrorBound is the a priori bound eps such that
	// |T_ij - Att_ij| <= eps * max_l |V_lj| for every entry, rounding
	// included (exact attention reports its rounding bound).
	ErrorBound float64
	// LSEBound bounds, in nats, how far each row's log-sum-exp
	// (Output.LSE) is from the log of the row's exact sum of weights
	// (sink included), rounding included: what Merge weighs parts by.
	// Every method sets it.
	LSEBound float64
	// ObservedError is, for approximate methods, the largest error measured
	// on SampledRows rows recomputed with an accurate reference after the
	// call, relative to max_l |V_lj| like ErrorBound; both are 0 when no row
	// was sampled.
	ObservedError float64
	SampledRows   int
	// Details holds method-specific facts (degree, rank, tree depth, ...).
	Details map[string]any
}

// Method is an attention algorithm.
type Method interface {
	// Name is the method's name on the command line and in reports.
	Name() string
	// Forward32 and Forward64 compute attention for p into out, which is
	// sized as NewOutput(p). They return ctx.Err() if ctx is cancelled.
	Forward32(ctx context.Context, p *Problem[float32], out *Output[float32]) (Stats, error)
	Forward64(ctx context.Context, p *Problem[float64], out *Output[float64]) (Stats, error)
}

// Forward calls the Forward method of m that matches T, after checking
// that m supports p's features (CheckSupport) and, unless m checks them
// itself or p.AssumeFinite, that the inputs it reads are finite. p must be
// valid (ValidateShapes).
func Forward[T Float](ctx context.Context, m Method, p *Problem[T], out *Output[T]) (Stats, error) {
	if err := CheckSupport(m, p, false); err != nil {
		return Stats{}, err
	}
	if out.O16 != nil {
		if p.KVFormat == NoHalf {
			return Stats{}, bad("a 16-bit output (O16) needs KVFormat")
		}
		if SupportedFeatures(m, false)&HalfQO == 0 {
			return Stats{}, &UnsupportedError{Method: m.Name(), Missing: HalfQO}
		}
	}
	if fc, ok := m.(FiniteChecker); !p.AssumeFinite && !(ok && fc.ChecksFinite()) {
		if err := p.CheckFinite(); err != nil {
			return Stats{}, err
		}
	}
	switch p := any(p).(type) {
	case *Problem[float32]:
		return m.Forward32(ctx, p, any(out).(*Output[float32]))
	case *Problem[float64]:
		return m.Forward64(ctx, p, any(out).(*Output[float64]))
	}
	return Stats{}, fmt.Errorf("attn: unsupported element type %T", p)
}

// KeyLen is the number of valid keys of query head h.
func (p *Problem[T]) KeyLen(h int) int {
	if p.KeyLens == nil {
		return p.M
	}
	return p.KeyLens[h]
}

// KVHeadCount is the number of key/value heads: KVHeads, or Heads if 0.
func (p *Problem[T]) KVHeadCount() int {
	if p.KVHeads == 0 {
		return p.Heads
	}
	return p.KVHeads
}

// Group is the number of query heads per key/value head.
func (p *Problem[T]) Group() int { return p.Heads / p.KVHeadCount() }

// KVHead is the key/value head query head h attends.
func (p *Problem[T]) KVHead(h int) int { return h / p.Group() }

// Sink returns the sink logit of query head h, -Inf without sinks.
func (p *Problem[T]) Sink(h int) float64 {
	if len(p.Sinks) == 0 {
		return math.Inf(-1)
	}
	return p.Sinks[h%len(p.Sinks)]
}

// alignOffset is the offset of the causal mask and window of head h.
func (p *Problem[T]) alignOffset(h int) int {
	if p.CausalAlign == TopLeft {
		return 0
	}
	return p.KeyLen(h) - p.N
}

// KeyRange returns the keys query row i of head h may attend after
// padding, the causal mask and the window: lo <= j < hi, with lo >= hi
// for none (then lo == hi). Both ends are non-decreasing in i. The mask
// tensor, if any, applies on top of this range.
func (p *Problem[T]) KeyRange(h, i int) (lo, hi int) {
	l := p.KeyLen(h)
	off := i + p.alignOffset(h)
	hi = l
	if p.Causal {
		hi = min(hi, off+1)
	}
	if w := p.Window; w != nil {
		if w.Right >= 0 {
			hi = min(hi, off+w.Right+1)
		}
		if w.Left >= 0 {
			lo = max(lo, off-w.Left)
		}
	}
	hi = max(hi, 0)
	lo = min(lo, hi)
	return lo, hi
}

// KeyLimit returns the end of row i's key range, KeyRange's hi: keys
// 0 <= j < KeyLimit(h, i) when the range starts at 0 (no window bounded on
// the left).
func (p *Problem[T]) KeyLimit(h, i int) int {
	_, hi := p.KeyRange(h, i)
	return hi
}

// ErrUnsupported is wrapped by the error a method returns for a problem
// outside its domain (for example entries too large for a polynomial of
// reasonable degree, or a Feature it does not support). The caller can then
// choose another method.
var ErrUnsupported = errors.New("method does not apply to this input")

// ErrBadProblem is wrapped by every error Validate returns.
var ErrBadProblem = errors.New("invalid input")

func bad(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadProblem, fmt.Sprintf(format, args...))
}

// Validate checks the problem (ValidateShapes) and, unless AssumeFinite,
// that every input entry a row can attend is finite (CheckFinite). Methods
// may assume a validated problem.
func (p *Problem[T]) Validate() error {
	if err := p.ValidateShapes(); err != nil {
		return err
	}
	if p.AssumeFinite {
		return nil
	}
	return p.CheckFinite()
}

// ValidateShapes checks sizes, the scale, key lengths, Eps and the
// options, but not the values of Q, K and V.
func (p *Problem[T]) ValidateShapes() error {
	switch {
	case p.Heads < 1 || p.N < 1 || p.M < 1 || p.D < 1 || p.E < 1:
		return bad("sizes must be positive, got heads=%d n=%d m=%d d=%d e=%d", p.Heads, p.N, p.M, p.D, p.E)
	case overflows(p.Heads, max(p.N, p.M), max(p.D, p.E)):
		return bad("sizes heads=%d n=%d m=%d d=%d e=%d overflow an int", p.Heads, p.N, p.M, p.D, p.E)
	case p.KVHeads < 0 || p.KVHeads > 0 && p.Heads%p.KVHeads != 0:
		return bad("%d key/value heads do not divide %d query heads", p.KVHeads, p.Heads)
	case p.Q16 != nil && (p.KVFormat == NoHalf || p.Q != nil):
		return bad("16-bit queries (Q16) need KVFormat, and Q nil")
	case len(p.Q)+len(p.Q16) != p.Heads*p.N*p.D:
		return bad("Q has %d entries, want heads*n*d = %d", len(p.Q)+len(p.Q16), p.Heads*p.N*p.D)
	case p.KVFormat != NoHalf && p.KVFormat != Float16 && p.KVFormat != BFloat16:
		return bad("unknown 16-bit format %v", p.KVFormat)
	case p.KVFormat != NoHalf && (p.K != nil || p.V != nil):
		return bad("with 16-bit keys and values, K and V must be nil (K16 and V16 hold them)")
	case p.KVFormat != NoHalf && !isFloat32[T]():
		return bad("16-bit keys and values are computed in float32, not %T", T(0))
	case p.KVFormat == NoHalf && (p.K16 != nil || p.V16 != nil):
		return bad("K16 and V16 need KVFormat")
	case p.kvLen(p.K, p.K16) != p.KVHeadCount()*p.M*p.D:
		return bad("K has %d entries, want kv heads*m*d = %d", p.kvLen(p.K, p.K16), p.KVHeadCount()*p.M*p.D)
	case p.kvLen(p.V, p.V16) != p.KVHeadCount()*p.M*p.E:
		return bad("V has %d entries, want kv heads*m*e = %d", p.kvLen(p.V, p.V16), p.KVHeadCount()*p.M*p.E)
	case !(p.Scale > 0) || math.IsInf(p.Scale, 0):
		return bad("scale must be positive and finite, got %g", p.Scale)
	case !(p.Eps >= 0 && p.Eps < 1):
		return bad("eps must be in [0, 1) (an error of max|V| says nothing), got %g", p.Eps)
	case p.CausalAlign != BottomRight && p.CausalAlign != TopLeft:
		return bad("unknown causal alignment %v", p.CausalAlign)
	case p.Window != nil && (p.Window.Left < -1 || p.Window.Right < -1):
		return bad("window (%d, %d): each side must be -1 (unbounded) or a number of keys >= 0", p.Window.Left, p.Window.Right)
	case p.Workers < 0:
		return bad("workers must be >= 0 (0: GOMAXPROCS), got %d", p.Workers)
	}
	if p.KeyLens != nil {
		if len(p.KeyLens) != p.Heads {
			return bad("%d key lengths for %d heads", len(p.KeyLens), p.Heads)
		}
		for h, l := range p.KeyLens {
			if l < 0 || l > p.M {
				return bad("key length %d of head %d is outside [0, %d]", l, h, p.M)
			}
		}
	}
	if p.Sinks != nil {
		if len(p.Sinks) == 0 || p.Heads%len(p.Sinks) != 0 {
			return bad("%d sinks for %d query heads; give one per query head", len(p.Sinks), p.Heads)
		}
		for h, s := range p.Sinks {
			if math.IsNaN(s) || math.IsInf(s, 1) {
				return bad("sink %d is %v; sinks must be finite or -Inf (none)", h, s)
			}
		}
	}
	if p.Mask != nil {
		if err := p.Mask.validate(p.Heads, p.N, p.M); err != nil {
			return err
		}
	}
	return nil
}

func (p *Problem[T]) kvLen(x []T, x16 []uint16) int {
	if p.KVFormat != NoHalf {
		return len(x16)
	}
	return len(x)
}

func isFloat32[T Float]() bool {
	_, ok := any(T(0)).(float32)
	return ok
}

func (m *Mask) validate(heads, n, mk int) error {
	if (m.Bool == nil) == (m.Add == nil) {
		return bad("a mask needs exactly one of Bool and Add")
	}
	hb := m.HeadsPerBatch
	if hb == 0 {
		hb = heads
	}
	if hb < 1 || heads%hb != 0 {
		return bad("mask: %d heads per batch element do not divide %d heads", m.HeadsPerBatch, heads)
	}
	if m.BatchStride < 0 || m.HeadStride < 0 || m.RowStride < 0 || m.ColStride < 0 {
		return bad("mask strides must be >= 0")
	}
	last := (heads/hb-1)*m.BatchStride + (hb-1)*m.HeadStride + (n-1)*m.RowStride + (mk-1)*m.ColStride
	if last >= m.Len() || last < 0 {
		return bad("mask of %d elements is too small for its strides (last element %d)", m.Len(), last)
	}
	for i, a := range m.Add {
		if math.IsNaN(a) || math.IsInf(a, 1) {
			return bad("additive mask entry %d is %v; use finite values or -Inf", i, a)
		}
	}
	return nil
}

// CheckFinite returns an error wrapping ErrBadProblem if Q, or a key or
// value some row can attend (inside its head's valid keys), is NaN or Inf.
// Padding beyond the valid keys is not read and not checked.
func (p *Problem[T]) CheckFinite() error {
	if i := FirstNonFinite(p.Q); i >= 0 {
		return bad("Q has a non-finite value %v at flat index %d", p.Q[i], i)
	}
	if i := FirstNonFiniteHalf(p.KVFormat, p.Q16); i >= 0 {
		return bad("Q has a non-finite %v value %v at flat index %d", p.KVFormat, HalfToFloat32(p.KVFormat, p.Q16[i]), i)
	}
	g := p.Group()
	for kh := range p.KVHeadCount() {
		l := 0
		for h := kh * g; h < (kh+1)*g; h++ {
			l = max(l, p.KeyLen(h))
		}
		for _, in := range []struct {
			name string
			x    []T
			x16  []uint16
			w    int
		}{{"K", p.K, p.K16, p.D}, {"V", p.V, p.V16, p.E}} {
			base := kh * p.M * in.w
			if p.KVFormat != NoHalf {
				if i := FirstNonFiniteHalf(p.KVFormat, in.x16[base:base+l*in.w]); i >= 0 {
					return bad("%s has a non-finite %v value %v at flat index %d", in.name, p.KVFormat, HalfToFloat32(p.KVFormat, in.x16[base+i]), base+i)
				}
				continue
			}
			if i := FirstNonFinite(in.x[base : base+l*in.w]); i >= 0 {
				return bad("%s has a non-finite value %v at flat index %d", in.name, in.x[base+i], base+i)
			}
		}
	}
	return nil
}

// overflows reports whether the product of positive ints overflows an int.
func overflows(xs ...int) bool {
	n := 1
	for _, x := range xs {
		if n > math.MaxInt/x {
			return true
		}
		n *= x
	}
	return false
}

// FirstNonFinite returns the index of the first NaN or Inf in x, or -1.
// Chunks are checked with the SIMD finiteness kernels and only a chunk
// holding a NaN or Inf is searched element by element: the scalar loop
// alone took an eighth of a windowed prefill's time in its output check.
func FirstNonFinite[T Float](x []T) int {
	const chunk = 4096
	for c0 := 0; c0 < len(x); c0 += chunk {
		c := x[c0:min(c0+chunk, len(x))]
		if allFinite(c) {
			continue
		}
		for i, v := range c {
			// v-v is 0 for finite v and NaN for NaN and Inf.
			if v-v != 0 {
				return c0 + i
			}
		}
	}
	return -1
}

// allFinite reports whether x holds no NaN or Inf.
func allFinite[T Float](x []T) bool {
	switch x := any(x).(type) {
	case []float32:
		return kernels.Finite32(x)
	case []float64:
		return kernels.Finite64(x)
	}
	for _, v := range x {
		if v-v != 0 {
			return false
		}
	}
	return true
}

// ColumnMaxAbs returns max_l |V_lj| over the first rows keys of query
// head h (of its key/value head). It is the unit of the error contract.
func ColumnMaxAbs[T Float](p *Problem[T], h, rows int) []float64 {
	c := make([]float64, p.E)
	if p.KVFormat == NoHalf {
		// The common case reads V in place, at memory speed: it runs on
		// every certified call.
		MaxAbsRows(p.V[p.KVHead(h)*p.M*p.E:][:rows*p.E], c)
		return c
	}
	// 16-bit values: the largest magnitude's bits per column, in one
	// vector pass.
	bits := make([]uint16, p.E)
	kernels.ColumnMaxAbsBits16(p.V16[p.KVHead(h)*p.M*p.E:][:rows*p.E], p.E, bits, 0)
	for j, b := range bits {
		c[j] = float64(HalfToFloat32(p.KVFormat, b))
	}
	return c
}

// Gradients receives the gradients of a scalar loss with respect to the
// inputs, each shaped like its input: DQ like Q, DK like K, DV like V (in T, also for 16-bit keys and values)
// (summed over the query heads sharing a key/value head), and DSinks like
// p.Sinks (summed over the heads sharing a sink), nil without sinks.
type Gradients[T Float] struct {
	DQ, DK, DV []T
	DSinks     []float64
}

// NewGradients allocates Gradients sized for p.
func NewGradients[T Float](p *Problem[T]) *Gradients[T] {
	kv := p.KVHeadCount() * p.M
	g := &Gradients[T]{DQ: make([]T, len(p.Q)), DK: make([]T, kv*p.D), DV: make([]T, kv*p.E)}
	if p.Sinks != nil {
		g.DSinks = make([]float64, len(p.Sinks))
	}
	return g
}

// Differentiable is a Method that also computes gradients. Backward gets
// the forward's output (O and LSE, as its own Forward produced them) and dO,
// the loss gradient with respect to O (Heads*N*E), and fills g. Keys masked
// out (padding, causal) get zero gradients.
type Differentiable interface {
	Method
	Backward32(ctx context.Context, p *Problem[float32], out *Output[float32], dO []float32, g *Gradients[float32]) (Stats, error)
	Backward64(ctx context.Context, p *Problem[float64], out *Output[float64], dO []float64, g *Gradients[float64]) (Stats, error)
}

// Backward calls the Backward method of m that matches T, after checking
// that its backward pass supports p's features (CheckSupport).
func Backward[T Float](ctx context.Context, m Differentiable, p *Problem[T], out *Output[T], dO []T, g *Gradients[T]) (Stats, error) {
	if err := CheckSupport(m, p, true); err != nil {
		return Stats{}, err
	}
	switch p := any(p).(type) {
	case *Problem[float32]:
		return m.Backward32(ctx, p, any(out).(*Output[float32]), any(dO).([]float32), any(g).(*Gradients[float32]))
	case *Problem[float64]:
		return m.Backward64(ctx, p, any(out).(*Output[float64]), any(dO).([]float64), any(g).(*Gradients[float64]))
	}
	return Stats{}, fmt.Errorf("attn: unsupported element type %T", p)
}

// Estimate is a method's prediction of what a call would cost.
type Estimate struct {
	// Seconds is the predicted wall time on this class of machine (2 cores,
	// AVX2): flop counts scaled by the method's measured throughput, so
	// methods with different inner loops compare fairly.
	Seconds float64
	// Bytes is the predicted peak working memory beyond inputs and output.
	Bytes float64
	// Reason explains the estimate in a sentence for reports, e.g.
	// "beta = 0.9, degree 5, rank 1287".
	Reason string
}

// Planner is implemented by methods that can predict their cost before
// running. Estimate returns an error wrapping ErrUnsupported, with a message
// naming the cause, when the method cannot meet p.Eps on p at all. Estimates
// must be cheap: O(size of the inputs) at most.
type Planner interface {
	Estimate32(p *Problem[float32]) (Estimate, error)
	Estimate64(p *Problem[float64]) (Estimate, error)
}

// EstimateCost calls the Estimate method of m that matches T, after
// checking that m supports p's features (CheckSupport) if it is a Method.
func EstimateCost[T Float](m Planner, p *Problem[T]) (Estimate, error) {
	if mm, ok := m.(Method); ok {
		if err := CheckSupport(mm, p, false); err != nil {
			return Estimate{}, err
		}
	}
	switch p := any(p).(type) {
	case *Problem[float32]:
		return m.Estimate32(p)
	case *Problem[float64]:
		return m.Estimate64(p)
	}
	return Estimate{}, fmt.Errorf("attn: unsupported element type %T", p)
}
