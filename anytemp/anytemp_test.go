package anytemp

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fastattn/fastattn/attn/attntest"
)

func TestConformance(t *testing.T) {
	for _, eps := range []float64{1e-2, 1e-3, 1e-5} {
		allow := eps < 1e-4 // logits of 1e9 cannot meet 1e-5 in float64 rounding
		t.Run("", func(t *testing.T) {
			attntest.Run(t, Method{}, attntest.Config{Eps: eps, AllowUnsupported: allow})
		})
	}
}

// TestSpread2: the Morton key's bit spreading matches the bit loop.
func TestSpread2(t *testing.T) {
	for _, c := range []uint64{0, 1, 2, 3, 0xFFFFF, 0x12345, 0xABCDE} {
		var want uint64
		for b := range 20 {
			want |= (c >> b & 1) << (2 * b)
		}
		if spread2(c) != want {
			t.Fatalf("%x: %x want %x", c, spread2(c), want)
		}
	}
}

// TestCoefficientsFrom: the coefficients built degree range by degree
// range from the quotients agree with coefficients to rounding.
func TestCoefficientsFrom(t *testing.T) {
	for _, r := range []int{1, 2, 3} {
		g := 12
		mo := newMonomials(r, g)
		y := []float64{1.7, -0.3, 2.9}[:r]
		want := make([]float64, mo.terms(g))
		mo.coefficients(y, g, want)
		got := make([]float64, mo.terms(g))
		yk := make([]float64, r*(g+1))
		from := -1
		for _, to := range []int{0, 3, 4, 12} {
			mo.quotients(y, from, to, yk)
			mo.coefficientsFrom(yk, from, to, got)
			from = to
		}
		for a := range want {
			if d := math.Abs(got[a] - want[a]); d > 1e-14*math.Abs(want[a]) {
				t.Fatalf("r=%d term %d: %g, want %g", r, a, got[a], want[a])
			}
		}
		// The r = 2 path does the table loop's products (the rounding
		// bound counts them): bit for bit the same.
		chain := make([]float64, mo.terms(g))
		chain[0] = 1
		mo.quotients(y, -1, g, yk)
		mo.coefficientsChain(yk, -1, g, chain)
		for a := range chain {
			if got[a] != chain[a] {
				t.Fatalf("r=%d term %d: %g, the table loop gives %g", r, a, got[a], chain[a])
			}
		}
	}
}

// TestSortHigh32: rowOrder's radix sort orders words as a full sort does
// when their low halves ascend, with ties, bytes all equal (skipped
// passes) and short inputs.
func TestSortHigh32(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	for _, c := range []struct {
		n    int
		mask uint64
	}{{0, 0}, {1, 0}, {5, 0xFFFFFFFF}, {1000, 0xFFFFFFFF}, {1000, 0x00FF00F0}, {3000, 0x7}, {100, 0}} {
		x := make([]uint64, c.n)
		for i := range x {
			x[i] = (rnd.Uint64()&c.mask)<<32 | uint64(i)
		}
		want := slices.Clone(x)
		slices.Sort(want)
		sortHigh32(x)
		if !slices.Equal(x, want) {
			t.Fatalf("n=%d mask %x: radix order differs from the full sort", c.n, c.mask)
		}
	}
}

// TestDegree: the branch-free degree rule is the smallest d with
// rho <= rhoMax[d], -1 above the last or for NaN, at and around every
// threshold.
func TestDegree(t *testing.T) {
	pr := &params{rhoMax: taylorRho(4e-4, 4, 16)}
	want := func(rho float64) int {
		for d, x := range pr.rhoMax {
			if rho <= x {
				return d
			}
		}
		return -1
	}
	rhos := []float64{0, math.Copysign(0, -1), 1e-300, 5, math.Inf(1), math.NaN()}
	for _, x := range pr.rhoMax {
		rhos = append(rhos, x, math.Nextafter(x, 0), math.Nextafter(x, 10))
	}
	for _, rho := range rhos {
		if got, w := pr.degree(rho), want(rho); got != w {
			t.Fatalf("rho %g: degree %d, want %d", rho, got, w)
		}
	}
}
