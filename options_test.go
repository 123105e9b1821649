package fastattn

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/reference"
	"github.com/fastattn/fastattn/poly"
)

// TestOptionsValidation checks the errors of the real-model options.
func TestOptionsValidation(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 9))
	q := randTensor[float32](r, 2, 4, 5, 8)
	k := randTensor[float32](r, 2, 2, 7, 8)
	v := randTensor[float32](r, 2, 2, 7, 3)
	ctx := context.Background()
	bm, err := BoolMask(make([]bool, 4*5*7), 4, 5, 7)
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]struct {
		q, k, v Tensor[float32]
		opts    Options
		want    string
	}{
		"heads do not divide": {q, randTensor[float32](r, 2, 3, 7, 8), randTensor[float32](r, 2, 3, 7, 3), Options{}, "does not divide"},
		"batch differs":       {q, randTensor[float32](r, 1, 2, 7, 8), randTensor[float32](r, 1, 2, 7, 3), Options{}, "batch"},
		"K and V differ":      {q, k, randTensor[float32](r, 2, 1, 7, 3), Options{}, "K and V"},
		"sinks length":        {q, k, v, Options{Sinks: []float64{0, 0}}, "2 sinks for 4 query heads"},
		"sink NaN":            {q, k, v, Options{Sinks: []float64{0, 0, math.NaN(), 0}}, "sink 2"},
		"window":              {q, k, v, Options{Window: &Window{Left: -3, Right: 0}}, "window"},
		"mask shape":          {q, k, v, Options{Mask: mustBool(t, 3, 5, 7)}, "does not broadcast"},
		"mask keys":           {q, k, v, Options{Mask: mustBool(t, 5, 6)}, "does not broadcast"},
		"key lengths":         {q, k, v, Options{KeyLengths: []int{1, 2, 3}}, "key lengths"},
		"workers":             {q, k, v, Options{Workers: -1}, "workers"},
		"alignment":           {q, k, v, Options{CausalAlign: 7}, "alignment"},
	}
	for name, c := range bad {
		_, err := Attend(ctx, c.q, c.k, c.v, c.opts)
		if !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want ErrInvalidInput mentioning %q", name, err, c.want)
		}
	}
	if _, err := BoolMask(make([]bool, 5), 2, 3); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("BoolMask with the wrong size: %v", err)
	}
	if _, err := AdditiveMask([]float32{0, float32(math.Inf(1))}, 2); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("AdditiveMask with +Inf: %v", err)
	}
	// A mask that broadcasts: (heads, n, m) against (batch, heads, n, m).
	if _, _, err := problem(q, k, v, Options{Mask: bm}); err != nil {
		t.Errorf("mask (4, 5, 7): %v", err)
	}
}

func mustBool(t *testing.T, shape ...int) *Mask {
	n := 1
	for _, s := range shape {
		n *= s
	}
	m, err := BoolMask(make([]bool, n), shape...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMaskBroadcast checks the strides a mask shape resolves to.
func TestMaskBroadcast(t *testing.T) {
	target := [4]int{2, 3, 5, 7}
	for _, c := range []struct {
		shape []int
		want  [4]int // batch, head, row, col strides
	}{
		{[]int{2, 3, 5, 7}, [4]int{105, 35, 7, 1}},
		{[]int{5, 7}, [4]int{0, 0, 7, 1}},
		{[]int{7}, [4]int{0, 0, 0, 1}},
		{[]int{2, 1, 1, 7}, [4]int{7, 0, 0, 1}},
		{[]int{3, 5, 1}, [4]int{0, 5, 1, 0}},
		{[]int{1, 1, 1, 1, 7}[1:], [4]int{0, 0, 0, 1}},
	} {
		m := mustBool(t, c.shape...)
		am, err := m.broadcast(target)
		if err != nil {
			t.Fatalf("%v: %v", c.shape, err)
		}
		if got := [4]int{am.BatchStride, am.HeadStride, am.RowStride, am.ColStride}; got != c.want {
			t.Errorf("mask %v: strides %v, want %v", c.shape, got, c.want)
		}
	}
}

// TestUnsupportedOptionNamed checks that a method without a feature
// declines it by name, and that auto then falls back to exact.
func TestUnsupportedOptionNamed(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 9))
	q := randTensor[float64](r, 2, 6, 4)
	k := randTensor[float64](r, 2, 6, 4)
	v := randTensor[float64](r, 2, 6, 4)
	_, err := Attend(context.Background(), q, k, v, Options{Method: "poly", Mask: mustBool(t, 6, 6)})
	if !errors.Is(err, attn.ErrUnsupported) || !strings.Contains(err.Error(), "Mask") {
		t.Errorf("poly with a mask: %v, want ErrUnsupported naming Mask", err)
	}
}

// TestAttendOptionsMatchReference runs the real-model options end to end
// through Attend (GQA from 4-D shapes, both alignments, windows, a
// broadcast mask, sinks, per-batch key lengths) against the float64
// reference on a problem built by hand.
func TestAttendOptionsMatchReference(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 9))
	const b, hq, hkv, n, m, d, e = 2, 4, 2, 6, 9, 8, 5
	q := randTensor[float32](r, b, hq, n, d)
	k := randTensor[float32](r, b, hkv, m, d)
	v := randTensor[float32](r, b, hkv, m, e)
	maskData := make([]bool, n*m)
	for i := range maskData {
		maskData[i] = r.IntN(4) != 0
	}
	mask, err := BoolMask(maskData, 1, n, m)
	if err != nil {
		t.Fatal(err)
	}
	for name, opts := range map[string]Options{
		"gqa":               {},
		"gqa-causal-top":    {Causal: true, CausalAlign: TopLeft},
		"gqa-causal-window": {Causal: true, Window: &Window{Left: 2, Right: -1}, KeyLengths: []int{9, 4}},
		"mask-sinks":        {Mask: mask, Sinks: []float64{0, 1, -1, math.Inf(-1)}},
		"auto-mask":         {Mask: mask, Method: Auto},
	} {
		res, err := Attend(context.Background(), q, k, v, opts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if res.Report.Method != "exact" || res.Report.KVHeads != b*hkv {
			t.Errorf("%s: report %+v", name, res.Report.CallReport)
		}
		p := &attn.Problem[float32]{Heads: b * hq, KVHeads: b * hkv, N: n, M: m, D: d, E: e,
			Q: q.Data, K: k.Data, V: v.Data, Scale: 1 / math.Sqrt(d),
			Causal: opts.Causal, CausalAlign: opts.CausalAlign, Window: opts.Window, Sinks: opts.Sinks}
		if opts.KeyLengths != nil {
			for x := range b * hq {
				p.KeyLens = append(p.KeyLens, opts.KeyLengths[x/hq])
			}
		}
		if opts.Mask != nil {
			p.Mask = &attn.Mask{Bool: maskData, RowStride: m, ColStride: 1}
		}
		want, wantLSE := reference.Attention(p)
		if d := maxAbsDiff(res.Out.Data, want); d > 1e-5 {
			t.Errorf("%s: output differs from the reference by %g", name, d)
		}
		for i, l := range res.LSE.Data {
			if math.Abs(l-wantLSE[i]) > 1e-5 && !(math.IsInf(l, -1) && math.IsInf(wantLSE[i], -1)) {
				t.Fatalf("%s: LSE %d = %g, reference %g", name, i, l, wantLSE[i])
			}
		}
	}
}

// TestMergeSinksOnce splits the keys of a GQA problem with sinks in two:
// the sinks go with one part, and the merge equals the whole call.
func TestMergeSinksOnce(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 9))
	const hq, hkv, n, m, split, d = 4, 2, 3, 20, 7, 8
	q := randTensor[float64](r, hq, n, d)
	k := randTensor[float64](r, hkv, m, d)
	v := randTensor[float64](r, hkv, m, d)
	part := func(t Tensor[float64], a, b int) Tensor[float64] {
		var x []float64
		for h := range hkv {
			x = append(x, t.Data[(h*m+a)*d:(h*m+b)*d]...)
		}
		return Tensor[float64]{Data: x, Shape: []int{hkv, b - a, d}}
	}
	sinks := []float64{0, 2, -1, 30}
	ctx := context.Background()
	whole, err := Attend(ctx, q, k, v, Options{Sinks: sinks})
	if err != nil {
		t.Fatal(err)
	}
	a, err := Attend(ctx, q, part(k, 0, split), part(v, 0, split), Options{Sinks: sinks})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Attend(ctx, q, part(k, split, m), part(v, split, m), Options{})
	if err != nil {
		t.Fatal(err)
	}
	merged, err := Merge(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := maxAbsDiff(merged.Out.Data, whole.Out.Data); diff > 1e-13 {
		t.Errorf("merged output differs by %g", diff)
	}
	if diff := maxAbsDiff(merged.LSE.Data, whole.LSE.Data); diff > 1e-12 {
		t.Errorf("merged LSE differs by %g", diff)
	}
	if _, err := Merge(a, a); !errors.Is(err, ErrInvalidInput) || !strings.Contains(err.Error(), "sinks") {
		t.Errorf("merging two parts with sinks: %v, want an error about sinks", err)
	}
}

// TestGradientSinksGQA checks the root Gradient's dK, dV (summed over a
// group) and dSinks against the reference.
func TestGradientSinksGQA(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 9))
	const b, hq, hkv, n, m, d = 2, 4, 2, 5, 7, 4
	q := randTensor[float64](r, b, hq, n, d)
	k := randTensor[float64](r, b, hkv, m, d)
	v := randTensor[float64](r, b, hkv, m, d)
	dO := randTensor[float64](r, b, hq, n, d)
	opts := Options{Sinks: []float64{0, 1, -2, 0.5}, Causal: true, CausalAlign: TopLeft, Window: &Window{Left: 3, Right: 0}}
	_, g, err := ForwardBackward(context.Background(), q, k, v, dO, opts)
	if err != nil {
		t.Fatal(err)
	}
	p := &attn.Problem[float64]{Heads: b * hq, KVHeads: b * hkv, N: n, M: m, D: d, E: d,
		Q: q.Data, K: k.Data, V: v.Data, Scale: 0.5, Causal: true, CausalAlign: TopLeft, Window: opts.Window, Sinks: opts.Sinks}
	ref := reference.Gradient(p, dO.Data)
	for name, c := range map[string][2][]float64{"dQ": {g.DQ.Data, ref.DQ}, "dK": {g.DK.Data, ref.DK}, "dV": {g.DV.Data, ref.DV}, "dSinks": {g.DSinks, ref.DSinks}} {
		if len(c[0]) != len(c[1]) {
			t.Fatalf("%s has %d entries, want %d", name, len(c[0]), len(c[1]))
		}
		if diff := maxAbsDiff(c[0], c[1]); diff > 1e-12 {
			t.Errorf("%s differs from the reference by %g", name, diff)
		}
	}
}

// A declined option's error names the method once ("fastattn: poly does
// not support ...", not "fastattn: poly: poly does not support ...").
func TestUnsupportedOptionNamesMethodOnce(t *testing.T) {
	x := make([]float64, 4*2)
	q, _ := NewTensor(x, 4, 2)
	mask, _ := BoolMask(make([]bool, 4), 4)
	_, err := Attend(context.Background(), q, q, q, Options{Method: "poly", Mask: mask})
	if err == nil || !errors.Is(err, ErrUnsupported) {
		t.Fatalf("err = %v, want ErrUnsupported", err)
	}
	if got := strings.Count(err.Error(), "poly"); got != 1 {
		t.Errorf("error %q names poly %d times, want once", err, got)
	}
}

// polyNoSinkGradients is poly with a backward pass that declines sinks,
// which its forward pass supports.
type polyNoSinkGradients struct{ poly.Method }

func (polyNoSinkGradients) Name() string { return "poly-no-sink-gradients-test" }

func (polyNoSinkGradients) BackwardSupports() attn.Feature {
	return poly.Method{}.BackwardSupports() &^ attn.AttentionSinks
}

// ForwardBackward refuses an option the method's backward pass declines
// before running the forward pass (no result comes back).
func TestForwardBackwardRefusesFirst(t *testing.T) {
	withMethod(t, polyNoSinkGradients{poly.Method{}})
	r := rand.New(rand.NewPCG(3, 4))
	q := randTensor[float64](r, 1, 2, 6, 3)
	v := randTensor[float64](r, 1, 2, 6, 3)
	res, _, err := ForwardBackward(context.Background(), q, q, v, v, Options{Method: "poly-no-sink-gradients-test", Sinks: []float64{0.5, 1}})
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("err = %v, want ErrUnsupported", err)
	}
	if res != nil {
		t.Error("the forward pass ran before the backward's refusal")
	}
}
