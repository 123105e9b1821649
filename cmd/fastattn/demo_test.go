package main

import (
	"testing"

	"github.com/fastattn/fastattn"
)

// TestDemoExactOnFirstRows: above demoExactRows query rows, the demo times
// exact attention on the first demoExactRows and scales the time; other
// methods, and causal exact attention, run on every row.
func TestDemoExactOnFirstRows(t *testing.T) {
	w := workload{heads: 1, n: 2 * demoExactRows, m: 256, d: 4, e: 4, seed: 1}
	rep, errMax, factor, err := demoRun(w.tensors32, fastattn.Options{Method: "exact"})
	if err != nil {
		t.Fatal(err)
	}
	if factor != 2 || rep.N != demoExactRows || errMax > rep.ErrorBound {
		t.Errorf("exact: factor %g, %d rows, error %g against bound %g; want 2, %d rows, within the bound", factor, rep.N, errMax, rep.ErrorBound, demoExactRows)
	}
	rep, _, factor, err = demoRun(w.tensors32, fastattn.Options{Method: "exact", Causal: true})
	if err != nil {
		t.Fatal(err)
	}
	if factor != 1 || rep.N != w.n {
		t.Errorf("causal exact: factor %g, %d rows; want every row", factor, rep.N)
	}
}
