package poly

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/exact"
)

// BenchmarkVersusExact times poly and exact on the workload: d = 8,
// entries uniform in [-1, 1], scale 1/d, eps = 1e-3, float32. The ratio of
// the two ns/op at the same n is the speed-up; `fastattn bench --methods
// poly` prints it directly, up to n = 2^20.
func BenchmarkVersusExact(b *testing.B) {
	for _, n := range []int{1 << 12, 1 << 14, 1 << 16} {
		p := uniformProblem(n, 8)
		for _, m := range []attn.Method{exact.Method{}, Method{}} {
			b.Run(fmt.Sprintf("%s/n=%d", m.Name(), n), func(b *testing.B) {
				out := attn.NewOutput(p)
				for b.Loop() {
					if _, err := m.Forward32(context.Background(), p, out); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func uniformProblem(n, d int) *attn.Problem[float32] {
	r := rand.New(rand.NewPCG(uint64(n), 1))
	p := &attn.Problem[float32]{Heads: 1, N: n, M: n, D: d, E: d,
		Q: make([]float32, n*d), K: make([]float32, n*d), V: make([]float32, n*d), Scale: 1 / float64(d), Eps: 1e-3}
	for i := range p.Q {
		p.Q[i] = float32(2*r.Float64() - 1)
		p.K[i] = float32(2*r.Float64() - 1)
		p.V[i] = float32(r.NormFloat64())
	}
	return p
}
