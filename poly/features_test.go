package poly

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestRank(t *testing.T) {
	// The table in docs/ALGORITHMS.md section 3.
	want := map[[2]int]int{{4, 2}: 15, {4, 6}: 210, {8, 3}: 165, {8, 5}: 1287, {16, 4}: 4845, {32, 2}: 561, {32, 6}: 2760681}
	for k, r := range want {
		if got := Rank(k[0], k[1]); got != r {
			t.Errorf("Rank(%d, %d) = %d, want %d", k[0], k[1], got, r)
		}
	}
}

// TestMonomialsExpandPower checks the defining identity of the feature map:
// sum over |alpha| = j of (j!/alpha!) w^alpha u^alpha = (w.u)^j.
func TestMonomialsExpandPower(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, dg := range [][2]int{{1, 5}, {2, 4}, {3, 6}, {5, 3}, {8, 4}} {
		d, g := dg[0], dg[1]
		m := newMonomials(d, g)
		if len(m.parent) != Rank(d, g) || m.starts[g+1] != Rank(d, g) {
			t.Fatalf("d=%d g=%d: %d monomials, want %d", d, g, len(m.parent), Rank(d, g))
		}
		w, u := make([]float64, d), make([]float64, d)
		for i := range d {
			w[i], u[i] = r.NormFloat64(), r.NormFloat64()
		}
		fw, fu := make([]float64, len(m.parent)), make([]float64, len(m.parent))
		m.eval(w, fw, len(fw))
		m.eval(u, fu, len(fu))
		var dot float64
		for i := range d {
			dot += w[i] * u[i]
		}
		for j := 0; j <= g; j++ {
			var s float64
			for a := m.starts[j]; a < m.starts[j+1]; a++ {
				if int(m.degree[a]) != j {
					t.Fatalf("monomial %d has degree %d, listed under %d", a, m.degree[a], j)
				}
				s += m.multi[a] * fw[a] * fu[a]
			}
			if want := math.Pow(dot, float64(j)); math.Abs(s-want) > 1e-10*(1+math.Abs(want)) {
				t.Fatalf("d=%d degree %d: expansion %g, (w.u)^j = %g", d, j, s, want)
			}
		}
	}
}
