package fastattn

import (
	"context"
	"slices"

	"github.com/fastattn/fastattn/attn"
)

// AttendInto is Attend writing the output and log-sum-exps into the
// caller's tensors instead of allocating them: out shaped (Q's leading
// dimensions, n, e) and lse (Q's leading dimensions, n). The result's Out
// and LSE are out and lse. Callers whose memory is not Go's (the C ABI of
// the Python package) use it to receive results without a copy. On error
// out and lse may have been partly written.
func AttendInto[T Float](ctx context.Context, q, k, v Tensor[T], out Tensor[T], lse Tensor[float64], opts Options) (*Result[T], error) {
	return attend(ctx, q, k, v, opts, &Result[T]{Out: out, LSE: lse})
}

// outputFor returns the output buffers for p: new ones, or dst's, checked
// and cleared (methods may leave rows without keys untouched).
func outputFor[T Float](p *attn.Problem[T], lead []int, dst *Result[T]) (*attn.Output[T], error) {
	if dst == nil {
		return attn.NewOutput(p), nil
	}
	outShape := append(slices.Clone(lead), p.N, p.E)
	lseShape := append(slices.Clone(lead), p.N)
	if err := dst.Out.check("out"); err != nil {
		return nil, inputError{err}
	}
	if !slices.Equal(dst.Out.Shape, outShape) {
		return nil, invalid("out has shape %v but the output has shape %v", dst.Out.Shape, outShape)
	}
	if err := dst.LSE.check("lse"); err != nil {
		return nil, inputError{err}
	}
	if !slices.Equal(dst.LSE.Shape, lseShape) {
		return nil, invalid("lse has shape %v but the log-sum-exps have shape %v", dst.LSE.Shape, lseShape)
	}
	clear(dst.Out.Data)
	clear(dst.LSE.Data)
	return &attn.Output[T]{O: dst.Out.Data, LSE: dst.LSE.Data}, nil
}
