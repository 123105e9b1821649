package fastattn

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/reference"
)

func randTensor[T Float](r *rand.Rand, shape ...int) Tensor[T] {
	n := 1
	for _, s := range shape {
		n *= s
	}
	x := make([]T, n)
	for i := range x {
		x[i] = T(r.NormFloat64())
	}
	return Tensor[T]{Data: x, Shape: shape}
}

// refFor runs the float64 reference on the same tensors.
func refFor[T Float](q, k, v Tensor[T], scale float64, causal bool, keyLens []int) (o, lse []float64) {
	r := len(q.Shape)
	heads := len(q.Data) / (q.Shape[r-2] * q.Shape[r-1])
	p := &attn.Problem[T]{Heads: heads, N: q.Shape[r-2], M: k.Shape[r-2], D: q.Shape[r-1], E: v.Shape[r-1],
		Q: q.Data, K: k.Data, V: v.Data, Scale: scale, Causal: causal, KeyLens: keyLens}
	return reference.Attention(p)
}

func maxAbsDiff[T Float](got []T, want []float64) float64 {
	var d float64
	for i := range got {
		d = max(d, math.Abs(float64(got[i])-want[i]))
	}
	return d
}

func TestAttendLayouts(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, lead := range [][]int{{}, {3}, {2, 3}} {
		q := randTensor[float64](r, append(slices.Clone(lead), 9, 4)...)
		k := randTensor[float64](r, append(slices.Clone(lead), 11, 4)...)
		v := randTensor[float64](r, append(slices.Clone(lead), 11, 5)...)
		res, err := Attend(context.Background(), q, k, v, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if want := append(slices.Clone(lead), 9, 5); !slices.Equal(res.Out.Shape, want) {
			t.Fatalf("output shape %v, want %v", res.Out.Shape, want)
		}
		if want := append(slices.Clone(lead), 9); !slices.Equal(res.LSE.Shape, want) {
			t.Fatalf("LSE shape %v, want %v", res.LSE.Shape, want)
		}
		want, _ := refFor(q, k, v, 0.5, false, nil) // default scale 1/sqrt(4)
		if d := maxAbsDiff(res.Out.Data, want); d > 1e-12 {
			t.Fatalf("lead %v: max error %g", lead, d)
		}
		if res.Report.Method != "exact" || res.Report.Scale != 0.5 || !(res.Report.ErrorBound > 0 && res.Report.ErrorBound < 1e-12) || res.Report.DType != "float64" {
			t.Fatalf("unexpected report %+v", res.Report)
		}
	}
}

func TestAttendFloat32AndOptions(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 1))
	q := randTensor[float32](r, 2, 3, 17, 8)
	k := randTensor[float32](r, 2, 3, 30, 8)
	v := randTensor[float32](r, 2, 3, 30, 6)
	opts := Options{Scale: PaperScale(8), Causal: true, KeyLengths: []int{25, 30}}
	res, err := Attend(context.Background(), q, k, v, opts)
	if err != nil {
		t.Fatal(err)
	}
	perHead := []int{25, 25, 25, 30, 30, 30} // per-batch lengths shared by heads
	want, wantLSE := refFor(q, k, v, 1.0/8, true, perHead)
	if d := maxAbsDiff(res.Out.Data, want); d > 3e-6 {
		t.Fatalf("max error %g", d)
	}
	if d := maxAbsDiff(res.LSE.Data, wantLSE); d > 1e-5 {
		t.Fatalf("LSE error %g", d)
	}
	if res.Report.DType != "float32" {
		t.Fatalf("dtype %s", res.Report.DType)
	}
}

func TestAttendRejectsBadInput(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 1))
	q := randTensor[float64](r, 4, 3)
	k := randTensor[float64](r, 5, 3)
	v := randTensor[float64](r, 5, 2)
	nan := randTensor[float64](r, 5, 3)
	nan.Data[7] = math.NaN()
	cases := map[string]struct {
		q, k, v Tensor[float64]
		opts    Options
	}{
		"rank 1":            {Tensor[float64]{Data: q.Data, Shape: []int{12}}, k, v, Options{}},
		"rank 5":            {Tensor[float64]{Data: q.Data, Shape: []int{1, 1, 1, 4, 3}}, k, v, Options{}},
		"data/shape":        {Tensor[float64]{Data: q.Data[:5], Shape: []int{4, 3}}, k, v, Options{}},
		"head dim":          {q, randTensor[float64](r, 5, 4), v, Options{}},
		"value rows":        {q, k, randTensor[float64](r, 6, 2), Options{}},
		"rank mismatch":     {q, randTensor[float64](r, 1, 5, 3), v, Options{}},
		"lead mismatch":     {randTensor[float64](r, 2, 4, 3), randTensor[float64](r, 3, 5, 3), randTensor[float64](r, 3, 5, 2), Options{}},
		"NaN":               {q, nan, v, Options{}},
		"negative scale":    {q, k, v, Options{Scale: -1}},
		"unknown method":    {q, k, v, Options{Method: "magic"}},
		"key lengths count": {q, k, v, Options{KeyLengths: []int{1, 2}}},
		"key length range":  {q, k, v, Options{KeyLengths: []int{6}}},
		"negative eps":      {q, k, v, Options{Eps: -0.1}},
		"empty":             {Tensor[float64]{Shape: []int{0, 3}}, k, v, Options{}},
		"shape overflow":    {Tensor[float64]{Shape: []int{1 << 62, 4}}, k, v, Options{}},
		"eps 1":             {q, k, v, Options{Eps: 1}},
		"huge output":       {randTensor[float64](r, 1<<20, 1), randTensor[float64](r, 1, 1), Tensor[float64]{Data: make([]float64, 1<<15), Shape: []int{1, 1 << 15}}, Options{}},
	}
	for name, c := range cases {
		if _, err := Attend(context.Background(), c.q, c.k, c.v, c.opts); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%s: got %v, want ErrInvalidInput", name, err)
		}
	}
}

func TestAttendCancelled(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 1))
	q := randTensor[float32](r, 4, 300, 8)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Attend(ctx, q, q, q, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestMergeEqualsWhole(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 1))
	q := randTensor[float64](r, 2, 7, 4)
	k := randTensor[float64](r, 2, 20, 4)
	v := randTensor[float64](r, 2, 20, 3)
	whole, err := Attend(context.Background(), q, k, v, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Split the keys of every head into [0,6), [6,6) (empty via padding) and [6,20).
	part := func(lo, hi int) *Result[float64] {
		sub := func(t Tensor[float64], w int) Tensor[float64] {
			var data []float64
			for h := range 2 {
				data = append(data, t.Data[(h*20+lo)*w:(h*20+hi)*w]...)
			}
			return Tensor[float64]{Data: data, Shape: []int{2, hi - lo, w}}
		}
		res, err := Attend(context.Background(), q, sub(k, 4), sub(v, 3), Options{Scale: 0.5})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	a, b := part(0, 6), part(6, 20)
	// A part where every key is padding contributes nothing.
	empty, err := Attend(context.Background(), q, k, v, Options{KeyLengths: []int{0, 0}})
	if err != nil {
		t.Fatal(err)
	}
	merged, err := Merge(a, empty, b)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(merged.Out.Data, whole.Out.Data); d > 1e-14 {
		t.Fatalf("merged output differs by %g", d)
	}
	if d := maxAbsDiff(merged.LSE.Data, whole.LSE.Data); d > 1e-13 {
		t.Fatalf("merged LSE differs by %g", d)
	}
	if _, err := Merge[float64](); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("empty merge: %v", err)
	}
	if _, err := Merge(a, part(0, 6)); err != nil {
		t.Fatalf("merge of same-shape parts failed: %v", err)
	}
	other, _ := Attend(context.Background(), randTensor[float64](r, 2, 5, 4), k, v, Options{})
	if _, err := Merge(a, other); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("shape mismatch: %v", err)
	}
}

func TestFullyMaskedRows(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 1))
	q := randTensor[float32](r, 5, 3)
	k := randTensor[float32](r, 2, 3)
	v := randTensor[float32](r, 2, 2)
	res, err := Attend(context.Background(), q, k, v, Options{Causal: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 { // 5 queries, 2 keys, bottom-right: rows 0..2 see nothing
		if !math.IsInf(res.LSE.Data[i], -1) || res.Out.Data[2*i] != 0 || res.Out.Data[2*i+1] != 0 {
			t.Fatalf("row %d: LSE %g out %v, want -Inf and zeros", i, res.LSE.Data[i], res.Out.Data[2*i:2*i+2])
		}
	}
	if math.IsInf(res.LSE.Data[3], 0) {
		t.Fatal("row 3 sees key 0 and must have a finite LSE")
	}
}

// TestMergeRejectsInconsistentParts: parts computed with another scale, or
// with a NaN or +Inf log-sum-exp, would merge into garbage (found by review).
func TestMergeRejectsInconsistentParts(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 1))
	q := randTensor[float64](r, 3, 2)
	k := randTensor[float64](r, 4, 2)
	v := randTensor[float64](r, 4, 2)
	a, _ := Attend(context.Background(), q, k, v, Options{})
	b, _ := Attend(context.Background(), q, k, v, Options{Scale: 2})
	if _, err := Merge(a, b); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("different scales merged: %v", err)
	}
	c, _ := Attend(context.Background(), q, k, v, Options{})
	c.LSE.Data[1] = math.NaN()
	if _, err := Merge(a, c); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("NaN log-sum-exp merged: %v", err)
	}
}

// TestGradientChecksKeyLengths: a gradient with other key lengths than the
// forward's would use mismatched log-sum-exps (found by review).
func TestGradientChecksKeyLengths(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 1))
	q := randTensor[float64](r, 2, 3, 2)
	k := randTensor[float64](r, 2, 5, 2)
	v := randTensor[float64](r, 2, 5, 2)
	res, err := Attend(context.Background(), q, k, v, Options{KeyLengths: []int{5, 3}})
	if err != nil {
		t.Fatal(err)
	}
	dOut := randTensor[float64](r, 2, 3, 2)
	if _, err := Gradient(context.Background(), q, k, v, res, dOut, Options{KeyLengths: []int{5, 4}}); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("mismatched key lengths: %v", err)
	}
	if _, err := Gradient(context.Background(), q, k, v, res, dOut, Options{KeyLengths: []int{5, 3}}); err != nil {
		t.Fatalf("matching key lengths: %v", err)
	}
}
