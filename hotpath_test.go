package fastattn

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/reference"
)

// decodeInputs is one GQA decoding step: 8 query heads, 2 key/value heads,
// one query against m keys, d = 128.
func decodeInputs(r *rand.Rand, m int) (q, k, v Tensor[float32]) {
	return randTensor[float32](r, 1, 8, 1, 128), randTensor[float32](r, 1, 2, m, 128), randTensor[float32](r, 1, 2, m, 128)
}

// TestAttendIntoMatchesAttend checks the hot path against Attend.
func TestAttendIntoMatchesAttend(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 10))
	q, k, v := decodeInputs(r, 3000)
	ws := NewWorkspace()
	for _, opts := range []Options{
		{},
		{Causal: true, Sinks: []float64{0, 1, 2, 3, 4, 5, 6, 7}},
		{Window: &Window{Left: 1000, Right: 0}, AssumeFinite: true, Workers: 1},
		{Mask: mustBool(t, 3000), KeyLengths: []int{2500}},
	} {
		res, err := Attend(context.Background(), q, k, v, opts)
		if err != nil {
			t.Fatal(err)
		}
		out := Tensor[float32]{Data: make([]float32, 8*128), Shape: []int{1, 8, 1, 128}}
		lse := make([]float64, 8)
		if err := AttendInto(context.Background(), ws, out, lse, q, k, v, opts); err != nil {
			t.Fatal(err)
		}
		for i := range out.Data {
			if out.Data[i] != res.Out.Data[i] && !(math.IsNaN(float64(out.Data[i])) && math.IsNaN(float64(res.Out.Data[i]))) {
				t.Fatalf("%+v: out[%d] = %g, Attend gives %g", opts, i, out.Data[i], res.Out.Data[i])
			}
		}
		for i := range lse {
			if lse[i] != res.LSE.Data[i] && !(math.IsInf(lse[i], -1) && math.IsInf(res.LSE.Data[i], -1)) {
				t.Fatalf("%+v: lse[%d] = %g, Attend gives %g", opts, i, lse[i], res.LSE.Data[i])
			}
		}
	}
	out := Tensor[float32]{Data: make([]float32, 8*128), Shape: []int{8, 1, 128}}
	if err := AttendInto(context.Background(), ws, out, nil, q, k, v, Options{}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("wrong output shape: %v", err)
	}
	out.Shape = []int{1, 8, 1, 128}
	if err := AttendInto(context.Background(), ws, out, nil, q, k, v, Options{Method: "poly"}); !errors.Is(err, ErrNotExact) {
		t.Errorf("method poly: %v", err)
	}
	k.Data[5] = float32(math.NaN())
	if err := AttendInto(context.Background(), ws, out, nil, q, k, v, Options{}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("NaN key: %v", err)
	}
}

// TestAttendIntoAllocatesNothing is the serving hot path's promise: after
// a warm-up call, a GQA decoding step allocates nothing, with and without
// the NaN checks, with sinks and a window.
func TestAttendIntoAllocatesNothing(t *testing.T) {
	if cacheRaceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	r := rand.New(rand.NewPCG(2, 10))
	q, k, v := decodeInputs(r, 4096)
	ws := NewWorkspace()
	out := Tensor[float32]{Data: make([]float32, 8*128), Shape: []int{1, 8, 1, 128}}
	lse := make([]float64, 8)
	for _, opts := range []Options{
		{},
		{AssumeFinite: true},
		{Causal: true, Sinks: []float64{0, 1, 2, 3, 4, 5, 6, 7}, Window: &Window{Left: 1024, Right: 0}},
		{KeyLengths: []int{4000}, Workers: 1},
	} {
		call := func() {
			if err := AttendInto(context.Background(), ws, out, lse, q, k, v, opts); err != nil {
				t.Fatal(err)
			}
		}
		call()
		if a := testing.AllocsPerRun(20, call); a != 0 {
			t.Errorf("%+v: %v allocations per call, want 0", opts, a)
		}
	}
}

// TestHalfKV runs float16 and bfloat16 keys and values through Attend
// (auto picks exact), AttendHalfKVInto (no allocations after warm-up) and
// compares with the reference on the rounded values.
func TestHalfKV(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 10))
	q, k, v := decodeInputs(r, 2000)
	for _, f := range []HalfFormat{Float16, BFloat16} {
		k16, v16 := toHalf(k, f), toHalf(v, f)
		opts := Options{Method: Auto, Causal: true, Sinks: []float64{0, 1, 2, 3, 4, 5, 6, 7}}
		res, err := AttendHalfKV(context.Background(), q, k16, v16, opts)
		if err != nil {
			t.Fatal(err)
		}
		if res.Report.Method != "exact" || res.Report.KVFormat != f.String() {
			t.Errorf("%v: report method %s, kv_format %q", f, res.Report.Method, res.Report.KVFormat)
		}
		p := &attn.Problem[float32]{Heads: 8, KVHeads: 2, N: 1, M: 2000, D: 128, E: 128, Q: q.Data,
			KVFormat: f, K16: k16.Data, V16: v16.Data, Scale: 1 / math.Sqrt(128), Causal: true, Sinks: opts.Sinks}
		want, _ := reference.Attention(p)
		if d := maxAbsDiff(res.Out.Data, want); d > 1e-5 {
			t.Errorf("%v: differs from the reference on the rounded values by %g", f, d)
		}
		ws := NewWorkspace()
		out := Tensor[float32]{Data: make([]float32, 8*128), Shape: []int{1, 8, 1, 128}}
		opts.Method = ""
		call := func() {
			if err := AttendHalfKVInto(context.Background(), ws, out, nil, q, k16, v16, opts); err != nil {
				t.Fatal(err)
			}
		}
		call()
		if d := maxAbsDiff(out.Data, want); d > 1e-5 {
			t.Errorf("%v: AttendHalfKVInto differs from the reference by %g", f, d)
		}
		if a := testing.AllocsPerRun(10, call); a != 0 && !cacheRaceEnabled {
			t.Errorf("%v: %v allocations per call", f, a)
		}
	}
	k16 := HalfTensor{Data: make([]uint16, len(k.Data)), Shape: k.Shape, Format: Float16}
	v16 := HalfTensor{Data: make([]uint16, len(v.Data)), Shape: v.Shape, Format: BFloat16}
	if _, err := AttendHalfKV(context.Background(), q, k16, v16, Options{}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("mixed formats: %v", err)
	}
	v16.Format = Float16
	if _, err := AttendHalfKV(context.Background(), q, k16, v16, Options{Method: "poly"}); !errors.Is(err, attn.ErrUnsupported) {
		t.Errorf("poly with 16-bit keys: %v, want ErrUnsupported", err)
	}
}

// TestGradientHalfKV checks float32 gradients of 16-bit keys and values
// against the reference on the rounded values.
func TestGradientHalfKV(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 10))
	q := randTensor[float32](r, 4, 6, 8)
	k := randTensor[float32](r, 2, 9, 8)
	v := randTensor[float32](r, 2, 9, 8)
	dO := randTensor[float32](r, 4, 6, 8)
	for _, f := range []HalfFormat{Float16, BFloat16} {
		k16, v16 := toHalf(k, f), toHalf(v, f)
		opts := Options{Causal: true, Sinks: []float64{0, 1, -1, 2}}
		res, err := AttendHalfKV(context.Background(), q, k16, v16, opts)
		if err != nil {
			t.Fatal(err)
		}
		g, err := GradientHalfKV(context.Background(), q, k16, v16, res, dO, opts)
		if err != nil {
			t.Fatal(err)
		}
		p := &attn.Problem[float32]{Heads: 4, KVHeads: 2, N: 6, M: 9, D: 8, E: 8, Q: q.Data,
			KVFormat: f, K16: k16.Data, V16: v16.Data, Scale: 1 / math.Sqrt(8), Causal: true, Sinks: opts.Sinks}
		ref := reference.Gradient(p, dO.Data)
		checkHalfGrad(t, f, g, ref)
	}
}

// toHalf rounds x to format f.
func toHalf(x Tensor[float32], f HalfFormat) HalfTensor {
	h := HalfTensor{Data: make([]uint16, len(x.Data)), Shape: x.Shape, Format: f}
	for i, v := range x.Data {
		h.Data[i] = attn.Float32ToHalf(f, v)
	}
	return h
}

// AttendIntoBound and AttendIntoBounds refuse other methods and
// non-finite inputs, and give finite bounds on ordinary inputs.
func TestAttendIntoBoundErrors(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 9))
	q := randTensor[float64](r, 2, 5, 4)
	k := randTensor[float64](r, 2, 7, 4)
	v := randTensor[float64](r, 2, 7, 3)
	ctx := context.Background()
	if _, err := AttendIntoBound(ctx, q, k, v, Options{Method: "poly"}); !errors.Is(err, ErrNotExact) {
		t.Errorf("method poly: err = %v, want ErrNotExact", err)
	}
	b64, err := AttendIntoBound(ctx, q, k, v, Options{})
	if err != nil || !(b64 > 0 && b64 < 1e-13) {
		t.Errorf("float64 bound %g, err %v; want in (0, 1e-13)", b64, err)
	}
	// AttendIntoBounds: the same output bound, and one for the
	// log-sum-exps at least the share of the rows' sums, log(1 + b/2).
	bs, err := AttendIntoBounds(ctx, q, k, v, Options{})
	if err != nil || bs.Output != b64 || !(bs.LSE >= math.Log1p(b64/2) && bs.LSE < 1e-13) {
		t.Errorf("AttendIntoBounds %+v, err %v; want Output %g and LSE in [log1p(Output/2), 1e-13)", bs, err, b64)
	}
	if _, err := AttendIntoBounds(ctx, q, k, v, Options{Method: "anytemp"}); !errors.Is(err, ErrNotExact) {
		t.Errorf("AttendIntoBounds, method anytemp: err = %v, want ErrNotExact", err)
	}
	k.Data[3] = math.NaN()
	if _, err := AttendIntoBound(ctx, q, k, v, Options{}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("NaN key: err = %v, want ErrInvalidInput", err)
	}
	if _, err := AttendIntoBounds(ctx, q, k, v, Options{}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("AttendIntoBounds, NaN key: err = %v, want ErrInvalidInput", err)
	}
}
