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

// TestShorterHeadTinyValues: two query heads on one key/value head, the
// second seeing only the first 10 keys, whose values are tiny (float32
// subnormals, float64 values far below the group's): its rows' errors are
// measured in its own unit, in which rounding an output to a subnormal,
// and in float64 the products of weights and values, cost far more than
// in the group's. Every method must then state a bound that holds, or
// refuse (ErrUnsupported). poly's bound once left the shorter head's unit
// out: 1.2e-7 stated where its own sampled check then measured 3.1e-6
// (values 1e-40) and 4e-4 (1e-43), so the call failed.
func TestShorterHeadTinyValues(t *testing.T) {
	shorterTiny[float32](t, []float64{1e-40, 1e-43})
	shorterTiny[float64](t, []float64{1e-290, 1e-300, 1e-315})
}

func shorterTiny[T Float](t *testing.T, tinies []float64) {
	for _, tiny := range tinies {
		for _, eps := range []float64{1e-3, 1e-5} {
			r := rand.New(rand.NewPCG(1, 2))
			const n, m, d, e = 8, 40, 2, 2
			q := randTensor[T](r, 1, 2, n, d)
			k := randTensor[T](r, 1, 1, m, d)
			v := randTensor[T](r, 1, 1, m, e)
			for x := range 10 * e {
				v.Data[x] = T(float64(v.Data[x]) * tiny)
			}
			for _, method := range append(Methods(), Auto) {
				opts := Options{Method: method, Eps: eps, KeyLengths: []int{m, 10}}
				where := fmt.Sprintf("%s %s values %g eps %g", method, attn.DTypeName[T](), tiny, eps)
				res, err := Attend(context.Background(), q, k, v, opts)
				if errors.Is(err, attn.ErrUnsupported) {
					continue
				}
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				p, _, err := problem(q, k, v, opts)
				if err != nil {
					t.Fatal(err)
				}
				errs := attntest.AccurateErrors(p, res.Out.Data, res.LSE.Data)
				if !(errs.Out <= res.Report.ErrorBound*(1+1e-9)+errs.OutRef) {
					t.Errorf("%s (ran %s): observed error %.3g above the reported bound %.3g", where, res.Report.Method, errs.Out, res.Report.ErrorBound)
				}
				if !(errs.LSE <= res.Report.LSEBound*(1+1e-9)+errs.LSERef) {
					t.Errorf("%s (ran %s): log-sum-exps off by %.3g, above the reported bound %.3g", where, res.Report.Method, errs.LSE, res.Report.LSEBound)
				}
			}
		}
	}
}
