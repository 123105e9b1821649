package fastattn

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fastattn/fastattn/attn/attntest"
)

// TestCachePolySinkBound: a polynomial cache whose keys sit 1e5 to 1e8
// from the origin (its decoding state centres them) with a sink at the
// logit of one of its keys. Each row weighs the sink against s q.mu +
// log den in float64, and the bound must count that rounding (package
// sinkshift): without it, a float64 row with keys offset by 8e7 was off by
// 3.9e-9 against a bound of 9.6e-10 at eps = 1e-9. Every row of a prefill
// of 50 to 350 tokens, for 60 random streams and eps from 1e-3 to 1e-12,
// against package accurate's reference.
func TestCachePolySinkBound(t *testing.T) {
	for seed := range uint64(60) {
		r := rand.New(rand.NewPCG(seed, 3))
		m, d, e := 50+r.IntN(300), 1+r.IntN(4), 1+r.IntN(4)
		off := math.Pow(10, 5+3*r.Float64())
		scale := math.Pow(10, r.Float64()*2-1) / math.Sqrt(float64(d))
		q, k, v := make([]float64, m*d), make([]float64, m*d), make([]float64, m*e)
		for t := range d {
			q[t] = 0.3 * r.NormFloat64()
		}
		for i := 1; i < m; i++ {
			copy(q[i*d:(i+1)*d], q[:d])
		}
		for i := range k {
			k[i] = off + 0.3*r.NormFloat64()
		}
		for i := range v {
			v[i] = r.NormFloat64()
		}
		var dot float64
		j0 := r.IntN(m)
		for t := range d {
			dot += q[t] * k[j0*d+t]
		}
		sinks := []float64{scale*dot + r.NormFloat64()}
		qt, _ := NewTensor(q, 1, m, d)
		kt, _ := NewTensor(k, 1, m, d)
		vt, _ := NewTensor(v, 1, m, e)
		p, _, err := problem(qt, kt, vt, Options{Scale: scale, Sinks: sinks, Causal: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, eps := range []float64{1e-3, 1e-6, 1e-9, 1e-11, 1e-12} {
			cache, err := NewCache[float64](1, 1, d, e, CacheOptions{Method: "poly", Scale: scale, Eps: eps, Sinks: sinks})
			if err != nil {
				t.Fatal(err)
			}
			res, err := cache.Forward(context.Background(), qt, kt, vt)
			if err != nil {
				t.Fatalf("seed %d, eps %g: %v", seed, eps, err)
			}
			obs, refErr := attntest.AccurateError(p, res.Out.Data)
			if !(obs <= res.Report.ErrorBound*(1+1e-9)+refErr) {
				t.Errorf("seed %d (m %d, d %d, keys offset by %.3g), eps %g, %s: observed error %.3g above the reported bound %.3g",
					seed, m, d, off, eps, res.Report.Method, obs, res.Report.ErrorBound)
			}
		}
	}
}
