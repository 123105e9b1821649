package fastattn

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// An explicitly requested method that the planners predict slower than
// exact attention still runs, and its report says so; exact and auto get
// no such note.
func TestExplicitMethodPredictedSlower(t *testing.T) {
	// d = 4 with logits of order 1: every key is in every row's window, so
	// the treecode is predicted (and is) slower than exact attention.
	const n, d = 2048, 4
	r := rand.New(rand.NewPCG(1, 2))
	gen := func(rows, cols int) Tensor[float32] {
		x := make([]float32, rows*cols)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		return Tensor[float32]{Data: x, Shape: []int{rows, cols}}
	}
	q, k, v := gen(n, d), gen(n, d), gen(n, d)
	ctx := context.Background()
	res, err := Attend(ctx, q, k, v, Options{Method: "anytemp", Scale: 1})
	if err != nil {
		t.Fatal(err)
	}
	rep := res.Report
	if !rep.PredictedSlowerThanExact || !strings.Contains(rep.Note, "predicted slower than exact") {
		t.Errorf("anytemp at d = 4, logits of order 1: PredictedSlowerThanExact = %v, note %q; want set", rep.PredictedSlowerThanExact, rep.Note)
	}
	if rep.Method != "anytemp" {
		t.Errorf("method %q ran, want anytemp", rep.Method)
	}
	for _, m := range []string{"exact", Auto, ""} {
		res, err := Attend(ctx, q, k, v, Options{Method: m, Scale: 1})
		if err != nil {
			t.Fatal(err)
		}
		if res.Report.PredictedSlowerThanExact || res.Report.Note != "" {
			t.Errorf("method %q: got note %q, want none", m, res.Report.Note)
		}
	}
}

// The root package's sentinel errors match what the methods wrap.
func TestErrUnsupportedFromRoot(t *testing.T) {
	q := Tensor[float32]{Data: make([]float32, 64*4), Shape: []int{64, 4}}
	r := rand.New(rand.NewPCG(3, 4))
	for i := range q.Data {
		q.Data[i] = float32(r.NormFloat64())
	}
	// No method certifies eps = 1e-9 for a float32 output.
	for _, m := range []string{"poly", "anytemp"} {
		_, err := Attend(context.Background(), q, q, q, Options{Method: m, Eps: 1e-9})
		if !errors.Is(err, ErrUnsupported) {
			t.Errorf("%s at eps = 1e-9 in float32: got %v, want an error matching ErrUnsupported", m, err)
		}
	}
}

func TestReportVersionAndKernels(t *testing.T) {
	x := Tensor[float64]{Data: []float64{1, 2, 3, 4}, Shape: []int{2, 2}}
	res, err := Attend(context.Background(), x, x, x, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Report.Version == "" || res.Report.Kernels == "" {
		t.Errorf("report version %q, kernels %q; want both set", res.Report.Version, res.Report.Kernels)
	}
}

// Approximate methods report their self-check in typed fields.
func TestReportObservedError(t *testing.T) {
	const n, d = 256, 4
	r := rand.New(rand.NewPCG(5, 6))
	x := make([]float64, n*d)
	for i := range x {
		x[i] = 2*r.Float64() - 1
	}
	q := Tensor[float64]{Data: x, Shape: []int{n, d}}
	for _, m := range []string{"poly", "anytemp"} {
		res, err := Attend(context.Background(), q, q, q, Options{Method: m, Scale: PaperScale(d), Eps: 1e-3})
		if err != nil {
			t.Fatal(err)
		}
		rep := res.Report
		if rep.SampledRows < 1 || !(rep.ObservedError <= rep.ErrorBound) {
			t.Errorf("%s: sampled rows %d, observed error %g, bound %g; want rows sampled and the error within the bound", m, rep.SampledRows, rep.ObservedError, rep.ErrorBound)
		}
	}
	res, err := Attend(context.Background(), q, q, q, Options{Method: "exact"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Report.SampledRows != 0 || res.Report.ObservedError != 0 {
		t.Errorf("exact: sampled rows %d, observed error %g; want none", res.Report.SampledRows, res.Report.ObservedError)
	}
}

// Merge adds the parts' exact flop counts and sampled rows and keeps the
// largest observed error.
func TestMergeReportCounts(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	gen := func(rows int) Tensor[float64] {
		x := make([]float64, rows*4)
		for i := range x {
			x[i] = 2*r.Float64() - 1
		}
		return Tensor[float64]{Data: x, Shape: []int{rows, 4}}
	}
	q := gen(64)
	k1, v1, k2, v2 := gen(100), gen(100), gen(50), gen(50)
	a, err := Attend(context.Background(), q, k1, v1, Options{Method: "poly", Eps: 1e-3})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Attend(context.Background(), q, k2, v2, Options{Method: "exact"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Merge(a, b)
	if err != nil {
		t.Fatal(err)
	}
	rep := m.Report
	if rep.ExactFlops != a.Report.ExactFlops+b.Report.ExactFlops || rep.ExactFlops != 2*64*150*8 {
		t.Errorf("merged exact flops %g, want %g", rep.ExactFlops, float64(2*64*150*8))
	}
	if rep.SampledRows != a.Report.SampledRows || rep.ObservedError != a.Report.ObservedError || rep.Note != "" {
		t.Errorf("merged report %+v", rep)
	}
}
