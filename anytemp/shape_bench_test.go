package anytemp

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/exact"
)

// shapeProblem is benchProblem with a value dimension e of its own.
func shapeProblem(n, d, e int, sigma, scale float64) *attn.Problem[float32] {
	r := rand.New(rand.NewPCG(uint64(n), uint64(d*100+e)))
	f := func(k int, s float64) []float32 {
		x := make([]float32, k)
		for i := range x {
			x[i] = float32(s * r.NormFloat64())
		}
		return x
	}
	return &attn.Problem[float32]{Heads: 1, N: n, M: n, D: d, E: e, Scale: scale, Eps: 1e-3,
		Q: f(n*d, sigma), K: f(n*d, sigma), V: f(n*e, 1)}
}

// BenchmarkShape times anytemp and exact in one run at the shape,
// d = 2, e = 8, n = 2^16, float32, eps 1e-3, for Q and K entries N(0, 1),
// N(0, 3^2) and N(0, 10^2) at softmax scale 1 (the ratios are the figures
// to quote; exact computes in float64 when float32 cannot certify eps):
//
//	go test -run XXX -bench Shape -benchtime 5x ./anytemp/
func BenchmarkShape(b *testing.B) {
	for _, sigma := range []float64{1, 3, 10} {
		p := shapeProblem(1<<16, 2, 8, sigma, 1)
		out := attn.NewOutput(p)
		for _, m := range []attn.Method{Method{}, exact.Method{}} {
			b.Run(fmt.Sprintf("%s/sigma=%g", m.Name(), sigma), func(b *testing.B) {
				c0 := cpuSeconds()
				for b.Loop() {
					if _, err := m.Forward32(context.Background(), p, out); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric((cpuSeconds()-c0)/float64(b.N)*1e3, "cpu-ms/op")
			})
		}
	}
}
