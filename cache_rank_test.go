package fastattn_test

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/fastattn/fastattn"
)

// A poly cache at a head dimension whose needed degree has a rank beyond
// any int (C(64+g, g) > 2^63 near g = 20) must fall back to exact rows, not
// panic allocating the moments. Found by examples/gpt's method swap.
func TestCachePolyHugeRankFallsBack(t *testing.T) {
	const steps = 6
	for _, d := range []int{16, 32, 64} {
		r := rand.New(rand.NewPCG(1, 2))
		for _, sigma := range []float64{0.3, 0.6, 1, 1.5, 2, 3, 6} {
			cache, err := fastattn.NewCache[float32](1, 1, d, d, fastattn.CacheOptions{Method: "poly", Eps: 1e-3})
			if err != nil {
				t.Fatal(err)
			}
			tensor := func(scale float64) fastattn.Tensor[float32] {
				x := make([]float32, d)
				for i := range x {
					x[i] = float32(scale * r.NormFloat64())
				}
				ts, _ := fastattn.NewTensor(x, 1, 1, 1, d)
				return ts
			}
			for s := range steps {
				res, err := cache.Forward(context.Background(), tensor(sigma), tensor(sigma), tensor(1))
				if err != nil {
					t.Fatalf("d %d sigma %g step %d: %v", d, sigma, s, err)
				}
				if len(res.Out.Data) != d {
					t.Fatalf("step %d: %d outputs", s, len(res.Out.Data))
				}
			}
		}
	}
}
