package main

import "github.com/fastattn/fastattn"

// Demo rows for the polynomial method: bounded entries (where it pays, and
// auto picks it) and large entries (where auto falls back to exact).
func init() {
	extraDemoCases = append(extraDemoCases, func(quick bool) []demoCase {
		n := 1 << 16
		if quick {
			n = 1 << 12
		}
		bounded := workload{heads: 1, n: n, m: n, d: 8, e: 8, qkScale: 1, uniform: true, seed: 4}
		large := workload{heads: 1, n: n / 16, m: n / 16, d: 8, e: 8, qkScale: 10, seed: 5}
		paper := fastattn.PaperScale(8)
		return []demoCase{
			{"bounded, [-1,1]", bounded, "float32", fastattn.Options{Method: "exact", Scale: paper}, ""},
			{"bounded, [-1,1]", bounded, "float32", fastattn.Options{Method: "poly", Scale: paper, Eps: 1e-3}, ""},
			{"bounded, [-1,1]", bounded, "float32", fastattn.Options{Method: fastattn.Auto, Scale: paper, Eps: 1e-3}, ""},
			{"large, N(0,10^2)", large, "float32", fastattn.Options{Method: fastattn.Auto, Scale: paper, Eps: 1e-3}, ""},
		}
	})
}
