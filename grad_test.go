package fastattn

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/exact"
	"github.com/fastattn/fastattn/internal/reference"
)

// refGrad runs the float64 reference gradient on the same tensors.
func refGrad[T Float](q, k, v, dO Tensor[T], scale float64, causal bool, keyLens []int) *reference.Grad {
	r := len(q.Shape)
	heads := len(q.Data) / (q.Shape[r-2] * q.Shape[r-1])
	p := &attn.Problem[T]{Heads: heads, N: q.Shape[r-2], M: k.Shape[r-2], D: q.Shape[r-1], E: v.Shape[r-1],
		Q: q.Data, K: k.Data, V: v.Data, Scale: scale, Causal: causal, KeyLens: keyLens}
	return reference.Gradient(p, dO.Data)
}

// relErr is max |got - want| / max |want|.
func relErr[T Float](got []T, want []float64) float64 {
	var e, w float64
	for i := range got {
		e = max(e, math.Abs(float64(got[i])-want[i]))
		w = max(w, math.Abs(want[i]))
	}
	return e / w
}

func TestGradientLayouts(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 1))
	for _, lead := range [][]int{{}, {3}, {2, 3}} {
		shape := func(rows, cols int) []int { return append(slices.Clone(lead), rows, cols) }
		q := randTensor[float64](r, shape(9, 4)...)
		k := randTensor[float64](r, shape(11, 4)...)
		v := randTensor[float64](r, shape(11, 5)...)
		dO := randTensor[float64](r, shape(9, 5)...)
		res, err := Attend(context.Background(), q, k, v, Options{})
		if err != nil {
			t.Fatal(err)
		}
		g, err := Gradient(context.Background(), q, k, v, res, dO, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(g.DQ.Shape, q.Shape) || !slices.Equal(g.DK.Shape, k.Shape) || !slices.Equal(g.DV.Shape, v.Shape) {
			t.Fatalf("lead %v: gradient shapes %v %v %v", lead, g.DQ.Shape, g.DK.Shape, g.DV.Shape)
		}
		want := refGrad(q, k, v, dO, 0.5, false, nil)
		for _, c := range []struct {
			name string
			got  []float64
			want []float64
		}{{"dQ", g.DQ.Data, want.DQ}, {"dK", g.DK.Data, want.DK}, {"dV", g.DV.Data, want.DV}} {
			if e := relErr(c.got, c.want); e > 1e-12 {
				t.Errorf("lead %v: %s relative error %g", lead, c.name, e)
			}
		}
		rep := g.Report
		if rep.Method != "exact" || rep.Observed != nil || rep.DType != "float64" || rep.Flops <= 0 || rep.Batch != len(q.Data)/36 {
			t.Fatalf("unexpected report %+v", rep)
		}
	}
}

func TestGradientFloat32AndOptions(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 1))
	q := randTensor[float32](r, 2, 3, 17, 8)
	k := randTensor[float32](r, 2, 3, 30, 8)
	v := randTensor[float32](r, 2, 3, 30, 6)
	dO := randTensor[float32](r, 2, 3, 17, 6)
	opts := Options{Scale: PaperScale(8), Causal: true, KeyLengths: []int{25, 30}}
	res, g, err := ForwardBackward(context.Background(), q, k, v, dO, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Report.Method != "exact" || g.Report.ForwardSeconds <= 0 {
		t.Fatalf("reports %+v %+v", res.Report, g.Report)
	}
	want := refGrad(q, k, v, dO, 1.0/8, true, []int{25, 25, 25, 30, 30, 30})
	for _, c := range []struct {
		name string
		got  []float32
		want []float64
	}{{"dQ", g.DQ.Data, want.DQ}, {"dK", g.DK.Data, want.DK}, {"dV", g.DV.Data, want.DV}} {
		if e := relErr(c.got, c.want); e > 1e-5 {
			t.Errorf("%s relative error %g", c.name, e)
		}
	}
	// Padding keys of the first batch element get zero gradients.
	for h := range 3 {
		for j := 25; j < 30; j++ {
			for _, x := range g.DK.Data[(h*30+j)*8 : (h*30+j+1)*8] {
				if x != 0 {
					t.Fatalf("padding key %d of head %d has dK %g", j, h, x)
				}
			}
		}
	}
}

// approxExact is exact attention under another name, with a backward pass
// whose dV is off by a factor (1 + dvErr): the report must see it.
type approxExact struct {
	exact.Method
	name  string
	dvErr float64
}

func (a approxExact) Name() string { return a.name }

func (a approxExact) Forward64(ctx context.Context, p *attn.Problem[float64], out *attn.Output[float64]) (attn.Stats, error) {
	st, err := a.Method.Forward64(ctx, p, out)
	st.ErrorBound = p.Eps
	return st, err
}

func (a approxExact) Backward64(ctx context.Context, p *attn.Problem[float64], out *attn.Output[float64], dO []float64, g *attn.Gradients[float64]) (attn.Stats, error) {
	st, err := a.Method.Backward64(ctx, p, out, dO, g)
	for i := range g.DV {
		g.DV[i] *= 1 + a.dvErr
	}
	return st, err
}

// forwardOnly is a method without a backward pass.
type forwardOnly struct{ m exact.Method }

func (forwardOnly) Name() string { return "forward-only-test" }

func (f forwardOnly) Forward32(ctx context.Context, p *attn.Problem[float32], out *attn.Output[float32]) (attn.Stats, error) {
	return f.m.Forward32(ctx, p, out)
}

func (f forwardOnly) Forward64(ctx context.Context, p *attn.Problem[float64], out *attn.Output[float64]) (attn.Stats, error) {
	return f.m.Forward64(ctx, p, out)
}

// cheapForwardOnly is a method without a backward pass that the planner
// always predicts fastest.
type cheapForwardOnly struct{ forwardOnly }

func (cheapForwardOnly) Name() string { return "cheap-forward-only-test" }

func (cheapForwardOnly) Estimate32(*attn.Problem[float32]) (attn.Estimate, error) {
	return attn.Estimate{Reason: "test"}, nil
}

func (cheapForwardOnly) Estimate64(*attn.Problem[float64]) (attn.Estimate, error) {
	return attn.Estimate{Reason: "test"}, nil
}

// withMethod registers m for the duration of the test.
func withMethod(t *testing.T, m attn.Method) {
	methods[m.Name()] = m
	t.Cleanup(func() { delete(methods, m.Name()) })
}

func TestGradientReportsObservedError(t *testing.T) {
	withMethod(t, approxExact{name: "approx-test", dvErr: 0.01})
	r := rand.New(rand.NewPCG(13, 1))
	q := randTensor[float64](r, 4, 40, 4)
	k := randTensor[float64](r, 4, 50, 4)
	v := randTensor[float64](r, 4, 50, 3)
	dO := randTensor[float64](r, 4, 40, 3)
	_, g, err := ForwardBackward(context.Background(), q, k, v, dO, Options{Method: "approx-test", Causal: true})
	if err != nil {
		t.Fatal(err)
	}
	obs := g.Report.Observed
	if obs == nil {
		t.Fatal("no observed error for an approximate method")
	}
	if obs.DQ > 1e-12 || obs.DK > 1e-12 || math.Abs(obs.DV-0.01/1.01) > 1e-9 {
		t.Fatalf("observed errors %+v, want dQ = dK = 0 and dV = 0.01/1.01", obs)
	}
	if !slices.Equal(obs.Heads, []int{0, 3}) || obs.QueryRows != GradCheckRows || obs.KeyRows != GradCheckRows {
		t.Fatalf("sample %+v", obs)
	}
	if _, err := json.Marshal(g.Report); err != nil {
		t.Fatal(err)
	}
}

func TestGradientRejectsBadInput(t *testing.T) {
	withMethod(t, forwardOnly{})
	ctx := context.Background()
	r := rand.New(rand.NewPCG(14, 1))
	q := randTensor[float64](r, 2, 4, 3)
	k := randTensor[float64](r, 2, 5, 3)
	v := randTensor[float64](r, 2, 5, 2)
	dO := randTensor[float64](r, 2, 4, 2)
	res, err := Attend(ctx, q, k, v, Options{})
	if err != nil {
		t.Fatal(err)
	}
	fwdOnly, err := Attend(ctx, q, k, v, Options{Method: "forward-only-test"})
	if err != nil {
		t.Fatal(err)
	}
	nanDO := randTensor[float64](r, 2, 4, 2)
	nanDO.Data[3] = math.NaN()
	infDO := randTensor[float64](r, 2, 4, 2)
	infDO.Data[5] = math.Inf(-1)
	badLSE := *res
	badLSE.LSE.Data = slices.Clone(res.LSE.Data)
	badLSE.LSE.Data[2] = math.Inf(-1)
	nanOut := *res
	nanOut.Out.Data = slices.Clone(res.Out.Data)
	nanOut.Out.Data[0] = math.NaN()
	cases := map[string]struct {
		q    Tensor[float64]
		res  *Result[float64]
		dO   Tensor[float64]
		opts Options
	}{
		"nil result":        {q, nil, dO, Options{}},
		"dO shape":          {q, res, randTensor[float64](r, 2, 4, 3), Options{}},
		"dO data/shape":     {q, res, Tensor[float64]{Data: dO.Data[:7], Shape: dO.Shape}, Options{}},
		"NaN in dO":         {q, res, nanDO, Options{}},
		"Inf in dO":         {q, res, infDO, Options{}},
		"NaN in output":     {q, &nanOut, dO, Options{}},
		"-Inf LSE":          {q, &badLSE, dO, Options{}},
		"other method":      {q, res, dO, Options{Method: "forward-only-test"}},
		"other scale":       {q, res, dO, Options{Scale: 0.1}},
		"other causal":      {q, res, dO, Options{Causal: true}},
		"other queries":     {randTensor[float64](r, 2, 3, 3), res, randTensor[float64](r, 2, 3, 2), Options{}},
		"unknown method":    {q, &Result[float64]{Out: res.Out, LSE: res.LSE}, dO, Options{Method: "magic"}},
		"auto, no report":   {q, &Result[float64]{Out: res.Out, LSE: res.LSE}, dO, Options{Method: Auto}},
		"no backward":       {q, fwdOnly, dO, Options{}},
		"NaN in Q (shared)": {Tensor[float64]{Data: append([]float64{math.NaN()}, q.Data[1:]...), Shape: q.Shape}, res, dO, Options{}},
	}
	for name, c := range cases {
		if _, err := Gradient(ctx, c.q, k, v, c.res, c.dO, c.opts); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%s: got %v, want ErrInvalidInput", name, err)
		}
	}
	if _, err := Gradient(ctx, q, k, v, fwdOnly, dO, Options{}); !errors.Is(err, attn.ErrUnsupported) {
		t.Errorf("no backward: got %v, want attn.ErrUnsupported too", err)
	}
	if _, _, err := ForwardBackward(ctx, q, k, v, dO, Options{Method: "forward-only-test"}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("ForwardBackward without a backward pass: got %v", err)
	}
	// A result built by hand, with the method in the options, is accepted.
	if _, err := Gradient(ctx, q, k, v, &Result[float64]{Out: res.Out, LSE: res.LSE}, dO, Options{Method: "exact"}); err != nil {
		t.Errorf("hand-made result: %v", err)
	}
}

func TestForwardBackwardAuto(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 1))
	q := randTensor[float64](r, 2, 64, 4)
	k := randTensor[float64](r, 2, 64, 4)
	v := randTensor[float64](r, 2, 64, 4)
	dO := randTensor[float64](r, 2, 64, 4)
	res, g, err := ForwardBackward(context.Background(), q, k, v, dO, Options{Method: Auto})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := methods[g.Report.Method].(attn.Differentiable); !ok || res.Report.Method != g.Report.Method || res.Report.Reason == "" {
		t.Fatalf("auto ran %q (reason %q) and differentiated %q", res.Report.Method, res.Report.Reason, g.Report.Method)
	}
	// Gradient on an auto result follows the method that ran.
	if _, err := Gradient(context.Background(), q, k, v, res, dO, Options{Method: Auto}); err != nil {
		t.Fatal(err)
	}

	// When the planner's favourite has no backward pass, exact runs.
	withMethod(t, cheapForwardOnly{})
	res, g, err = ForwardBackward(context.Background(), q, k, v, dO, Options{Method: Auto})
	if err != nil {
		t.Fatal(err)
	}
	if res.Report.Method != "exact" || g.Report.Method != "exact" || !strings.Contains(res.Report.Reason, "cheap-forward-only-test has no backward pass") {
		t.Fatalf("auto ran %q (reason %q)", res.Report.Method, res.Report.Reason)
	}
}

func TestGradientCancelled(t *testing.T) {
	r := rand.New(rand.NewPCG(16, 1))
	q := randTensor[float32](r, 4, 300, 8)
	res, err := Attend(context.Background(), q, q, q, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Gradient(ctx, q, q, q, res, q, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestDifferentiableMethods(t *testing.T) {
	if !slices.Contains(DifferentiableMethods(), "exact") {
		t.Fatalf("DifferentiableMethods() = %v", DifferentiableMethods())
	}
}

// TestGradientHalf checks the float32 gradients of 16-bit queries, keys
// and values: against the float64 reference on the rounded inputs,
// corrected for the one thing GradientHalf does on purpose (Delta_i from
// the 16-bit output, as FlashAttention forms it), and bit for bit against
// GradientHalfKV on the widened queries and output.
func TestGradientHalf(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(6, 10))
	q := randTensor[float32](r, 4, 6, 8)
	k := randTensor[float32](r, 2, 9, 8)
	v := randTensor[float32](r, 2, 9, 5)
	dO := randTensor[float32](r, 4, 6, 5)
	for _, f := range []HalfFormat{Float16, BFloat16} {
		q16, k16, v16 := toHalf(q, f), toHalf(k, f), toHalf(v, f)
		opts := Options{Causal: true, Sinks: []float64{0, 1, -1, 2}, Workers: 1}
		res, err := AttendHalf(ctx, q16, k16, v16, opts)
		if err != nil {
			t.Fatal(err)
		}
		g, err := GradientHalf(ctx, q16, k16, v16, res, dO, opts)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(g.DQ.Shape, q.Shape) || !slices.Equal(g.DK.Shape, k.Shape) || !slices.Equal(g.DV.Shape, v.Shape) {
			t.Fatalf("%v: gradient shapes %v %v %v", f, g.DQ.Shape, g.DK.Shape, g.DV.Shape)
		}

		qw := widenHalf(q16)
		p := &attn.Problem[float32]{Heads: 4, KVHeads: 2, N: 6, M: 9, D: 8, E: 5, Q: qw.Data,
			KVFormat: f, K16: k16.Data, V16: v16.Data, Scale: 1 / math.Sqrt(8), Causal: true, Sinks: opts.Sinks}
		ref := reference.Gradient(p, dO.Data)
		o, _ := reference.Attention(p)
		// Delta_i moves by delta = dO_i . (Out16_i - O_i): dS_ij by
		// -P_ij delta, dsink by -P_sink delta.
		var moved float64
		key := make([]float64, p.D)
		for h := range p.Heads {
			kh := p.KVHead(h)
			for i := range p.N {
				row := h*p.N + i
				var delta float64
				for c := range p.E {
					delta += float64(dO.Data[row*p.E+c]) * (float64(attn.HalfToFloat32(f, res.Out.Data[row*p.E+c])) - o[row*p.E+c])
				}
				lo, pr, sink, _ := reference.Probabilities(p, h, i)
				for j, pj := range pr {
					p.Key(kh, lo+j, key)
					for x := range p.D {
						ref.DQ[row*p.D+x] -= p.Scale * delta * pj * key[x]
						ref.DK[(kh*p.M+lo+j)*p.D+x] -= p.Scale * delta * pj * float64(qw.Data[row*p.D+x])
					}
				}
				ref.DSinks[h] -= sink * delta
				moved = max(moved, math.Abs(delta))
			}
		}
		t.Logf("%v: Delta moved by up to %.2g by the output's rounding", f, moved)
		checkHalfGrad(t, f, g, ref)

		kv := &Result[float32]{Out: widenHalf(res.Out), LSE: res.LSE, Report: res.Report}
		want, err := GradientHalfKV(ctx, qw, k16, v16, kv, dO, opts)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(g.DQ.Data, want.DQ.Data) || !slices.Equal(g.DK.Data, want.DK.Data) || !slices.Equal(g.DV.Data, want.DV.Data) || !slices.Equal(g.DSinks, want.DSinks) {
			t.Errorf("%v: differs from GradientHalfKV on the widened queries and output", f)
		}
	}
}

// TestGradientHalfRejectsBadInput checks GradientHalf's errors.
func TestGradientHalfRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 10))
	q16 := toHalf(randTensor[float32](r, 2, 4, 3), BFloat16)
	k16 := toHalf(randTensor[float32](r, 2, 5, 3), BFloat16)
	v16 := toHalf(randTensor[float32](r, 2, 5, 2), BFloat16)
	dO := randTensor[float32](r, 2, 4, 2)
	res, err := AttendHalf(ctx, q16, k16, v16, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := GradientHalf(ctx, q16, k16, v16, res, dO, Options{}); err != nil {
		t.Fatalf("valid call: %v", err)
	}
	f16Out := *res
	f16Out.Out.Format = Float16
	nanQ := q16
	nanQ.Data = slices.Clone(q16.Data)
	nanQ.Data[1] = 0x7fc0 // bfloat16 NaN
	nanDO := randTensor[float32](r, 2, 4, 2)
	nanDO.Data[2] = float32(math.NaN())
	shortOut := *res
	shortOut.Out.Data = res.Out.Data[:5]
	other, err := AttendHalf(ctx, q16, k16, v16, Options{Causal: true})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct {
		q    HalfTensor
		res  *HalfResult
		dO   Tensor[float32]
		opts Options
	}{
		"nil result":           {q16, nil, dO, Options{}},
		"output format":        {q16, &f16Out, dO, Options{}},
		"Q format":             {toHalf(widenHalf(q16), Float16), res, dO, Options{}},
		"NaN in Q":             {nanQ, res, dO, Options{}},
		"NaN in dO":            {q16, res, nanDO, Options{}},
		"dO shape":             {q16, res, randTensor[float32](r, 2, 4, 3), Options{}},
		"output data/shape":    {q16, &shortOut, dO, Options{}},
		"other causal":         {q16, other, dO, Options{}},
		"method without half":  {q16, res, dO, Options{Method: "poly"}},
		"queries of the other": {toHalf(randTensor[float32](r, 2, 3, 3), BFloat16), res, randTensor[float32](r, 2, 3, 2), Options{}},
	}
	for name, c := range cases {
		if _, err := GradientHalf(ctx, c.q, k16, v16, c.res, c.dO, c.opts); !errors.Is(err, ErrInvalidInput) {
			t.Errorf("%s: got %v, want ErrInvalidInput", name, err)
		}
	}
}

// checkHalfGrad requires the float32 gradients g of 16-bit inputs in
// format f to be within 2e-5 of ref (unit-size inputs and few keys).
func checkHalfGrad(t *testing.T, f HalfFormat, g *Grads[float32], ref *reference.Grad) {
	t.Helper()
	for name, c := range map[string][2]any{"dQ": {g.DQ.Data, ref.DQ}, "dK": {g.DK.Data, ref.DK}, "dV": {g.DV.Data, ref.DV}} {
		got, want := c[0].([]float32), c[1].([]float64)
		if d := maxAbsDiff(got, want); d > 2e-5 || len(got) != len(want) {
			t.Errorf("%v %s: differs from the reference by %g (%d values, want %d)", f, name, d, len(got), len(want))
		}
	}
	if d := maxAbsDiff(g.DSinks, ref.DSinks); d > 2e-5 {
		t.Errorf("%v dSinks: differs by %g", f, d)
	}
}
