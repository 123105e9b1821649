package poly

import (
	"context"
	"fmt"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/exact"
)

// BenchmarkWindow times causal sliding windows on the bounded workload of
// BenchmarkVersusExact (d = 8, eps = 1e-3, float32, n = 2^15) against full
// causal poly and exact's windowed path, in one run.
func BenchmarkWindow(b *testing.B) {
	n := 1 << 15
	p := uniformProblem(n, 8)
	p.Causal = true
	for _, left := range []int{-1, 1024, 4096} {
		q := *p
		if left >= 0 {
			q.Window = &attn.Window{Left: left, Right: 0}
		}
		for _, m := range []attn.Method{exact.Method{}, Method{}} {
			b.Run(fmt.Sprintf("%s/window=%d", m.Name(), left), func(b *testing.B) {
				out := attn.NewOutput(&q)
				for b.Loop() {
					if _, err := attn.Forward(context.Background(), m, &q, out); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
