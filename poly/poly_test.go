package poly

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
)

func TestConformance(t *testing.T) {
	for _, eps := range []float64{1e-1, 1e-3, 1e-6} {
		t.Run(fmt.Sprint("eps=", eps), func(t *testing.T) {
			attntest.Run(t, Method{}, attntest.Config{Eps: eps, AllowUnsupported: true})
		})
	}
}

// TestSupportsBoundedInputs makes sure the conformance run above did not
// pass by declining everything: on small entries the method must run.
func TestSupportsBoundedInputs(t *testing.T) {
	for _, c := range attntest.Cases() {
		if c.Name == "large-logits" || c.Name == "far-keys" || c.Name == "dominant-key" || c.Name == "large-values" {
			continue
		}
		c.QScale, c.KScale = 0.3, 0.3
		p := c.Generate(5)
		p.Eps = 1e-3
		if err := attntest.Check(Method{}, p, p.Eps, false); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
	}
}

// TestGuaranteeRandom asserts |T - Att| <= eps max|V_col| on many random
// inputs across d <= 16, beta in [0.05, 4] and eps down to each dtype's
// floor, including adversarial shapes.
func TestGuaranteeRandom(t *testing.T) {
	count := 1000
	if testing.Short() {
		count = 150
	}
	r := rand.New(rand.NewPCG(11, 12))
	epsList := []float64{1e-1, 3e-2, 1e-2, 1e-3, 1e-4, 1e-5, MinEps32, 1e-8, 1e-10, MinEps64}
	shapes := []string{"gaussian", "uniform", "identical", "dominant", "far", "onehot", "causal", "padding"}
	ran, declined := 0, 0
	for it := range count {
		d := 1 + r.IntN(16)
		if r.IntN(3) == 0 {
			d = 1 + r.IntN(4)
		}
		n, m, e := 1+r.IntN(40), 1+r.IntN(300), 1+r.IntN(6)
		shape := shapes[it%len(shapes)]
		targetBeta := 0.05 * math.Pow(80, r.Float64()) // [0.05, 4]
		eps := epsList[r.IntN(len(epsList))]
		p := randomProblem(r, shape, n, m, d, e, targetBeta)
		p.Eps = eps
		var err error
		if eps >= MinEps32 && r.IntN(2) == 0 {
			err = attntest.Check(Method{}, attntest.To32(p), eps, true)
		} else {
			err = attntest.Check(Method{}, p, eps, true)
		}
		if err != nil {
			t.Fatalf("input %d (%s, n=%d m=%d d=%d e=%d beta~%.3g eps=%g): %v", it, shape, n, m, d, e, targetBeta, eps, err)
		}
		if _, ferr := attn.Forward(context.Background(), Method{}, p, attn.NewOutput(p)); errors.Is(ferr, attn.ErrUnsupported) {
			declined++
		} else {
			ran++
		}
	}
	t.Logf("%d inputs ran, %d declined (cost above exact or bound unreachable)", ran, declined)
	if ran < count/2 {
		t.Fatalf("only %d of %d inputs ran", ran, count)
	}
}

// randomProblem builds a problem whose logits are bounded by about beta.
func randomProblem(r *rand.Rand, shape string, n, m, d, e int, beta float64) *attn.Problem[float64] {
	p := &attn.Problem[float64]{Heads: 1, N: n, M: m, D: d, E: e,
		Q: make([]float64, n*d), K: make([]float64, m*d), V: make([]float64, m*e), Scale: 1 / float64(d)}
	for i := range p.Q {
		p.Q[i] = 2*r.Float64() - 1
	}
	for i := range p.K {
		p.K[i] = 2*r.Float64() - 1
	}
	for i := range p.V {
		p.V[i] = r.NormFloat64()
	}
	switch shape {
	case "gaussian":
		for i := range p.Q {
			p.Q[i] = r.NormFloat64()
		}
	case "identical":
		for j := 1; j < m; j++ {
			copy(p.K[j*d:(j+1)*d], p.K[:d])
		}
	case "dominant":
		copy(p.K[:d], p.Q[:d])
	case "far":
		for i := range p.K {
			p.K[i] += 40
		}
	case "onehot":
		clear(p.V)
		for j := range m {
			p.V[j*e+r.IntN(e)] = 1
		}
	case "causal":
		p.Causal = true
	case "padding":
		p.KeyLens = []int{r.IntN(m + 1)}
	}
	// Scale queries so the largest |s q.(k - centre)| is about beta.
	var qmax, kmax float64
	for i := range n {
		var s float64
		for t := range d {
			s += p.Q[i*d+t] * p.Q[i*d+t]
		}
		qmax = max(qmax, math.Sqrt(s))
	}
	mean := make([]float64, d)
	for j := range m {
		for t := range d {
			mean[t] += p.K[j*d+t] / float64(m)
		}
	}
	for j := range m {
		var s float64
		for t := range d {
			x := p.K[j*d+t] - mean[t]
			s += x * x
		}
		kmax = max(kmax, math.Sqrt(s))
	}
	if qmax > 0 && kmax > 0 {
		f := beta / (p.Scale * qmax * kmax)
		for i := range p.Q {
			p.Q[i] *= f
		}
	}
	return p
}

func TestDeclinesLargeEntries(t *testing.T) {
	p := attntest.Case{Heads: 1, N: 64, M: 64, D: 8, E: 8, QScale: 30, KScale: 30}.Generate(1)
	p.Eps = 1e-3
	_, err := Method{}.Forward64(context.Background(), p, attn.NewOutput(p))
	if !errors.Is(err, attn.ErrUnsupported) {
		t.Fatalf("got %v, want ErrUnsupported", err)
	}
	t.Log(err)
	p.Eps = 1e-20
	if _, err := (Method{}).Forward64(context.Background(), p, attn.NewOutput(p)); !errors.Is(err, attn.ErrUnsupported) {
		t.Fatalf("eps below the floor: got %v", err)
	}
}

// TestEnclosingBall: the radius covers every key, including far keys the
// search's sample does not hold (a lone outlier, a cluster off to one
// side), and is no larger than the radius about the mean.
func TestEnclosingBall(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	for _, d := range []int{1, 3, 8, 64} {
		for kind := range 4 {
			L := 1<<16 + 7
			keys := make([]float32, L*d)
			for x := range keys {
				keys[x] = float32(r.NormFloat64())
			}
			switch kind {
			case 1: // one outlier between sampled keys
				for t := range d {
					keys[(L/2+1)*d+t] = 40
				}
			case 2: // a far cluster of a few keys
				for j := 100; j < 110; j++ {
					keys[j*d] = 25 + float32(j)
				}
			case 3: // identical keys
				clear(keys)
			}
			mu, R := enclosingBall(keys, d)
			var maxD, meanD float64
			mean := make([]float64, d)
			for j := range L {
				for t := range d {
					mean[t] += float64(keys[j*d+t]) / float64(L)
				}
			}
			for j := range L {
				var s, sm float64
				for t := range d {
					s += (float64(keys[j*d+t]) - mu[t]) * (float64(keys[j*d+t]) - mu[t])
					sm += (float64(keys[j*d+t]) - mean[t]) * (float64(keys[j*d+t]) - mean[t])
				}
				maxD, meanD = max(maxD, math.Sqrt(s)), max(meanD, math.Sqrt(sm))
			}
			if !(R >= maxD) || R > meanD*(1+1e-9)+1e-9 {
				t.Errorf("d = %d, kind %d: R = %.6g, farthest key %.6g, radius about the mean %.6g", d, kind, R, maxD, meanD)
			}
		}
	}
}
