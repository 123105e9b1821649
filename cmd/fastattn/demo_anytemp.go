package main

import "github.com/fastattn/fastattn"

// Demo rows for any-temperature attention: small head dimension with large
// entries (softmax scale 1, Q and K entries N(0, 10^2): logits in the
// hundreds, nearly one-hot rows), where the polynomial method cannot go
// and exact attention is quadratic; exact on the same input for the ratio,
// and auto.
func init() {
	extraDemoCases = append(extraDemoCases, func(quick bool) []demoCase {
		n := 1 << 16
		if quick {
			n = 1 << 12
		}
		d2 := workload{heads: 1, n: n, m: n, d: 2, e: 2, qkScale: 10, seed: 21}
		d3 := workload{heads: 1, n: n, m: n, d: 3, e: 3, qkScale: 10, seed: 22}
		hot := fastattn.Options{Method: "anytemp", Scale: 1, Eps: 1e-3}
		causal := hot
		causal.Causal = true
		return []demoCase{
			{"d=2, N(0,10^2), scale 1", d2, "float32", fastattn.Options{Method: "exact", Scale: 1}, ""},
			{"d=2, N(0,10^2), scale 1", d2, "float32", hot, ""},
			{"d=2, N(0,10^2), scale 1", d2, "float32", causal, ""},
			{"d=2, N(0,10^2), scale 1", d2, "float32", fastattn.Options{Method: fastattn.Auto, Scale: 1, Eps: 1e-3}, ""},
			{"d=3, N(0,10^2), scale 1", d3, "float32", fastattn.Options{Method: "exact", Scale: 1}, ""},
			{"d=3, N(0,10^2), scale 1", d3, "float32", hot, ""},
		}
	})
}
