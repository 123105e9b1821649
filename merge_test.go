package fastattn

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
)

// TestMergeBoundFarKeys merges parts of keys far from the origin, computed
// by every method, and checks the merged output and log-sum-exps against
// package accurate on the whole problem. Each method centres the keys and
// adds s q.c back to the log-sum-exps in float64, whose rounding shifts the
// weights Merge gives the parts: the merged bound must count the parts'
// Report.LSEBound. With the largest of the parts' output bounds alone (what
// Merge stated before), float64 exact attention's merged rows were off by
// more than that bound at both large offsets here without sinks (whose
// part's bound counts its own shift), which the test checks too.
func TestMergeBoundFarKeys(t *testing.T) {
	for _, off := range []float64{0, 1e3, 4.4e5, 1e7} {
		for _, sinks := range [][]float64{nil, {1, -2}} {
			mergeBounds[float64](t, off, sinks)
			mergeBounds[float32](t, off, sinks)
		}
	}
}

// mergeBounds checks the merge of three parts of a problem whose keys are
// offset by off, the sinks (if any) given to the last.
func mergeBounds[T Float](t *testing.T, off float64, sinks []float64) {
	const heads, n, m, d, e = 2, 24, 90, 4, 3
	r := rand.New(rand.NewPCG(uint64(off)+7, 3))
	q := randTensor[T](r, 1, heads, n, d)
	k := randTensor[T](r, 1, heads, m, d)
	v := randTensor[T](r, 1, heads, m, e)
	dir := make([]float64, d)
	for t := range dir {
		dir[t] = off * r.NormFloat64()
	}
	for j := range heads * m {
		for t := range d {
			k.Data[j*d+t] += T(dir[t])
		}
	}
	whole, _, err := problem(q, k, v, Options{Sinks: sinks})
	if err != nil {
		t.Fatal(err)
	}
	// Parts of 20, 31 and 39 keys; the sinks join the last.
	cuts := []int{0, 20, 51, m}
	for _, method := range []string{"exact", "poly", "anytemp"} {
		where := fmt.Sprintf("%s %s offset %g sinks %v", method, attn.DTypeName[T](), off, sinks)
		var parts []*Result[T]
		var partBound float64
		for x := range len(cuts) - 1 {
			lo, hi := cuts[x], cuts[x+1]
			sub := func(a Tensor[T], w int) Tensor[T] {
				var data []T
				for h := range heads {
					data = append(data, a.Data[(h*m+lo)*w:(h*m+hi)*w]...)
				}
				return Tensor[T]{Data: data, Shape: []int{1, heads, hi - lo, w}}
			}
			opts := Options{Method: method, Eps: 1e-3, Scale: whole.Scale}
			if x == len(cuts)-2 {
				opts.Sinks = sinks
			}
			res, err := Attend(context.Background(), q, sub(k, d), sub(v, e), opts)
			if errors.Is(err, attn.ErrUnsupported) {
				t.Logf("%s: part %d: %v", where, x, err)
				parts = nil
				break
			}
			if err != nil {
				t.Fatalf("%s: part %d: %v", where, x, err)
			}
			if !(res.Report.LSEBound > 0) {
				t.Errorf("%s: part %d reports no log-sum-exp bound", where, x)
			}
			parts = append(parts, res)
			partBound = max(partBound, res.Report.ErrorBound)
		}
		if parts == nil {
			continue
		}
		merged, err := Merge(parts...)
		if err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		errs := attntest.AccurateErrors(whole, merged.Out.Data, merged.LSE.Data)
		rep := merged.Report
		if !(errs.Out <= rep.ErrorBound+errs.OutRef) {
			t.Errorf("%s: merged output off by %.3g, above its bound %.3g", where, errs.Out, rep.ErrorBound)
		}
		if !(errs.LSE <= rep.LSEBound+errs.LSERef) {
			t.Errorf("%s: merged log-sum-exps off by %.3g, above their bound %.3g", where, errs.LSE, rep.LSEBound)
		}
		if _, ok := any(T(0)).(float64); ok && method == "exact" && off >= 4.4e5 && sinks == nil && errs.Out <= partBound+errs.OutRef {
			t.Errorf("%s: merged output off by %.3g, within the parts' largest bound %.3g: the test no longer shows what the log-sum-exps' errors cost", where, errs.Out, partBound)
		}
		t.Logf("%s: output %.3g (bound %.3g, parts' %.3g), LSE %.3g (bound %.3g)", where, errs.Out, rep.ErrorBound, partBound, errs.LSE, rep.LSEBound)
	}
}

// TestMergeSubnormalValues: float32 values in the subnormal range, whose
// merged outputs round by half a subnormal step, which Merge's bound counts
// through the parts' own subnormal terms (mergedBounds).
func TestMergeSubnormalValues(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	q := randTensor[float32](r, 1, 1, 16, 4)
	k := randTensor[float32](r, 1, 1, 40, 4)
	v := randTensor[float32](r, 1, 1, 40, 2)
	for i := range v.Data {
		v.Data[i] *= 1e-42
	}
	whole, _, err := problem(q, k, v, Options{})
	if err != nil {
		t.Fatal(err)
	}
	half := func(a Tensor[float32], lo, hi, w int) Tensor[float32] {
		return Tensor[float32]{Data: a.Data[lo*w : hi*w], Shape: []int{1, 1, hi - lo, w}}
	}
	var parts []*Result[float32]
	for _, c := range [][2]int{{0, 17}, {17, 40}} {
		res, err := Attend(context.Background(), q, half(k, c[0], c[1], 4), half(v, c[0], c[1], 2), Options{})
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, res)
	}
	merged, err := Merge(parts...)
	if err != nil {
		t.Fatal(err)
	}
	errs := attntest.AccurateErrors(whole, merged.Out.Data, merged.LSE.Data)
	if !(errs.Out <= merged.Report.ErrorBound+errs.OutRef) {
		t.Errorf("merged output off by %.3g, above its bound %.3g", errs.Out, merged.Report.ErrorBound)
	}
	if b := max(parts[0].Report.ErrorBound, parts[1].Report.ErrorBound); !(errs.Out > b/8) {
		t.Errorf("merged output off by %.3g against the parts' bound %.3g: the rounding in the subnormal range no longer shows", errs.Out, b)
	}
	t.Logf("output %.3g, bound %.3g", errs.Out, merged.Report.ErrorBound)
}
