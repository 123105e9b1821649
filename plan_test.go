package fastattn

import (
	"context"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

func uniformTensor(r *rand.Rand, scale float64, shape ...int) Tensor[float32] {
	n := 1
	for _, s := range shape {
		n *= s
	}
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(scale * (2*r.Float64() - 1))
	}
	return Tensor[float32]{Data: x, Shape: shape}
}

// TestAutoPicksPolyForBoundedEntries checks the planner's two regimes: small
// entries (the polynomial method pays) and large ones (it cannot), and that
// the chosen method's guarantee holds. d = 8 at n = 8192 puts poly about
// 3x ahead of exact by either's measured rates and keeps anytemp, which
// at d = 4 predicts within 15% of poly, out of the race (at d = 8 it sums
// every key directly).
func TestAutoPicksPolyForBoundedEntries(t *testing.T) {
	r := rand.New(rand.NewPCG(8, 8))
	n, d := 8192, 8
	q := uniformTensor(r, 1, n, d)
	k := uniformTensor(r, 1, n, d)
	v := uniformTensor(r, 1, n, d)
	res, err := Attend(context.Background(), q, k, v, Options{Method: Auto, Scale: PaperScale(d), Eps: 1e-3})
	if err != nil {
		t.Fatal(err)
	}
	if res.Report.Method != "poly" || !strings.Contains(res.Report.Reason, "auto chose poly") {
		t.Fatalf("auto chose %s: %s", res.Report.Method, res.Report.Reason)
	}
	if res.Report.ErrorBound <= 0 || res.Report.ErrorBound > 1e-3 {
		t.Fatalf("error bound %g", res.Report.ErrorBound)
	}
	exact, err := Attend(context.Background(), q, k, v, Options{Method: "exact", Scale: PaperScale(d)})
	if err != nil {
		t.Fatal(err)
	}
	var vmax float64
	for _, x := range v.Data {
		vmax = max(vmax, math.Abs(float64(x)))
	}
	for i, x := range res.Out.Data {
		if math.Abs(float64(x-exact.Out.Data[i])) > 1e-3*vmax {
			t.Fatalf("entry %d: poly %g, exact %g", i, x, exact.Out.Data[i])
		}
	}

	big := uniformTensor(r, 40, n/8, d)
	res, err = Attend(context.Background(), big, big, v.sliceRows(n/8), Options{Method: Auto, Eps: 1e-3})
	if err != nil {
		t.Fatal(err)
	}
	if res.Report.Method == "poly" || !strings.Contains(res.Report.Reason, "poly does not apply") {
		t.Fatalf("large entries: auto chose %s: %s", res.Report.Method, res.Report.Reason)
	}
}

// sliceRows keeps the first rows of a 2-D tensor.
func (t Tensor[T]) sliceRows(rows int) Tensor[T] {
	cols := t.Shape[len(t.Shape)-1]
	return Tensor[T]{Data: t.Data[:rows*cols], Shape: []int{rows, cols}}
}

func TestExplicitPolyRefusesWhereItDoesNotPay(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	q := uniformTensor(r, 20, 256, 16)
	_, err := Attend(context.Background(), q, q, q, Options{Method: "poly"})
	if err == nil || !strings.Contains(err.Error(), "exact") || !strings.Contains(err.Error(), "beta") {
		t.Fatalf("got %v, want a refusal naming beta and suggesting exact", err)
	}
}
