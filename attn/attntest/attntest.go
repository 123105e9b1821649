// Package attntest is the conformance suite every attention method runs, as
// gonum's testblas is for BLAS implementations: the same shapes, masks,
// scales and extreme inputs, all checked against a float64 reference with
// the project's error contract
//
//	|T_ij - Att_ij| <= (Eps + floor) * max_l |V_lj|
//
// where Eps is the method's error target (0 for exact methods) and floor is
// the rounding allowance of the element type.
package attntest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/reference"
)

// Config says how a method is judged.
type Config struct {
	// Eps is passed to the method as Problem.Eps and is the error it must
	// meet on top of the rounding floors below. 0 for exact methods.
	Eps float64
	// Floor64 and Floor32 are rounding allowances relative to max_l |V_lj|;
	// zero values mean 1e-10 and 3e-5.
	Floor64, Floor32 float64
	// AllowUnsupported lets the method decline a case by returning an error
	// wrapping attn.ErrUnsupported; the case is then logged, not failed.
	// Exact methods leave it false: they must handle everything.
	AllowUnsupported bool
}

// Case is one conformance input, described by how to generate it.
type Case struct {
	Name              string
	Heads, N, M, D, E int
	// Batch is the number of batch elements the Heads query heads split
	// into (for masks and sinks); 0 means 1.
	Batch int
	// KVHeads is the number of key/value heads (0: Heads).
	KVHeads     int
	Scale       float64 // 0: 1/sqrt(D)
	Causal      bool
	CausalAlign attn.CausalAlignment
	Window      *attn.Window
	// Mask, if set, describes a random mask tensor.
	Mask *MaskSpec
	// Sinks, if set, is one sink logit per query head of a batch element.
	Sinks   []float64
	KeyLens []int
	// QScale, KScale and VScale multiply standard normal entries; 0 means 1.
	QScale, KScale, VScale float64
	// Shape, if set, rewrites the generated inputs (e.g. duplicate keys).
	Shape func(r *rand.Rand, p *attn.Problem[float64])
}

// MaskSpec describes a random mask tensor: which of the dimensions
// (batch, heads, rows, keys) it has (the others broadcast), whether it is
// additive (normal values, a fifth -Inf) or boolean (a third false), and
// whether some rows are masked entirely (every fifth row, when it has rows).
type MaskSpec struct {
	Additive                 bool
	Batch, Heads, Rows, Keys bool
	FullyMaskedRows          bool
}

// Cases returns the standard conformance inputs.
func Cases() []Case {
	return []Case{
		{Name: "1x1x1", Heads: 1, N: 1, M: 1, D: 1, E: 1},
		{Name: "square", Heads: 1, N: 64, M: 64, D: 16, E: 16},
		{Name: "ragged-tiles", Heads: 1, N: 67, M: 259, D: 7, E: 3},
		{Name: "cross", Heads: 1, N: 5, M: 300, D: 16, E: 9},
		{Name: "more-queries", Heads: 1, N: 300, M: 7, D: 4, E: 5},
		{Name: "batched", Heads: 6, N: 33, M: 41, D: 8, E: 8},
		{Name: "wide-values", Heads: 2, N: 20, M: 513, D: 3, E: 40},
		{Name: "causal", Heads: 2, N: 130, M: 130, D: 8, E: 8, Causal: true},
		{Name: "causal-decode", Heads: 3, N: 4, M: 600, D: 8, E: 6, Causal: true},
		{Name: "causal-more-queries", Heads: 1, N: 90, M: 70, D: 8, E: 8, Causal: true},
		{Name: "padding", Heads: 4, N: 20, M: 300, D: 8, E: 4, KeyLens: []int{300, 1, 0, 257}},
		{Name: "padding-causal", Heads: 2, N: 50, M: 80, D: 5, E: 4, Causal: true, KeyLens: []int{40, 80}},
		{Name: "tiny-scale", Heads: 1, N: 40, M: 90, D: 16, E: 8, Scale: 1e-6},
		{Name: "paper-scale", Heads: 1, N: 40, M: 90, D: 16, E: 8, Scale: 1.0 / 16},
		{Name: "large-logits", Heads: 2, N: 40, M: 300, D: 16, E: 8, QScale: 1e4, KScale: 1e4},
		{Name: "large-values", Heads: 1, N: 40, M: 300, D: 8, E: 8, VScale: 1e6},
		{Name: "identical-keys", Heads: 1, N: 30, M: 200, D: 8, E: 8, Shape: identicalKeys},
		{Name: "dominant-key", Heads: 1, N: 30, M: 200, D: 8, E: 8, Shape: dominantKey},
		{Name: "far-keys", Heads: 1, N: 30, M: 200, D: 8, E: 8, Shape: farKeys},
		{Name: "one-hot-values", Heads: 1, N: 30, M: 200, D: 8, E: 8, Shape: oneHotValues},
	}
}

// OptionCases returns the conformance inputs of the options beyond plain
// attention: grouped-query attention, causal alignment, windows, mask
// tensors and sinks. Methods that do not support one must decline it.
func OptionCases() []Case {
	w := func(l, r int) *attn.Window { return &attn.Window{Left: l, Right: r} }
	return []Case{
		{Name: "gqa-2", Heads: 4, KVHeads: 2, N: 20, M: 70, D: 8, E: 6},
		{Name: "gqa-4-causal", Heads: 8, KVHeads: 2, N: 33, M: 33, D: 8, E: 8, Causal: true},
		{Name: "gqa-8-decode", Heads: 8, KVHeads: 1, N: 3, M: 300, D: 8, E: 8, Causal: true},
		{Name: "mqa-batched-padding", Heads: 8, Batch: 2, KVHeads: 2, N: 5, M: 90, D: 4, E: 4, KeyLens: []int{90, 90, 90, 90, 7, 7, 7, 7}},
		{Name: "gqa-2-batched-tiles", Heads: 4, Batch: 2, KVHeads: 2, N: 80, M: 300, D: 8, E: 8, Causal: true},
		{Name: "top-left-cross", Heads: 2, N: 20, M: 50, D: 8, E: 8, Causal: true, CausalAlign: attn.TopLeft},
		{Name: "top-left-more-queries", Heads: 2, N: 50, M: 20, D: 8, E: 8, Causal: true, CausalAlign: attn.TopLeft},
		{Name: "top-left-padding", Heads: 2, N: 30, M: 40, D: 8, E: 8, Causal: true, CausalAlign: attn.TopLeft, KeyLens: []int{10, 40}},
		{Name: "window-causal", Heads: 2, N: 100, M: 100, D: 8, E: 8, Causal: true, Window: w(16, -1)},
		{Name: "window-both-sides", Heads: 1, N: 60, M: 80, D: 8, E: 8, Window: w(5, 5)},
		{Name: "window-0-0", Heads: 1, N: 40, M: 40, D: 8, E: 8, Window: w(0, 0)},
		{Name: "window-right-only", Heads: 1, N: 30, M: 50, D: 8, E: 8, Window: w(-1, 3)},
		{Name: "window-top-left-more-queries", Heads: 1, N: 50, M: 30, D: 8, E: 8, Window: w(4, 0), CausalAlign: attn.TopLeft},
		{Name: "window-wider-than-m", Heads: 2, N: 30, M: 40, D: 8, E: 8, Causal: true, Window: w(400, 400)},
		{Name: "window-padding-decode", Heads: 3, N: 4, M: 600, D: 8, E: 8, Causal: true, Window: w(100, 0), KeyLens: []int{600, 50, 0}},
		{Name: "window-skips-tiles", Heads: 1, N: 300, M: 900, D: 8, E: 8, Causal: true, Window: w(30, 0)},
		{Name: "window-gqa-sinks", Heads: 4, KVHeads: 2, N: 40, M: 60, D: 8, E: 8, Window: w(7, 2), Sinks: []float64{0, 1, -2, 3}},
		{Name: "mask-bool-rows-keys", Heads: 2, N: 30, M: 70, D: 8, E: 8, Mask: &MaskSpec{Rows: true, Keys: true}},
		{Name: "mask-bool-key-padding", Heads: 6, Batch: 2, N: 20, M: 300, D: 8, E: 8, Mask: &MaskSpec{Batch: true, Keys: true}},
		{Name: "mask-bool-fully-masked", Heads: 2, N: 30, M: 70, D: 8, E: 8, Mask: &MaskSpec{Heads: true, Rows: true, Keys: true, FullyMaskedRows: true}},
		{Name: "mask-additive", Heads: 4, Batch: 2, N: 25, M: 300, D: 8, E: 8, Mask: &MaskSpec{Additive: true, Batch: true, Heads: true, Rows: true, Keys: true}},
		{Name: "mask-additive-causal-masked-rows", Heads: 2, N: 40, M: 40, D: 8, E: 8, Causal: true, Mask: &MaskSpec{Additive: true, Rows: true, Keys: true, FullyMaskedRows: true}},
		{Name: "mask-additive-rows", Heads: 2, N: 30, M: 50, D: 8, E: 8, Mask: &MaskSpec{Additive: true, Rows: true}},
		{Name: "mask-gqa-window", Heads: 4, KVHeads: 1, N: 30, M: 80, D: 8, E: 8, Causal: true, Window: w(20, 0), Mask: &MaskSpec{Heads: true, Keys: true}},
		{Name: "sinks-minus-inf", Heads: 2, N: 20, M: 50, D: 8, E: 8, Sinks: []float64{math.Inf(-1), math.Inf(-1)}},
		{Name: "sinks-0", Heads: 2, N: 20, M: 50, D: 8, E: 8, Sinks: []float64{0, 0}},
		{Name: "sinks-50", Heads: 2, N: 20, M: 50, D: 8, E: 8, Sinks: []float64{50, 50}},
		{Name: "sinks-causal-padding", Heads: 4, Batch: 2, N: 30, M: 20, D: 8, E: 8, Causal: true, KeyLens: []int{20, 20, 5, 0}, Sinks: []float64{0.5, 3}},
		{Name: "sinks-mask-fully-masked", Heads: 2, N: 30, M: 70, D: 8, E: 8, Sinks: []float64{1, math.Inf(-1)}, Mask: &MaskSpec{Rows: true, Keys: true, FullyMaskedRows: true}},
		{Name: "sinks-offset-keys", Heads: 2, KVHeads: 1, N: 8, M: 16, D: 4, E: 4, Sinks: []float64{1, -0.5}, Shape: offsetKeys},
		{Name: "sinks-large-logits", Heads: 1, N: 20, M: 300, D: 16, E: 8, QScale: 1e2, KScale: 1e2, Sinks: []float64{50}},
	}
}

// mask builds the mask a MaskSpec describes for p.
func (s *MaskSpec) mask(r *rand.Rand, p *attn.Problem[float64], batch int) *attn.Mask {
	dims := [4]int{1, 1, 1, 1}
	for x, on := range [4]bool{s.Batch, s.Heads, s.Rows, s.Keys} {
		if on {
			dims[x] = [4]int{batch, p.Heads / batch, p.N, p.M}[x]
		}
	}
	m := &attn.Mask{HeadsPerBatch: p.Heads / batch}
	strides := [4]int{}
	size := 1
	for x := 3; x >= 0; x-- {
		if dims[x] > 1 {
			strides[x] = size
		}
		size *= dims[x]
	}
	m.BatchStride, m.HeadStride, m.RowStride, m.ColStride = strides[0], strides[1], strides[2], strides[3]
	if s.Additive {
		m.Add = make([]float64, size)
		for i := range m.Add {
			m.Add[i] = r.NormFloat64()
			if r.IntN(5) == 0 {
				m.Add[i] = math.Inf(-1)
			}
		}
	} else {
		m.Bool = make([]bool, size)
		for i := range m.Bool {
			m.Bool[i] = r.IntN(3) != 0
		}
	}
	if s.FullyMaskedRows && s.Rows {
		for i := 0; i < size; i++ {
			if (i/max(strides[2], 1))%dims[2]%5 == 0 {
				if m.Bool != nil {
					m.Bool[i] = false
				} else {
					m.Add[i] = math.Inf(-1)
				}
			}
		}
	}
	return m
}

func identicalKeys(_ *rand.Rand, p *attn.Problem[float64]) {
	for j := 1; j < p.Heads*p.M; j++ {
		copy(p.K[j*p.D:(j+1)*p.D], p.K[:p.D])
	}
}

func dominantKey(r *rand.Rand, p *attn.Problem[float64]) {
	// Key 0 points along every query's direction far more than the others.
	for h := range p.Heads {
		for i := range p.N {
			copy(p.Q[(h*p.N+i)*p.D:], p.Q[h*p.N*p.D:h*p.N*p.D+p.D])
		}
		for t := range p.D {
			p.K[h*p.M*p.D+t] = 8 * p.Q[h*p.N*p.D+t]
		}
	}
	_ = r
}

// offsetKeys adds 3 to every key entry: enough for exact attention to
// centre the keys, so that sinks must follow the logits' shift.
func offsetKeys(_ *rand.Rand, p *attn.Problem[float64]) {
	for j := range p.K {
		p.K[j] += 3
	}
}

func farKeys(_ *rand.Rand, p *attn.Problem[float64]) {
	// A common offset far from the origin: the softmax is unchanged only if
	// the method handles the shift well.
	for j := range p.Heads * p.M {
		for t := range p.D {
			p.K[j*p.D+t] += 50
		}
	}
}

func oneHotValues(r *rand.Rand, p *attn.Problem[float64]) {
	clear(p.V)
	for j := range p.Heads * p.M {
		p.V[j*p.E+r.IntN(p.E)] = 1
	}
}

// Generate builds the float64 problem a case describes.
func (c Case) Generate(seed uint64) *attn.Problem[float64] {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	or1 := func(x float64) float64 {
		if x == 0 {
			return 1
		}
		return x
	}
	fill := func(n int, s float64) []float64 {
		x := make([]float64, n)
		for i := range x {
			x[i] = s * r.NormFloat64()
		}
		return x
	}
	kv := c.KVHeads
	if kv == 0 {
		kv = c.Heads
	}
	p := &attn.Problem[float64]{
		Heads: c.Heads, KVHeads: c.KVHeads, N: c.N, M: c.M, D: c.D, E: c.E,
		Q:      fill(c.Heads*c.N*c.D, or1(c.QScale)),
		K:      fill(kv*c.M*c.D, or1(c.KScale)),
		V:      fill(kv*c.M*c.E, or1(c.VScale)),
		Scale:  c.Scale,
		Causal: c.Causal, CausalAlign: c.CausalAlign, Window: c.Window,
		Sinks: c.Sinks, KeyLens: c.KeyLens,
	}
	if p.Scale == 0 {
		p.Scale = 1 / math.Sqrt(float64(c.D))
	}
	if c.Mask != nil {
		p.Mask = c.Mask.mask(r, p, max(c.Batch, 1))
	}
	if c.Shape != nil {
		c.Shape(r, p)
	}
	return p
}

// To32 converts a problem to float32. The float32 problem is what the
// reference then sees, so rounding of the inputs is not counted as error.
func To32(p *attn.Problem[float64]) *attn.Problem[float32] {
	conv := func(x []float64) []float32 {
		y := make([]float32, len(x))
		for i, v := range x {
			y[i] = float32(v)
		}
		return y
	}
	return &attn.Problem[float32]{
		Heads: p.Heads, KVHeads: p.KVHeads, N: p.N, M: p.M, D: p.D, E: p.E,
		Q: conv(p.Q), K: conv(p.K), V: conv(p.V),
		Scale: p.Scale, Causal: p.Causal, CausalAlign: p.CausalAlign, Window: p.Window,
		Mask: p.Mask, Sinks: p.Sinks, KeyLens: p.KeyLens, Eps: p.Eps,
		Workers: p.Workers, AssumeFinite: p.AssumeFinite,
	}
}

// Run runs every conformance case, plain and with options, for both
// element types.
func Run(t *testing.T, m attn.Method, cfg Config) {
	for _, c := range append(Cases(), OptionCases()...) {
		t.Run(c.Name, func(t *testing.T) { RunCase(t, m, cfg, c, 1) })
	}
	t.Run("cancelled", func(t *testing.T) { checkCancelled(t, m, cfg) })
	t.Run("non-finite", func(t *testing.T) { checkNonFinite(t, m, cfg) })
}

// checkNonFinite checks that a NaN or Inf in Q, or in a key or value some
// row attends, is an error wrapping attn.ErrBadProblem (through
// attn.Forward, which scans for methods that do not check as they go),
// while one in the padding beyond the valid keys is not read.
func checkNonFinite(t *testing.T, m attn.Method, cfg Config) {
	base := Case{Heads: 2, N: 5, M: 300, D: 4, E: 3, KeyLens: []int{300, 100}}
	for _, c := range []struct {
		name  string
		spoil func(p *attn.Problem[float64])
		bad   bool
	}{
		{"Q", func(p *attn.Problem[float64]) { p.Q[7] = math.NaN() }, true},
		{"K", func(p *attn.Problem[float64]) { p.K[(300+50)*4+1] = math.Inf(-1) }, true},
		{"V", func(p *attn.Problem[float64]) { p.V[299*3] = math.Inf(1) }, true},
		{"K padding", func(p *attn.Problem[float64]) { p.K[(300+150)*4] = math.NaN() }, false},
		{"V padding", func(p *attn.Problem[float64]) { p.V[(300+299)*3+2] = math.Inf(1) }, false},
	} {
		p := base.Generate(4)
		p.Eps = cfg.Eps
		c.spoil(p)
		for _, pt := range []any{p, To32(p)} {
			var err error
			switch pt := pt.(type) {
			case *attn.Problem[float64]:
				_, err = attn.Forward(context.Background(), m, pt, attn.NewOutput(pt))
			case *attn.Problem[float32]:
				_, err = attn.Forward(context.Background(), m, pt, attn.NewOutput(pt))
			}
			if cfg.AllowUnsupported && errors.Is(err, attn.ErrUnsupported) {
				continue
			}
			if c.bad && !errors.Is(err, attn.ErrBadProblem) {
				t.Errorf("%s (%T): non-finite input gave %v, want an error wrapping attn.ErrBadProblem", c.name, pt, err)
			}
			if !c.bad && err != nil {
				t.Errorf("%s (%T): a non-finite value past the valid keys gave %v; padding is not read", c.name, pt, err)
			}
		}
	}
}

// RunCase checks one case with the given seed in float64 and float32.
func RunCase(t *testing.T, m attn.Method, cfg Config, c Case, seed uint64) {
	t.Helper()
	p64 := c.Generate(seed)
	p64.Eps = cfg.Eps
	if err := p64.Validate(); err != nil {
		t.Fatalf("case %s is invalid: %v", c.Name, err)
	}
	floor64, floor32 := cfg.Floor64, cfg.Floor32
	if floor64 == 0 {
		floor64 = 1e-10
	}
	if floor32 == 0 {
		floor32 = 3e-5
	}
	if err := Check(m, p64, cfg.Eps+floor64, cfg.AllowUnsupported); err != nil {
		t.Errorf("float64: %v", err)
	}
	if err := Check(m, To32(p64), cfg.Eps+floor32, cfg.AllowUnsupported); err != nil {
		t.Errorf("float32: %v", err)
	}
	// 16-bit keys and values: the reference reads the rounded values, so
	// what is measured is the computation's error, as for float32.
	for _, f := range []attn.HalfFormat{attn.Float16, attn.BFloat16} {
		if ph := ToHalfKV(To32(p64), f); ph != nil {
			if err := Check(m, ph, cfg.Eps+floor32, cfg.AllowUnsupported); err != nil {
				t.Errorf("%v keys and values: %v", f, err)
			}
		}
		if err := CheckHalf(m, p64, f, cfg.Eps+floor32, cfg.AllowUnsupported); err != nil {
			t.Errorf("%v queries, keys, values and output: %v", f, err)
		}
	}
}

// ToHalfKV returns p with K and V rounded to format f (to nearest, ties to
// even) and stored in K16 and V16, or nil if a value would overflow f.
func ToHalfKV(p *attn.Problem[float32], f attn.HalfFormat) *attn.Problem[float32] {
	h := *p
	h.KVFormat, h.K16, h.V16, h.K, h.V = f, halfBits(f, p.K), halfBits(f, p.V), nil, nil
	if h.K16 == nil || h.V16 == nil {
		return nil
	}
	return &h
}

// halfBits rounds x to format f, or returns nil if a value would overflow.
func halfBits(f attn.HalfFormat, x []float32) []uint16 {
	y := make([]uint16, len(x))
	for i, v := range x {
		y[i] = RoundHalf(f, v)
		if math.IsInf(float64(attn.HalfToFloat32(f, y[i])), 0) && !math.IsInf(float64(v), 0) {
			return nil
		}
	}
	return y
}

// RoundHalf rounds x to format f, to nearest with ties to even
// (attn.Float32ToHalf).
func RoundHalf(f attn.HalfFormat, x float32) uint16 { return attn.Float32ToHalf(f, x) }

// Check runs m on p and compares every output entry and log-sum-exp with
// the float64 reference. The output starts as NaN, so every entry must be
// written, and Q, K and V must be left unchanged. tol is relative to max_l |V_lj| for outputs; the
// log-sum-exp must be within log(1+tol) plus rounding of the reference.
// An ErrUnsupported from the method passes when allowUnsupported is set.
//
// A problem using a Feature the method does not support must be declined
// with an error wrapping attn.ErrUnsupported that names the feature.
func Check[T attn.Float](m attn.Method, p *attn.Problem[T], tol float64, allowUnsupported bool) error {
	out := attn.NewOutput(p)
	poisonOutput(out)
	inputs := snapshotInputs(p)
	st, err := attn.Forward(context.Background(), m, p, out)
	if err := inputs.unchanged(m, p); err != nil {
		return err
	}
	if missing := p.Features() &^ attn.SupportedFeatures(m, false); missing != 0 {
		return checkDeclined(m, err, missing)
	}
	if err != nil {
		if allowUnsupported && errors.Is(err, attn.ErrUnsupported) {
			return nil
		}
		return fmt.Errorf("%s failed: %w", m.Name(), err)
	}
	// With no target (Eps 0: exact methods) the reported bound is a
	// worst case that may exceed the tolerance the outputs are held to.
	if p.Eps > 0 && st.ErrorBound > tol {
		return fmt.Errorf("%s reports error bound %g above the target %g", m.Name(), st.ErrorBound, tol)
	}
	want, wantLSE := reference.Attention(p)
	for h := range p.Heads {
		colMax := attn.ColumnMaxAbs(p, h, p.KeyLen(h))
		for i := range p.N {
			row := h*p.N + i
			for j := range p.E {
				got, ref := float64(out.O[row*p.E+j]), want[row*p.E+j]
				if !(math.Abs(got-ref) <= tol*colMax[j]) {
					return fmt.Errorf("head %d row %d col %d: got %g, reference %g: error %.3g > %.3g * max|V_col| = %.3g",
						h, i, j, got, ref, math.Abs(got-ref), tol, tol*colMax[j])
				}
			}
			got, ref := out.LSE[row], wantLSE[row]
			if math.IsInf(ref, -1) {
				if !math.IsInf(got, -1) {
					return fmt.Errorf("head %d row %d has no valid key: log-sum-exp %g, want -Inf", h, i, got)
				}
				continue
			}
			if lseTol := math.Log1p(tol) + 1e-6*math.Abs(ref)*roundingOf[T](); !(math.Abs(got-ref) <= lseTol) {
				return fmt.Errorf("head %d row %d: log-sum-exp %g, reference %g (tolerance %.3g)", h, i, got, ref, lseTol)
			}
		}
	}
	return nil
}

// checkDeclined checks that err declines the missing features by name.
func checkDeclined(m attn.Method, err error, missing attn.Feature) error {
	if !errors.Is(err, attn.ErrUnsupported) {
		return fmt.Errorf("%s does not support %v but returned %v, want an error wrapping attn.ErrUnsupported", m.Name(), missing, err)
	}
	if !strings.Contains(err.Error(), missing.String()) {
		return fmt.Errorf("%s declined %v with %q, which does not name it", m.Name(), missing, err)
	}
	return nil
}

// roundingOf scales the log-sum-exp's rounding allowance, 1e-6 |LSE| for
// float32 and 1e-13 |LSE| for float64: a few hundred units in the last place,
// as the logits themselves are dot products rounded in T.
func roundingOf[T attn.Float]() float64 {
	var x T
	if _, ok := any(x).(float32); ok {
		return 1
	}
	return 1e-7
}

func checkCancelled(t *testing.T, m attn.Method, cfg Config) {
	p := Case{Heads: 4, N: 256, M: 256, D: 8, E: 8}.Generate(3)
	p.Eps = cfg.Eps
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := m.Forward64(ctx, p, attn.NewOutput(p))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("with a cancelled context %s returned %v, want context.Canceled", m.Name(), err)
	}
}
