package fastattn

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
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
