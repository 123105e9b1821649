package lsebound

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fastattn/fastattn/attn"
)

func TestSumError(t *testing.T) {
	for _, eta := range []float64{1e-16, 1e-8, 1e-3, 0.25} {
		// An output bound of exactly 2 eta / (1 - eta) gives the sum's
		// error back.
		b := 2 * eta / (1 - eta)
		if got, want := FromOutputBound(b), SumError(eta); math.Abs(got-want) > 1e-15*want {
			t.Errorf("eta %g: FromOutputBound %g, SumError %g", eta, got, want)
		}
	}
	if !math.IsInf(SumError(1), 1) {
		t.Errorf("SumError(1) = %g, want +Inf", SumError(1))
	}
}

func TestBound(t *testing.T) {
	p := &attn.Problem[float64]{Heads: 2, N: 2, M: 3, D: 2, E: 1, Scale: 0.5,
		Q: []float64{1, -1, 2, 0, 0, 0, 0, 0}, K: make([]float64, 6), V: make([]float64, 3)}
	lse := []float64{3, -5, math.Inf(-1), math.Inf(-1)}
	gamma := func(n int) float64 { return float64(n) * 0x1p-53 / (1 - float64(n)*0x1p-53) }
	// Not centred: the largest |LSE| (5) and log(3 + 2) + 1; head 1's
	// rows have no keys.
	want := 1e-9 + gamma(8)*(5+math.Log(5)+1)
	if got := Bound(p, lse, 1e-9, nil); got != want {
		t.Errorf("not centred: %g, want %g", got, want)
	}
	// Centred on (1e6, 1e6) with a sink of -7: row 0's shift s q.c is 0
	// (its products cancel exactly), row 1's 1e6, bounded by mag (with the
	// plain sum's own error) and its error by 2u mag + 2 gamma_2^2 a,
	// counted twice (sinkshift.ShiftBound).
	p.Sinks = []float64{-7}
	c := []float64{1e6, 1e6}
	a := 1e6 * (1 + gamma(3))
	mag := 1e6 + 2*gamma(3)*a
	err := 2*0x1p-53*mag + 2*gamma(2)*gamma(2)*a
	want = 1e-9 + 2*err + gamma(8)*(mag+7+5+math.Log(5)+1)
	if got := Bound(p, lse, 1e-9, func(int) []float64 { return c }); math.Abs(got-want) > 1e-15*want {
		t.Errorf("centred: %g, want %g", got, want)
	}
}

// TestRoundingAPriori: the a priori rounding term covers Rounding for
// every log-sum-exp a row can have, |lse| <= max(logit, |sink|) +
// log(l + 1), and is exactly Rounding at that largest |lse|.
func TestRoundingAPriori(t *testing.T) {
	for _, logit := range []float64{0, 0.5, 30, 1e6} {
		for _, sink := range []float64{math.Inf(-1), -2e6, 3, 40} {
			for _, l := range []int{0, 1, 100, 1 << 20} {
				got := RoundingAPriori(logit, sink, l)
				top := logit
				if !math.IsInf(sink, -1) {
					top = max(top, math.Abs(sink))
				}
				top += math.Log(float64(l + 1))
				if want := Rounding[float64](nil, nil, 0, sink, top, l); got != want {
					t.Errorf("logit %g sink %g l %d: %g, want Rounding at |lse| = %g, %g", logit, sink, l, got, top, want)
				}
				for _, lse := range []float64{-top, -logit, 0, top / 2, top} {
					if r := Rounding[float64](nil, nil, 0, sink, lse, l); r > got {
						t.Errorf("logit %g sink %g l %d: Rounding at lse %g is %g, above %g", logit, sink, l, lse, r, got)
					}
				}
			}
		}
	}
}

// TestBoundRowByRow checks Bound, which takes an uncentred head's rows
// together, against Rounding row by row: heads centred and not, sinks, key
// lengths, rows without keys, chunks that split heads, and a NaN.
func TestBoundRowByRow(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const heads, n, d = 3, 1500, 4
	p := &attn.Problem[float64]{Heads: heads, N: n, M: 9, D: d, E: 1, Scale: 0.5,
		Q: make([]float64, heads*n*d), Sinks: []float64{math.Inf(-1), 2, -7}, KeyLens: []int{9, 3, 5}}
	for x := range p.Q {
		p.Q[x] = rng.NormFloat64() * 10
	}
	centres := [][]float64{nil, {1, -2, 3, 0.5}, nil}
	lse := make([]float64, heads*n)
	for r := range lse {
		lse[r] = rng.NormFloat64() * 100
		if rng.IntN(10) == 0 {
			lse[r] = math.Inf(-1)
		}
	}
	for h := range n {
		lse[2*n+h] = math.Inf(-1) // head 2: no row has keys
	}
	rowByRow := func() float64 {
		worst := 0.0
		for r, v := range lse {
			if math.IsInf(v, -1) {
				continue
			}
			h := r / n
			var q []float64
			if centres[h] != nil {
				q = p.Q[r*d : (r+1)*d]
			}
			worst = max(worst, Rounding(q, centres[h], p.Scale, p.Sink(h), v, p.KeyLen(h)))
		}
		return worst
	}
	centre := func(h int) []float64 { return centres[h] }
	if got, want := Bound(p, lse, 0.25, centre), 0.25+rowByRow(); got != want {
		t.Errorf("Bound %g, row by row %g", got, want)
	}
	lse[n/2] = math.NaN()
	if got := Bound(p, lse, 0.25, centre); !math.IsNaN(got) {
		t.Errorf("Bound with a NaN log-sum-exp: %g, want NaN", got)
	}
}
