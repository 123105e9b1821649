package anytemp

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/exact"
)

// BenchmarkBackward times anytemp's forward and backward passes, and
// exact's for d = 2, on the forward benchmark's inputs (float32, eps 1e-3,
// a fixed dO): go test -bench Backward -run XXX ./anytemp/
// Each forward-backward pair is reported by its own sub-benchmark; the
// backward/forward ratio is the ratio of the two ns/op figures.
func BenchmarkBackward(b *testing.B) {
	for _, causal := range []bool{false, true} {
		for _, d := range []int{1, 2, 3, 4} {
			for _, scale := range []float64{1, 10} {
				for _, n := range []int{1 << 12, 1 << 14, 1 << 16} {
					if d >= 3 && scale == 1 && n > 1<<12 {
						continue // low temperature in 3-4 dimensions: slower than exact
					}
					if causal && (d != 2 || scale != 10) {
						continue
					}
					benchGrad(b, n, d, scale, causal, d == 2 && scale == 10)
				}
			}
		}
	}
}

func benchGrad(b *testing.B, n, d int, scale float64, causal, withExact bool) {
	p := benchProblem(n, d, scale)
	p.Causal = causal
	out := attn.NewOutput(p)
	dO := make([]float32, n*d)
	for i := range dO {
		dO[i] = float32(math.Sin(float64(i)))
	}
	g := attn.NewGradients(p)
	name := fmt.Sprintf("d=%d/scale=%g/n=%d/causal=%v", d, scale, n, causal)
	methods := []attn.Differentiable{Method{Samples: -1}}
	if withExact {
		methods = append(methods, exact.Method{})
	}
	for _, m := range methods {
		b.Run(m.Name()+"-forward/"+name, func(b *testing.B) {
			for b.Loop() {
				if _, err := m.Forward32(context.Background(), p, out); err != nil {
					b.Fatal(err)
				}
			}
		})
		if _, err := m.Forward32(context.Background(), p, out); err != nil {
			b.Fatal(err)
		}
		b.Run(m.Name()+"-backward/"+name, func(b *testing.B) {
			for b.Loop() {
				if _, err := m.Backward32(context.Background(), p, out, dO, g); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
