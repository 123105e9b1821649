package poly

import (
	"math"
	"testing"
)

// TestCalibration checks that every measured unit time is positive and
// finite and that the model built on them grows with the work: more keys,
// a higher degree, rows computed directly, sampled rows.
func TestCalibration(t *testing.T) {
	rt := measuredRates()
	for name, v := range map[string]float64{
		"key": rt.keyBase + rt.keyPerValue, "query": rt.queryBase + rt.queryPerValue,
		"pair": rt.pair, "ball": rt.ball, "check": rt.checkKey, "check plain": rt.checkPlainKey, "setup": rt.setup,
	} {
		if !(v > 0) || math.IsInf(v, 0) {
			t.Errorf("unit time %s = %g, want positive and finite", name, v)
		}
	}
	p := uniformProblem(1<<12, 8)
	plan := func(degree int) []*headPlan {
		hp := &headPlan{keys: p.M, degree: make([]int, p.N)}
		for i := range hp.degree {
			hp.degree[i] = degree
		}
		return []*headPlan{hp}
	}
	base := predictSeconds(p, plan(2), 2, -1, rt)
	if higher := predictSeconds(p, plan(4), 2, -1, rt); !(higher > base) {
		t.Errorf("degree 4 predicted %g s, degree 2 %g s", higher, base)
	}
	if checked := predictSeconds(p, plan(2), 2, 0, rt); !(checked > base) {
		t.Errorf("with the sampled check %g s, without %g s", checked, base)
	}
	direct := plan(2)
	direct[0].degree[0] = exactRow
	if d := predictSeconds(p, direct, 2, -1, rt); !(d > base) {
		t.Errorf("a row computed directly: %g s, none: %g s", d, base)
	}
	one := predictSeconds(p, plan(2), 1, -1, rt)
	if !(one > base) {
		t.Errorf("one worker %g s, two %g s", one, base)
	}
	p4 := uniformProblem(1<<14, 8)
	hp := &headPlan{keys: p4.M, degree: make([]int, p4.N)}
	if bigger := predictSeconds(p4, []*headPlan{hp}, 2, -1, rt); !(bigger > predictSeconds(p, []*headPlan{{keys: p.M, degree: make([]int, p.N)}}, 2, -1, rt)) {
		t.Errorf("4x the rows and keys not predicted slower")
	}
}
