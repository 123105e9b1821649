package poly

import (
	"context"
	"testing"

	"github.com/fastattn/fastattn/attn"
)

// BenchmarkCausal times causal poly attention on the bounded workload.
func BenchmarkCausal(b *testing.B) {
	p := uniformProblem(1<<16, 8)
	p.Causal = true
	out := attn.NewOutput(p)
	for b.Loop() {
		if _, err := (Method{}).Forward32(context.Background(), p, out); err != nil {
			b.Fatal(err)
		}
	}
}
