package sinkshift

import (
	"math"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/accurate"
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
	// Head 0: rows (1, -2) and (3, 0): s q.c = s sum |q_t c_t| = 1.5e4
	// for both (exact in float64), plus |sink| = 5 and logSum(i) = i.
	gamma := func(n float64) float64 { return n * 0x1p-53 / (1 - n*0x1p-53) }
	a := 1.5e4 * (1 + gamma(3))
	mag := 1.5e4 + 2*gamma(3)*a
	err := 2*0x1p-53*mag + 2*gamma(2)*gamma(2)*a
	delta := err + gamma(8)*(mag+1+5+1)
	want := math.Expm1(delta) * math.Exp(delta) / 4
	if b := Bound(p, 0, c, func(i int) float64 { return float64(i) }); math.Abs(b-want) > 1e-14*want {
		t.Errorf("bound %g, want %g", b, want)
	}
	// Twice the offset: about twice the bound.
	c2 := []float64{2e4, -2e4}
	if b, b2 := Bound(p, 0, c, nil), Bound(p, 0, c2, nil); !(b2 > 1.9*b && b2 < 2.1*b) {
		t.Errorf("offset doubled: %g against %g", b2, b)
	}
}

// TestShiftBound: s q.c where the products cancel, (1 + 2^-30) 1e8 - 1e8
// with scale 1: the methods' compensated sum (accurate.ScaledDot) is
// exact to its last rounding and within ShiftBound's err, where the plain
// float64 loop is off by the rounding of the first product; mag bounds
// |s q.c|.
func TestShiftBound(t *testing.T) {
	q := []float64{1 + 0x1p-30, 1}
	c := []float64{1e8 + 1.0/3, -(1e8 + 1.0/3)}
	want := 0x1p-30 * (1e8 + 1.0/3) // exact: c_0 is a float64, times 2^-30
	got := accurate.ScaledDot(q, c, 1)
	mag, err := ShiftBound(q, c, 1)
	if math.Abs(got-want) > 0x1p-53*math.Abs(want) {
		t.Errorf("ScaledDot = %.17g, want %.17g", got, want)
	}
	if math.Abs(got-want) > err {
		t.Errorf("off by %g, above its bound %g", math.Abs(got-want), err)
	}
	if !(mag >= math.Abs(want)) {
		t.Errorf("mag %g below |s q.c| = %g", mag, want)
	}
	plain := q[0]*c[0] + q[1]*c[1]
	if math.Abs(plain-want) <= err {
		t.Errorf("the plain sum %.17g is within the compensated sum's bound: the case no longer shows cancellation", plain)
	}
	if m, e := ShiftBound(q, nil, 1); m != 0 || e != 0 {
		t.Errorf("not centred: %g, %g", m, e)
	}
}
