package anytemp

import (
	"testing"

	"github.com/fastattn/fastattn/attn/attntest"
)

func TestPlannerContract(t *testing.T) {
	attntest.RunPlanner(t, Method{}, attntest.Config{Eps: 1e-3})
}

// TestCalibratedRates checks the rates measured at first use: each within
// fallbackSpread of the project machine's fitted value (sane replaces the
// others, so this fails only if sane does not), the calibration's own
// loops repeated giving rates of the same order, and the estimate growing
// with the number of rows.
func TestCalibratedRates(t *testing.T) {
	rt := measuredRates()
	fb := fallbackRates
	for _, x := range []struct {
		name     string
		got, ref float64
	}{{"row", rt.row, fb.row}, {"visit", rt.visit, fb.visit}, {"brute", rt.brute, fb.brute},
		{"term", rt.term, fb.term}, {"cell", rt.cell, fb.cell}, {"momentFlop", rt.momentFlop, fb.momentFlop},
		{"build", rt.build, fb.build}, {"reduce", rt.reduce, fb.reduce}} {
		t.Logf("%-10s %.3g ns (fitted on the project machine: %.3g ns)", x.name, x.got*1e9, x.ref*1e9)
		if !(x.got >= x.ref/fallbackSpread && x.got <= x.ref*fallbackSpread) {
			t.Errorf("%s: %g s outside [%g, %g]", x.name, x.got, x.ref/fallbackSpread, x.ref*fallbackSpread)
		}
	}
	again := calibrate()
	for _, pair := range [][2]float64{{rt.brute, again.brute}, {rt.term, again.term}, {rt.visit, again.visit}} {
		if q := pair[0] / pair[1]; q > 20 || q < 1.0/20 {
			t.Errorf("two calibrations differ %.3gx", q)
		}
	}
	small := shapeProblem(1<<12, 2, 8, 1, 1)
	large := shapeProblem(1<<14, 2, 8, 1, 1)
	es, err1 := Method{}.Estimate32(small)
	el, err2 := Method{}.Estimate32(large)
	if err1 != nil || err2 != nil || !(el.Seconds > es.Seconds) {
		t.Errorf("n = 2^14 predicted %g s, not more than n = 2^12's %g s (%v, %v)", el.Seconds, es.Seconds, err1, err2)
	}
}
