package fastattn

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/exact"
	"github.com/fastattn/fastattn/internal/check"
)

// Grads is the output of Gradient: the gradients of a scalar loss with
// respect to Q, K and V, each shaped like its input and in its dtype.
type Grads[T Float] struct {
	DQ, DK, DV Tensor[T]
	// DSinks is the gradient with respect to Options.Sinks (one entry per
	// query head, summed over the batch), nil without sinks.
	DSinks []float64
	Report GradReport
}

// GradReport describes one Gradient call.
type GradReport struct {
	// CallReport's Seconds, Flops and GFlops are the backward pass's.
	CallReport
	// ForwardSeconds is the forward pass's time when ForwardBackward ran it.
	ForwardSeconds float64 `json:"forward_seconds,omitempty"`
	// Observed is, for approximate methods, the gradients' measured error
	// against the exact gradient on sampled rows; nil for exact methods.
	Observed *GradCheck `json:"observed_error,omitempty"`
}

// GradCheck is the observed error of an approximate gradient. For each of
// dQ, dK and dV it is
//
//	max |G - G_exact| / max(max |G_exact|, max |G|)
//
// over the sampled rows: the largest error relative to the gradient's
// largest entry there (taking the larger of the two, so that the figure is
// finite and at most 2 however wrong G is). dQ is checked on sampled query
// rows, dK and dV on sampled key rows, of up to GradCheckHeads heads.
type GradCheck struct {
	DQ float64 `json:"dq"`
	DK float64 `json:"dk"`
	DV float64 `json:"dv"`
	// Heads are the sampled heads (indices into the flattened leading
	// dimensions); QueryRows and KeyRows are the rows sampled in each.
	Heads     []int `json:"heads"`
	QueryRows int   `json:"query_rows"`
	KeyRows   int   `json:"key_rows"`
	// Seconds is the time the check took. The exact dK and dV rows of a
	// key need every query's exact log-sum-exp and output, so the check
	// runs one exact float64 forward pass over each sampled head.
	Seconds float64 `json:"seconds"`
}

// GradCheckHeads and GradCheckRows bound the sample the observed gradient
// error is measured on: rows per head, for queries and for keys.
const (
	GradCheckHeads = 2
	GradCheckRows  = 8
)

// DifferentiableMethods lists the methods Gradient accepts: those with a
// backward pass.
func DifferentiableMethods() []string {
	var names []string
	for _, n := range Methods() {
		if _, ok := methods[n].(attn.Differentiable); ok {
			names = append(names, n)
		}
	}
	return names
}

// Gradient computes the gradients of a scalar loss with respect to q, k and
// v, given the forward result res of Attend on the same inputs and options
// and dOut, the loss gradient with respect to res.Out (shaped like it).
// Keys masked out by padding or the causal mask get zero gradients.
//
// The method is the one that computed res (res.Report.Method); opts.Method
// may name it too but must then agree. A method without a backward pass
// gives an error matching ErrInvalidInput and attn.ErrUnsupported. For an
// approximate method the report carries the observed error against the
// exact gradient on sampled rows (see GradCheck, which costs one exact
// forward pass over GradCheckHeads heads).
func Gradient[T Float](ctx context.Context, q, k, v Tensor[T], res *Result[T], dOut Tensor[T], opts Options) (*Grads[T], error) {
	p, lead, err := problem(q, k, v, opts)
	if err != nil {
		return nil, err
	}
	return gradient(ctx, p, lead, k.Shape, v.Shape, res, dOut, opts)
}

// GradientHalf is Gradient for a result of AttendHalf, whose queries,
// keys, values and output are stored in one 16-bit format: the gradients
// with respect to Q, K and V in float32 (shaped like q, k and v) and the
// sinks, computed by exact attention's backward pass in float32 on the
// 16-bit values as given. dOut is the loss gradient with respect to
// res.Out, in float32 (a 16-bit gradient widens to it exactly).
//
// As in FlashAttention, each row's Delta_i = dOut_i . Out_i is formed from
// the stored 16-bit output, whose rounding (at most 2^-11 of each entry
// for float16, 2^-8 for bfloat16) moves Delta_i by at most that fraction
// of sum_c |dOut_ic Out_ic|; dS_ij = P_ij (dP_ij - Delta_i) carries it
// into dQ and dK (dV does not use Delta).
func GradientHalf(ctx context.Context, q, k, v HalfTensor, res *HalfResult, dOut Tensor[float32], opts Options) (*Grads[float32], error) {
	if res == nil {
		return nil, invalid("GradientHalf needs the forward result of AttendHalf; got nil")
	}
	if res.Out.Format != q.Format {
		return nil, invalid("the forward output is %v but Q is %v; AttendHalf stores the output in the queries' format", res.Out.Format, q.Format)
	}
	if q.Format != k.Format {
		return nil, invalid("Q is %v but K and V are %v; give all three in one 16-bit format", q.Format, k.Format)
	}
	// The backward pass widens 16-bit inputs to float32 once anyway: the
	// queries and the output are widened here, the keys and values there.
	wide := &Result[float32]{Out: widen16(res.Out), LSE: res.LSE, Report: res.Report}
	p := new(attn.Problem[float32])
	lead, err := halfProblem(p, nil, widen16(q), HalfTensor{}, k, v, opts)
	if err != nil {
		return nil, err
	}
	return gradient(ctx, p, lead, k.Shape, v.Shape, wide, dOut, opts)
}

// widen16 returns the float32 values of a 16-bit tensor (exact).
func widen16(h HalfTensor) Tensor[float32] {
	x := Tensor[float32]{Data: make([]float32, len(h.Data)), Shape: h.Shape}
	for i, b := range h.Data {
		x.Data[i] = attn.HalfToFloat32(h.Format, b)
	}
	return x
}

// gradient is Gradient on a built problem; kShape and vShape shape dK and
// dV.
func gradient[T Float](ctx context.Context, p *attn.Problem[T], lead, kShape, vShape []int, res *Result[T], dOut Tensor[T], opts Options) (*Grads[T], error) {
	if !p.AssumeFinite {
		if err := p.CheckFinite(); err != nil {
			return nil, inputError{err}
		}
	}
	name, err := gradMethod(p, res, opts)
	if err != nil {
		return nil, err
	}
	if err := checkForward(p, lead, res, dOut); err != nil {
		return nil, err
	}
	dm, ok := methods[name].(attn.Differentiable)
	if !ok {
		return nil, inputError{noBackward(name)}
	}
	out := &attn.Output[T]{O: res.Out.Data, LSE: res.LSE.Data}
	g := attn.NewGradients(p)
	start := time.Now()
	st, err := attn.Backward(ctx, dm, p, out, dOut.Data, g)
	if err != nil {
		return nil, fmt.Errorf("fastattn: %w", methodError(name, " backward", err))
	}
	secs := time.Since(start).Seconds()
	for _, x := range []struct {
		name string
		g    []T
	}{{"dQ", g.DQ}, {"dK", g.DK}, {"dV", g.DV}} {
		if i := attn.FirstNonFinite(x.g); i >= 0 {
			return nil, fmt.Errorf("fastattn: %s backward produced a non-finite %s entry %v at flat index %d", name, x.name, x.g[i], i)
		}
	}
	rep := GradReport{CallReport: newCallReport(name, p, secs, st)}
	rep.Reason = res.Report.Reason
	if name != (exact.Method{}).Name() {
		chk, err := checkGradient(ctx, p, dOut.Data, g)
		if err != nil {
			return nil, err
		}
		rep.Observed = chk
	}
	return &Grads[T]{
		DQ:     Tensor[T]{Data: g.DQ, Shape: append(slices.Clone(lead), p.N, p.D)},
		DK:     Tensor[T]{Data: g.DK, Shape: slices.Clone(kShape)},
		DV:     Tensor[T]{Data: g.DV, Shape: slices.Clone(vShape)},
		DSinks: g.DSinks,
		Report: rep,
	}, nil
}

// ForwardBackward runs Attend and then Gradient on its result: attention
// and the gradients of the loss whose gradient with respect to the output
// is dOut. With Method "auto" the planner's choice is kept only if it has a
// backward pass; otherwise exact attention is used, and the report's
// Reason says so.
func ForwardBackward[T Float](ctx context.Context, q, k, v, dOut Tensor[T], opts Options) (*Result[T], *Grads[T], error) {
	if opts.Method == Auto {
		p, _, err := problem(q, k, v, opts)
		if err != nil {
			return nil, nil, err
		}
		name, reason, err := choose(p)
		if err != nil {
			return nil, nil, err
		}
		if _, ok := methods[name].(attn.Differentiable); !ok {
			name, reason = DefaultMethod, reason+"; "+name+" has no backward pass, so "+DefaultMethod+" runs instead"
		}
		opts.Method = name
		res, err := Attend(ctx, q, k, v, opts)
		if err != nil {
			return nil, nil, err
		}
		res.Report.Reason = reason
		g, err := forwardBackwardGrad(ctx, q, k, v, res, dOut, opts)
		return res, g, err
	}
	if m, ok := methods[opts.Method]; ok {
		// Refuse before spending a forward pass: a method without a
		// backward pass, or whose backward declines an option in use.
		if _, ok := m.(attn.Differentiable); !ok {
			return nil, nil, inputError{noBackward(opts.Method)}
		}
		p, _, err := problem(q, k, v, opts)
		if err != nil {
			return nil, nil, err
		}
		if err := attn.CheckSupport(m, p, true); err != nil {
			return nil, nil, fmt.Errorf("fastattn: %w", err)
		}
	}
	res, err := Attend(ctx, q, k, v, opts)
	if err != nil {
		return nil, nil, err
	}
	g, err := forwardBackwardGrad(ctx, q, k, v, res, dOut, opts)
	return res, g, err
}

func forwardBackwardGrad[T Float](ctx context.Context, q, k, v Tensor[T], res *Result[T], dOut Tensor[T], opts Options) (*Grads[T], error) {
	g, err := Gradient(ctx, q, k, v, res, dOut, opts)
	if err != nil {
		return nil, err
	}
	g.Report.ForwardSeconds = res.Report.Seconds
	return g, nil
}

// gradMethod picks the method whose backward applies to res and checks
// that res was computed with the options given.
func gradMethod[T Float](p *attn.Problem[T], res *Result[T], opts Options) (string, error) {
	if res == nil {
		return "", invalid("Gradient needs the forward result; got nil")
	}
	rep := res.Report
	name := opts.Method
	if rep.Method != "" {
		if name != "" && name != Auto && name != rep.Method {
			return "", invalid("the forward result was computed by %q but opts.Method is %q", rep.Method, name)
		}
		name = rep.Method
		if rep.Scale != 0 && rep.Scale != p.Scale {
			return "", invalid("the forward result was computed with scale %g but the options give %g", rep.Scale, p.Scale)
		}
		if rep.Causal != p.Causal {
			return "", invalid("the forward result was computed with causal = %v but the options give %v", rep.Causal, p.Causal)
		}
		var now CallReport
		recordOptions(&now, p)
		if rep.Batch != 0 && (rep.KVHeads != now.KVHeads || rep.CausalAlign != now.CausalAlign || !equalWindows(rep.Window, now.Window) || rep.Mask != now.Mask || rep.Sinks != now.Sinks) {
			return "", invalid("the forward result was computed with other options (kv heads %d, causal alignment %q, window %v, mask %v, sinks %v) than these (%d, %q, %v, %v, %v)",
				rep.KVHeads, rep.CausalAlign, rep.Window, rep.Mask, rep.Sinks, now.KVHeads, now.CausalAlign, now.Window, now.Mask, now.Sinks)
		}
		if rep.Batch != 0 && !slices.Equal(rep.KeyLengths, p.KeyLens) {
			return "", invalid("the forward result was computed with key lengths %v (per head) but the options give %v", rep.KeyLengths, p.KeyLens)
		}
		if rep.ErrorBound != 0 && rep.Eps != 0 && rep.Eps != p.Eps {
			return "", invalid("the forward result was computed with eps %g but the options give %g", rep.Eps, p.Eps)
		}
		if rep.Batch != 0 && (rep.Batch != p.Heads || rep.N != p.N || rep.M != p.M || rep.D != p.D || rep.E != p.E) {
			return "", invalid("the forward result is for %d heads, n=%d m=%d d=%d e=%d, but the inputs have %d heads, n=%d m=%d d=%d e=%d",
				rep.Batch, rep.N, rep.M, rep.D, rep.E, p.Heads, p.N, p.M, p.D, p.E)
		}
	}
	switch name {
	case "":
		name = DefaultMethod
	case Auto:
		return "", invalid("opts.Method is %q but the forward result does not say which method computed it (Report.Method is empty)", Auto)
	}
	if _, ok := methods[name]; !ok {
		return "", invalid("unknown method %q; choose one of %v", name, Methods())
	}
	return name, nil
}

func equalWindows(a, b *Window) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

// noBackward is the error for a method without a backward pass; it wraps
// attn.ErrUnsupported.
type noBackward string

func (n noBackward) Error() string {
	return fmt.Sprintf("method %q has no backward pass; methods with gradients: %v", string(n), DifferentiableMethods())
}

func (noBackward) Unwrap() error { return attn.ErrUnsupported }

// checkForward checks the forward result and dOut against the problem.
func checkForward[T Float](p *attn.Problem[T], lead []int, res *Result[T], dOut Tensor[T]) error {
	outShape := append(slices.Clone(lead), p.N, p.E)
	lseShape := append(slices.Clone(lead), p.N)
	if err := dOut.check("dO"); err != nil {
		return inputError{err}
	}
	if !slices.Equal(dOut.Shape, outShape) {
		return invalid("dO has shape %v but the output has shape %v; the loss gradient is shaped like the output", dOut.Shape, outShape)
	}
	if err := res.Out.check("the forward output"); err != nil {
		return inputError{err}
	}
	if !slices.Equal(res.Out.Shape, outShape) {
		return invalid("the forward output has shape %v but these inputs give %v", res.Out.Shape, outShape)
	}
	if err := res.LSE.check("the forward log-sum-exp"); err != nil {
		return inputError{err}
	}
	if !slices.Equal(res.LSE.Shape, lseShape) {
		return invalid("the forward log-sum-exp has shape %v but these inputs give %v", res.LSE.Shape, lseShape)
	}
	if i := attn.FirstNonFinite(dOut.Data); i >= 0 {
		return invalid("dO has a non-finite value %v at flat index %d", dOut.Data[i], i)
	}
	if i := attn.FirstNonFinite(res.Out.Data); i >= 0 {
		return invalid("the forward output has a non-finite value %v at flat index %d", res.Out.Data[i], i)
	}
	for h := range p.Heads {
		for i := range p.N {
			l := res.LSE.Data[h*p.N+i]
			if math.IsNaN(l) || math.IsInf(l, 1) {
				return invalid("the forward log-sum-exp of row %d is %v", h*p.N+i, l)
			}
			// A mask tensor may exclude every key of a row's range.
			if lo, hi := p.KeyRange(h, i); p.Mask == nil && hi > lo && math.IsInf(l, -1) {
				return invalid("the forward log-sum-exp of row %d is %v, but the row has valid keys", h*p.N+i, l)
			}
		}
	}
	return nil
}

// checkGradient measures g against the exact gradient on sampled rows of
// up to GradCheckHeads heads (internal/check's rule: the keys with the
// largest value and the farthest key are always sampled).
func checkGradient[T Float](ctx context.Context, p *attn.Problem[T], dO []T, g *attn.Gradients[T]) (*GradCheck, error) {
	start := time.Now()
	res, err := check.Gradient(ctx, p, dO, g, GradCheckHeads, GradCheckRows)
	if err != nil {
		return nil, fmt.Errorf("fastattn: checking the gradient: %w", err)
	}
	return &GradCheck{DQ: res.DQ, DK: res.DK, DV: res.DV, Heads: res.Heads,
		QueryRows: res.QueryRows, KeyRows: res.KeyRows, Seconds: time.Since(start).Seconds()}, nil
}
