package fastattn

import (
	"context"
	"errors"
	"fmt"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/exact"
)

// Workspace is reusable state for AttendInto: the exact kernels' buffers
// and what building a call's problem would allocate.
// A steady stream of calls of one shape through one Workspace allocates
// nothing after the first. A Workspace must not be used by two calls at
// once (give each serving goroutine its own, and each a share of the cores
// through Options.Workers); it needs no closing.
type Workspace struct {
	p32     attn.Problem[float32]
	p64     attn.Problem[float64]
	o32     attn.Output[float32]
	o64     attn.Output[float64]
	ws32    *exact.Workspace[float32]
	ws64    *exact.Workspace[float64]
	lse     []float64
	scratch problemScratch
}

// NewWorkspace returns an empty Workspace.
func NewWorkspace() *Workspace { return &Workspace{} }

// state returns the workspace's problem, output and exact workspace for T.
func state[T Float](ws *Workspace) (*attn.Problem[T], *attn.Output[T], *exact.Workspace[T]) {
	var p, o, w any
	switch any(T(0)).(type) {
	case float32:
		if ws.ws32 == nil {
			ws.ws32 = exact.NewWorkspace[float32]()
		}
		p, o, w = &ws.p32, &ws.o32, ws.ws32
	default:
		if ws.ws64 == nil {
			ws.ws64 = exact.NewWorkspace[float64]()
		}
		p, o, w = &ws.p64, &ws.o64, ws.ws64
	}
	return p.(*attn.Problem[T]), o.(*attn.Output[T]), w.(*exact.Workspace[T])
}

// ErrNotExact is returned by AttendInto for a method other than exact.
var ErrNotExact = errors.New("AttendInto computes exact attention only")

// AttendInto computes exact attention of q, k and v with opts, as Attend
// does, into caller-owned buffers: out, shaped (..., n, e) like Attend's
// output, and lse (nil, or one log-sum-exp per row, heads*n values). It is
// the serving hot path: with a reused Workspace, calls of one shape
// allocate nothing, NaN and Inf are looked for only among the keys the
// call reads, as it reads them (not at all with opts.AssumeFinite), and
// the work runs on opts.Workers goroutines. opts.Method must be "" or
// "exact". On error out and lse are unspecified.
func AttendInto[T Float](ctx context.Context, ws *Workspace, out Tensor[T], lse []float64, q, k, v Tensor[T], opts Options) error {
	if ws == nil {
		return invalid("AttendInto needs a Workspace (NewWorkspace)")
	}
	return attendInto(ctx, ws, shapeOf(out), lse, opts, func(p *attn.Problem[T]) ([]int, error) {
		lead, err := fillProblem(p, &ws.scratch, shapeOf(q), shapeOf(k), shapeOf(v), opts)
		if err != nil {
			return nil, err
		}
		p.Q, p.K, p.V = q.Data, k.Data, v.Data
		if err := p.ValidateShapes(); err != nil {
			return nil, inputError{err}
		}
		return lead, nil
	}, func(o *attn.Output[T]) { o.O = out.Data })
}

// attendInto is AttendInto with the problem built by build and the output
// out (its shape and size) bound to the exact output by bind.
func attendInto[T Float](ctx context.Context, ws *Workspace, out shaped, lse []float64, opts Options, build func(p *attn.Problem[T]) ([]int, error), bind func(o *attn.Output[T])) error {
	if ws == nil {
		return invalid("AttendInto needs a Workspace (NewWorkspace)")
	}
	if opts.Method != "" && opts.Method != DefaultMethod {
		return inputError{fmt.Errorf("%w; got method %q", ErrNotExact, opts.Method)}
	}
	p, o, w := state[T](ws)
	lead, err := build(p)
	if err != nil {
		return err
	}
	if err := checkShape("out", out.shape, out.size); err != nil {
		return inputError{err}
	}
	if len(out.shape) != len(lead)+2 || !prefixEqual(out.shape, lead) || out.shape[len(lead)] != p.N || out.shape[len(lead)+1] != p.E {
		return invalid("out has shape %v; want Q's leading shape %v then (n, e) = (%d, %d)", out.shape, lead, p.N, p.E)
	}
	rows := p.Heads * p.N
	switch {
	case lse == nil:
		if cap(ws.lse) < rows {
			ws.lse = make([]float64, rows)
		}
		lse = ws.lse[:rows]
	case len(lse) != rows:
		return invalid("lse has %d entries, want one per row (heads*n = %d)", len(lse), rows)
	}
	bind(o)
	o.LSE = lse
	defer func() { o.O, o.O16, o.LSE = nil, nil, nil }() // hold no caller buffers
	if _, err := w.Forward(ctx, p, o); err != nil {
		if errors.Is(err, attn.ErrBadProblem) {
			return inputError{err}
		}
		return fmt.Errorf("fastattn: %w", err)
	}
	return nil
}

// AttendIntoBound returns the a priori error bound of AttendInto's result
// for q, k, v and opts: for every output entry
//
//	|O_ij - Att_ij| <= bound * max_l |V_lj|,
//
// rounding included, as the error contract states for Attend. It is
// AttendIntoBounds' Output; AttendIntoBounds also bounds the log-sum-exps.
func AttendIntoBound[T Float](ctx context.Context, q, k, v Tensor[T], opts Options) (float64, error) {
	b, err := AttendIntoBounds(ctx, q, k, v, opts)
	return b.Output, err
}

// HotPathBounds are the a priori error bounds of AttendInto's results
// (AttendIntoBounds).
type HotPathBounds struct {
	// Output bounds every output entry: |O_ij - Att_ij| <= Output *
	// max_l |V_lj|, as Report.ErrorBound does for Attend.
	Output float64
	// LSE bounds every log-sum-exp AttendInto writes, in nats, as
	// Report.LSEBound does for Attend: what Merge needs to weigh results
	// over parts of the keys.
	LSE float64
}

// AttendIntoBounds returns the a priori error bounds of AttendInto's
// results for q, k, v and opts. AttendInto does not compute them: they
// cost what Attend's certification costs, one pass over every key and
// value (on opts.Workers goroutines) and one over Q, which for a decoding
// step is as much as the attention. A server that wants its hot path
// certified calls it when it needs the figures (say, per request, or when
// a cache has grown by some factor: the bounds only grow with the keys'
// range and their number).
//
// The bounds are those of AttendInto's arithmetic, which is Attend's exact
// attention without the two steps that keep Attend's bounds small: keys
// are not shifted by their centre (a common offset of the keys costs u |q|
// |k| per logit: for float32 keys around 1e4 the output bound exceeds 1)
// and values are not scaled. Both are +Inf where that arithmetic has no
// bound (values near the element type's largest number or subnormal;
// Attend handles them). The log-sum-exps' bound takes the largest logit
// the inputs allow in place of each row's own log-sum-exp, whose float64
// rounding it counts. An input NaN or Inf is an error, unless
// opts.AssumeFinite (which skips the check, a SIMD scan).
func AttendIntoBounds[T Float](ctx context.Context, q, k, v Tensor[T], opts Options) (HotPathBounds, error) {
	if opts.Method != "" && opts.Method != DefaultMethod {
		return HotPathBounds{}, inputError{fmt.Errorf("%w; got method %q", ErrNotExact, opts.Method)}
	}
	p, _, err := problem(q, k, v, opts)
	if err != nil {
		return HotPathBounds{}, err
	}
	if !opts.AssumeFinite {
		if err := p.CheckFinite(); err != nil {
			return HotPathBounds{}, inputError{err}
		}
	}
	out, lse := exact.UncentredBounds(ctx, p, opts.Workers)
	if err := ctx.Err(); err != nil {
		return HotPathBounds{}, err
	}
	return HotPathBounds{Output: out, LSE: lse}, nil
}

func prefixEqual(a, prefix []int) bool {
	for i, x := range prefix {
		if a[i] != x {
			return false
		}
	}
	return true
}
