package fastattn

import (
	"context"

	"github.com/fastattn/fastattn/attn"
)

// HalfFormat is a 16-bit floating-point storage format: Float16 (IEEE
// binary16, NumPy's float16) or BFloat16 (the upper half of a float32, as
// PyTorch's bfloat16 and ml_dtypes hold it).
type HalfFormat = attn.HalfFormat

// The 16-bit formats.
const (
	Float16  = attn.Float16
	BFloat16 = attn.BFloat16
)

// HalfTensor is a dense row-major array of 16-bit floats, held as their
// bits: Data holds prod(Shape) elements in Format.
type HalfTensor struct {
	Data   []uint16
	Shape  []int
	Format HalfFormat
}

func (t HalfTensor) shaped() shaped { return shaped{t.Shape, len(t.Data)} }

// halfProblem builds the problem of float32 queries against 16-bit keys
// and values into p.
func halfProblem(p *attn.Problem[float32], scratch *problemScratch, q Tensor[float32], k, v HalfTensor, opts Options) ([]int, error) {
	if k.Format != v.Format || k.Format == attn.NoHalf {
		return nil, invalid("K is %v and V is %v; give both in one 16-bit format (Float16 or BFloat16)", k.Format, v.Format)
	}
	lead, err := fillProblem(p, scratch, q, k.shaped(), v.shaped(), opts)
	if err != nil {
		return nil, err
	}
	p.KVFormat, p.K16, p.V16 = k.Format, k.Data, v.Data
	if err := p.ValidateShapes(); err != nil {
		return nil, inputError{err}
	}
	return lead, nil
}

// AttendHalfKV is Attend with the keys and values stored in 16 bits (a
// float16 or bfloat16 key/value cache) and float32 queries and output,
// computed in float32 with float32-or-better sums on the 16-bit values as
// given. Only exact attention supports it ("auto" picks exact);
// GradientHalfKV gives its gradients. To state its error bound (keys centred, bound certified as
// for float32 inputs) it widens K and V to float32 once; AttendHalfKVInto,
// the serving path, widens them a tile at a time inside the kernels and
// never copies them whole.
func AttendHalfKV(ctx context.Context, q Tensor[float32], k, v HalfTensor, opts Options) (*Result[float32], error) {
	p := new(attn.Problem[float32])
	lead, err := halfProblem(p, nil, q, k, v, opts)
	if err != nil {
		return nil, err
	}
	return attend(ctx, p, lead, opts)
}

// AttendHalfKVInto is AttendInto with 16-bit keys and values: the serving
// hot path for a float16 or bfloat16 key/value cache.
func AttendHalfKVInto(ctx context.Context, ws *Workspace, out Tensor[float32], lse []float64, q Tensor[float32], k, v HalfTensor, opts Options) error {
	return attendInto(ctx, ws, out, lse, opts, func(p *attn.Problem[float32]) ([]int, error) {
		return halfProblem(p, &ws.scratch, q, k, v, opts)
	})
}

// GradientHalfKV is Gradient for a result of AttendHalfKV: the gradients
// with respect to Q, K and V (float32, K's and V's shapes) and the sinks,
// computed by exact attention's backward pass on the keys and values
// widened to float32.
func GradientHalfKV(ctx context.Context, q Tensor[float32], k, v HalfTensor, res *Result[float32], dOut Tensor[float32], opts Options) (*Grads[float32], error) {
	p := new(attn.Problem[float32])
	lead, err := halfProblem(p, nil, q, k, v, opts)
	if err != nil {
		return nil, err
	}
	return gradient(ctx, p, lead, k.Shape, v.Shape, res, dOut, opts)
}
