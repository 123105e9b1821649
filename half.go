package fastattn

import (
	"context"
	"slices"

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

// halfProblem builds the problem of queries q (float32), or q16 when its
// Shape is not nil (16-bit, in K's and V's format), against 16-bit keys
// and values into p.
func halfProblem(p *attn.Problem[float32], scratch *problemScratch, q Tensor[float32], q16 HalfTensor, k, v HalfTensor, opts Options) ([]int, error) {
	if k.Format != v.Format || k.Format == attn.NoHalf {
		return nil, invalid("K is %v and V is %v; give both in one 16-bit format (Float16 or BFloat16)", k.Format, v.Format)
	}
	qs := shapeOf(q)
	if q16.Shape != nil {
		if q16.Format != k.Format {
			return nil, invalid("Q is %v but K and V are %v; give all three in one 16-bit format", q16.Format, k.Format)
		}
		qs = q16.shaped()
	}
	lead, err := fillProblem(p, scratch, qs, k.shaped(), v.shaped(), opts)
	if err != nil {
		return nil, err
	}
	p.KVFormat, p.K16, p.V16 = k.Format, k.Data, v.Data
	if q16.Shape != nil {
		p.Q16 = q16.Data
	} else {
		p.Q = q.Data
	}
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
// for float32 inputs) it widens K and V to float32 once (a decoding
// step, a tile at a time as it computes); AttendHalfKVInto,
// the serving path, never copies them whole: a decoding step's products
// read them in place, widening in registers, and larger calls widen them a
// tile at a time.
func AttendHalfKV(ctx context.Context, q Tensor[float32], k, v HalfTensor, opts Options) (*Result[float32], error) {
	p := new(attn.Problem[float32])
	lead, err := halfProblem(p, nil, q, HalfTensor{}, k, v, opts)
	if err != nil {
		return nil, err
	}
	return attend(ctx, p, lead, opts)
}

// AttendHalfKVInto is AttendInto with 16-bit keys and values: the serving
// hot path for a float16 or bfloat16 key/value cache.
func AttendHalfKVInto(ctx context.Context, ws *Workspace, out Tensor[float32], lse []float64, q Tensor[float32], k, v HalfTensor, opts Options) error {
	if ws == nil {
		return invalid("AttendHalfKVInto needs a Workspace (NewWorkspace)")
	}
	return attendInto(ctx, ws, shapeOf(out), lse, opts, func(p *attn.Problem[float32]) ([]int, error) {
		return halfProblem(p, &ws.scratch, q, HalfTensor{}, k, v, opts)
	}, func(o *attn.Output[float32]) { o.O = out.Data })
}

// HalfResult is the result of AttendHalf: the output in the queries'
// 16-bit format, the log-sum-exps in float64, and the report.
type HalfResult struct {
	// Out has Q's leading shape and V's last dimension, in Q's format.
	Out HalfTensor
	// LSE is as Result.LSE.
	LSE    Tensor[float64]
	Report Report
}

// AttendHalf is AttendHalfKV with the queries and the output stored in 16
// bits too, all in one format (as a float16 or bfloat16 model holds them):
// computed in float32 as AttendHalfKV, each output entry then rounded to
// nearest (a further error of at most 2^-11 |out| for float16, 2^-8 |out|
// for bfloat16, included in Report.ErrorBound; opts.Eps applies before
// it). Like AttendHalfKV it widens Q, K and V once to certify its bound
// (a decoding step widens its few queries, and its keys and values a tile
// at a time); AttendHalfInto never copies them whole. Exact attention
// only; GradientHalf gives its gradients in float32.
//
// bfloat16 inputs on a CPU with AMX (Intel's tile units, where Linux grants
// them), or else with AVX512_BF16's VDPBF16PS where that beats widening,
// with more than 128 query rows per key/value head (query heads per
// key/value head times the sequence length) are multiplied as given
// instead, with float32 sums and P stored in bfloat16 (split in
// two, or rounded once when opts.Eps allows that bound);
// Report.Details["arithmetic"] says so and Report.ErrorBound covers it.
// Inputs it cannot certify there, and fewer rows, which do not repay
// packing every key and value for the tiles, run as above.
func AttendHalf(ctx context.Context, q, k, v HalfTensor, opts Options) (*HalfResult, error) {
	p := new(attn.Problem[float32])
	lead, err := halfProblem(p, nil, Tensor[float32]{}, q, k, v, opts)
	if err != nil {
		return nil, err
	}
	out := &attn.Output[float32]{O16: make([]uint16, p.Heads*p.N*p.E), LSE: make([]float64, p.Heads*p.N)}
	rep, err := run(ctx, p, opts, out)
	if err != nil {
		return nil, err
	}
	return &HalfResult{
		Out:    HalfTensor{Data: out.O16, Shape: append(slices.Clone(lead), p.N, p.E), Format: q.Format},
		LSE:    Tensor[float64]{Data: out.LSE, Shape: append(slices.Clone(lead), p.N)},
		Report: rep,
	}, nil
}

// AttendHalfInto is AttendInto with the queries, keys, values and output
// stored in 16 bits, all in one format: the serving hot path of a float16
// or bfloat16 model. The kernels widen a tile of queries, keys and values
// at a time to float32 and round each output row to 16 bits as its tile
// finishes; no tensor is copied whole and, with a reused Workspace, calls
// of one shape allocate nothing. out must be in Q's format.
func AttendHalfInto(ctx context.Context, ws *Workspace, out HalfTensor, lse []float64, q, k, v HalfTensor, opts Options) error {
	if ws == nil {
		return invalid("AttendHalfInto needs a Workspace (NewWorkspace)")
	}
	if out.Format != q.Format {
		return invalid("out is %v but Q is %v; the output is stored in the queries' format", out.Format, q.Format)
	}
	return attendInto(ctx, ws, out.shaped(), lse, opts, func(p *attn.Problem[float32]) ([]int, error) {
		return halfProblem(p, &ws.scratch, Tensor[float32]{}, q, k, v, opts)
	}, func(o *attn.Output[float32]) { o.O16 = out.Data })
}

// GradientHalfKV is Gradient for a result of AttendHalfKV: the gradients
// with respect to Q, K and V (float32, K's and V's shapes) and the sinks,
// computed by exact attention's backward pass on the keys and values
// widened to float32.
func GradientHalfKV(ctx context.Context, q Tensor[float32], k, v HalfTensor, res *Result[float32], dOut Tensor[float32], opts Options) (*Grads[float32], error) {
	p := new(attn.Problem[float32])
	lead, err := halfProblem(p, nil, q, HalfTensor{}, k, v, opts)
	if err != nil {
		return nil, err
	}
	return gradient(ctx, p, lead, k.Shape, v.Shape, res, dOut, opts)
}
