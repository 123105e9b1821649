package reference

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fastattn/fastattn/attn"
)

// These tests check the reference's options against plain attention on
// rewritten inputs, so that the oracle does not merely agree with itself.

func random(r *rand.Rand, n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = r.NormFloat64()
	}
	return x
}

func plain(r *rand.Rand, heads, n, m, d, e int) *attn.Problem[float64] {
	return &attn.Problem[float64]{Heads: heads, N: n, M: m, D: d, E: e,
		Q: random(r, heads*n*d), K: random(r, heads*m*d), V: random(r, heads*m*e), Scale: 0.4}
}

func near(t *testing.T, what string, got, want []float64) {
	t.Helper()
	for i := range want {
		if !(math.Abs(got[i]-want[i]) <= 1e-12*(1+math.Abs(want[i]))) && !(math.IsInf(got[i], -1) && math.IsInf(want[i], -1)) {
			t.Fatalf("%s[%d] = %v, want %v", what, i, got[i], want[i])
		}
	}
}

// GQA equals attention with K and V repeated for every query head.
func TestGQAIsRepeatedKV(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	heads, g, n, m, d, e := 6, 3, 5, 9, 4, 3
	p := plain(r, heads, n, m, d, e)
	p.KVHeads = heads / g
	p.K, p.V = p.K[:p.KVHeads*m*d], p.V[:p.KVHeads*m*e]
	p.Causal = true
	rep := *p
	rep.KVHeads = 0
	rep.K, rep.V = nil, nil
	for h := range heads {
		kh := h / g
		rep.K = append(rep.K, p.K[kh*m*d:(kh+1)*m*d]...)
		rep.V = append(rep.V, p.V[kh*m*e:(kh+1)*m*e]...)
	}
	o, l := Attention(p)
	o2, l2 := Attention(&rep)
	near(t, "out", o, o2)
	near(t, "lse", l, l2)
	g1 := Gradient(p, p.Q[:heads*n*e])
	g2 := Gradient(&rep, p.Q[:heads*n*e])
	near(t, "dq", g1.DQ, g2.DQ)
	for kh := range p.KVHeads {
		sum := make([]float64, m*d)
		for h := kh * g; h < (kh+1)*g; h++ {
			for x := range sum {
				sum[x] += g2.DK[h*m*d+x]
			}
		}
		near(t, "dk", g1.DK[kh*m*d:(kh+1)*m*d], sum)
	}
}

// A window is a boolean mask built from FlashAttention-2's formula.
func TestWindowIsMask(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct {
		n, m, left, right int
		causal, topLeft   bool
	}{{7, 12, 2, 1, false, false}, {12, 7, 3, 0, true, false}, {9, 9, 0, -1, false, true}, {5, 11, -1, 2, true, true}} {
		p := plain(r, 1, c.n, c.m, 3, 2)
		p.Window = &attn.Window{Left: c.left, Right: c.right}
		p.Causal = c.causal
		if c.topLeft {
			p.CausalAlign = attn.TopLeft
		}
		masked := *p
		masked.Window, masked.Causal, masked.CausalAlign = nil, false, attn.BottomRight
		masked.Mask = &attn.Mask{Bool: make([]bool, c.n*c.m), RowStride: c.m, ColStride: 1}
		for i := range c.n {
			off := c.m - c.n
			if c.topLeft {
				off = 0
			}
			for j := range c.m {
				ok := (c.left < 0 || j >= i+off-c.left) && (c.right < 0 || j <= i+off+c.right) && (!c.causal || j <= i+off)
				masked.Mask.Bool[i*c.m+j] = ok
			}
		}
		o, l := Attention(p)
		o2, l2 := Attention(&masked)
		near(t, "out", o, o2)
		near(t, "lse", l, l2)
	}
}

// A sink scales the output by S/(S + e^sink) and adds e^sink to the sum;
// its gradient matches a finite difference of the loss.
func TestSinks(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	p := plain(r, 2, 4, 6, 3, 2)
	o, l := Attention(p)
	p.Sinks = []float64{0.7, -1.5}
	os, ls := Attention(p)
	for h := range 2 {
		for i := range 4 {
			x := h*4 + i
			want := math.Log(math.Exp(l[x]) + math.Exp(p.Sinks[h]))
			near(t, "lse", ls[x:x+1], []float64{want})
			f := math.Exp(l[x] - want)
			near(t, "out", os[x*2:x*2+2], []float64{o[x*2] * f, o[x*2+1] * f})
		}
	}
	dO := random(r, 2*4*2)
	g := Gradient(p, dO)
	loss := func() float64 {
		o, _ := Attention(p)
		var s float64
		for i := range o {
			s += o[i] * dO[i]
		}
		return s
	}
	for h := range 2 {
		s := p.Sinks[h]
		p.Sinks[h] = s + 1e-6
		up := loss()
		p.Sinks[h] = s - 1e-6
		down := loss()
		p.Sinks[h] = s
		if fd := (up - down) / 2e-6; math.Abs(fd-g.DSinks[h]) > 1e-7 {
			t.Errorf("dsink %d = %v, finite difference %v", h, g.DSinks[h], fd)
		}
	}
}

// An additive mask constant along a row shifts the LSE and leaves the
// output; -Inf equals a false boolean entry.
func TestAdditiveMask(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	p := plain(r, 1, 3, 5, 2, 2)
	o, l := Attention(p)
	p.Mask = &attn.Mask{Add: []float64{2, -1, 0.5}, RowStride: 1}
	o2, l2 := Attention(p)
	near(t, "out", o2, o)
	near(t, "lse", l2, []float64{l[0] + 2, l[1] - 1, l[2] + 0.5})
	p.Mask = &attn.Mask{Add: []float64{0, math.Inf(-1), 0, 0, math.Inf(-1)}, ColStride: 1}
	o3, l3 := Attention(p)
	p.Mask = &attn.Mask{Bool: []bool{true, false, true, true, false}, ColStride: 1}
	o4, l4 := Attention(p)
	near(t, "out", o3, o4)
	near(t, "lse", l3, l4)
}
