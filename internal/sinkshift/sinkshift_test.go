package sinkshift

import (
	"math"
	"testing"

	"github.com/fastattn/fastattn/attn"
)

func TestBound(t *testing.T) {
	p := &attn.Problem[float64]{Heads: 2, N: 2, M: 1, D: 2, E: 1, Scale: 0.5,
		Q: []float64{1, -2, 3, 0, 1, 1, 0, 0}, K: []float64{0, 0}, V: []float64{1}}
	c := []float64{1e4, -1e4}
	if b := Bound(p, 0, c, nil); b != 0 {
		t.Errorf("no sinks: %g, want 0", b)
	}
	p.Sinks = []float64{5, math.Inf(-1)}
	if b := Bound(p, 0, nil, nil); b != 0 {
		t.Errorf("keys not centred: %g, want 0", b)
	}
	if b := Bound(p, 1, c, nil); b != 0 {
		t.Errorf("head without a sink: %g, want 0", b)
	}
	// Head 0: rows (1, -2) and (3, 0): s sum |q_t c_t| = 1.5e4 for both,
	// plus |sink| = 5 and logSum(i) = i.
	gamma := 7 * 0x1p-53 / (1 - 7*0x1p-53)
	delta := gamma * (1.5e4 + 5 + 1)
	want := math.Expm1(delta) * math.Exp(delta) / 4
	if b := Bound(p, 0, c, func(i int) float64 { return float64(i) }); b != want {
		t.Errorf("bound %g, want %g", b, want)
	}
	// Twice the offset: about twice the bound.
	c2 := []float64{2e4, -2e4}
	if b, b2 := Bound(p, 0, c, nil), Bound(p, 0, c2, nil); !(b2 > 1.9*b && b2 < 2.1*b) {
		t.Errorf("offset doubled: %g against %g", b2, b)
	}
}
