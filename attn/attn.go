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
)

// Float is the set of element types attention is computed in.
type Float interface{ ~float32 | ~float64 }

// Problem is a batch of Heads independent attention problems. For head h,
// Q[h] is N x D, K[h] is M x D and V[h] is M x E, all row-major and packed
// head after head.
type Problem[T Float] struct {
	Heads, N, M, D, E int
	Q, K, V           []T

	// Scale multiplies Q K^T before the exponential. Must be positive.
	Scale float64

	// Causal masks key j for query i when j > i + L - N, where L is the
	// head's number of valid keys: the mask is aligned to the bottom-right
	// corner, as FlashAttention >= 2.1 does, so that the last query sees
	// every valid key. For N == L it is the usual j > i.
	Causal bool

	// KeyLens, when not nil, holds one entry per head: only keys
	// 0 <= j < KeyLens[h] are attended (the rest are padding).
	KeyLens []int

	// Eps is the error target of approximate methods: every output entry
	// must satisfy |T_ij - Att_ij| <= Eps * max_l |V_lj|. Exact methods
	// ignore it.
	Eps float64
}

// Output receives a method's results: O is Heads*N*E, LSE is Heads*N and
// holds log(sum_j exp(Scale q_i.k_j)) per row, or -Inf for a row with no
// valid key (whose output row is zero).
type Output[T Float] struct {
	O   []T
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
	// |T_ij - Att_ij| <= eps * max_l |V_lj| for every entry; 0 for exact.
	ErrorBound float64
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

// Forward calls the Forward method of m that matches T.
func Forward[T Float](ctx context.Context, m Method, p *Problem[T], out *Output[T]) (Stats, error) {
	switch p := any(p).(type) {
	case *Problem[float32]:
		return m.Forward32(ctx, p, any(out).(*Output[float32]))
	case *Problem[float64]:
		return m.Forward64(ctx, p, any(out).(*Output[float64]))
	}
	return Stats{}, fmt.Errorf("attn: unsupported element type %T", p)
}

// KeyLen is the number of valid keys of head h.
func (p *Problem[T]) KeyLen(h int) int {
	if p.KeyLens == nil {
		return p.M
	}
	return p.KeyLens[h]
}

// KeyLimit returns how many keys query row i of head h attends: keys
// 0 <= j < KeyLimit(h, i). Every mask this package supports keeps a prefix.
func (p *Problem[T]) KeyLimit(h, i int) int {
	l := p.KeyLen(h)
	if p.Causal {
		l = min(l, i+l-p.N+1)
	}
	return max(l, 0)
}

// ErrUnsupported is wrapped by the error a method returns for a problem
// outside its domain (for example entries too large for a polynomial of
// reasonable degree). The caller can then choose another method.
var ErrUnsupported = errors.New("method does not apply to this input")

// ErrBadProblem is wrapped by every error Validate returns.
var ErrBadProblem = errors.New("invalid input")

// Validate checks sizes, the scale, key lengths and Eps, and that every
// input entry is finite. Methods may assume a validated problem.
func (p *Problem[T]) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrBadProblem, fmt.Sprintf(format, args...))
	}
	switch {
	case p.Heads < 1 || p.N < 1 || p.M < 1 || p.D < 1 || p.E < 1:
		return bad("sizes must be positive, got heads=%d n=%d m=%d d=%d e=%d", p.Heads, p.N, p.M, p.D, p.E)
	case overflows(p.Heads, max(p.N, p.M), max(p.D, p.E)):
		return bad("sizes heads=%d n=%d m=%d d=%d e=%d overflow an int", p.Heads, p.N, p.M, p.D, p.E)
	case len(p.Q) != p.Heads*p.N*p.D:
		return bad("Q has %d entries, want heads*n*d = %d", len(p.Q), p.Heads*p.N*p.D)
	case len(p.K) != p.Heads*p.M*p.D:
		return bad("K has %d entries, want heads*m*d = %d", len(p.K), p.Heads*p.M*p.D)
	case len(p.V) != p.Heads*p.M*p.E:
		return bad("V has %d entries, want heads*m*e = %d", len(p.V), p.Heads*p.M*p.E)
	case !(p.Scale > 0) || math.IsInf(p.Scale, 0):
		return bad("scale must be positive and finite, got %g", p.Scale)
	case !(p.Eps >= 0 && p.Eps < 1):
		return bad("eps must be in [0, 1) (an error of max|V| says nothing), got %g", p.Eps)
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
	for _, in := range []struct {
		name string
		x    []T
	}{{"Q", p.Q}, {"K", p.K}, {"V", p.V}} {
		if i := FirstNonFinite(in.x); i >= 0 {
			return bad("%s has a non-finite value %v at flat index %d", in.name, in.x[i], i)
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
func FirstNonFinite[T Float](x []T) int {
	for i, v := range x {
		// v-v is 0 for finite v and NaN for NaN and Inf.
		if v-v != 0 {
			return i
		}
	}
	return -1
}

// ColumnMaxAbs returns max_l |V_lj| over the first rows keys of head h.
// It is the unit of the error contract.
func ColumnMaxAbs[T Float](p *Problem[T], h, rows int) []float64 {
	c := make([]float64, p.E)
	v := p.V[h*p.M*p.E:]
	for l := range rows {
		for j, x := range v[l*p.E : (l+1)*p.E] {
			c[j] = max(c[j], math.Abs(float64(x)))
		}
	}
	return c
}

// Gradients receives the gradients of a scalar loss with respect to the
// inputs, each shaped like its input: DQ like Q, DK like K, DV like V.
type Gradients[T Float] struct {
	DQ, DK, DV []T
}

// NewGradients allocates Gradients sized for p.
func NewGradients[T Float](p *Problem[T]) *Gradients[T] {
	return &Gradients[T]{DQ: make([]T, len(p.Q)), DK: make([]T, len(p.K)), DV: make([]T, len(p.V))}
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

// Backward calls the Backward method of m that matches T.
func Backward[T Float](ctx context.Context, m Differentiable, p *Problem[T], out *Output[T], dO []T, g *Gradients[T]) (Stats, error) {
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

// EstimateCost calls the Estimate method of m that matches T.
func EstimateCost[T Float](m Planner, p *Problem[T]) (Estimate, error) {
	switch p := any(p).(type) {
	case *Problem[float32]:
		return m.Estimate32(p)
	case *Problem[float64]:
		return m.Estimate64(p)
	}
	return Estimate{}, fmt.Errorf("attn: unsupported element type %T", p)
}
