package poly

import (
	"math"

	"github.com/fastattn/fastattn/internal/kernels"
)

// monomials lists every multi-index alpha in d variables with |alpha| <= g in
// graded order (degree 0, then 1, ...), so the features of a lower degree are
// a prefix of those of a higher one and a row of queries that needs only
// degree g' uses the first Rank(d, g') rows of the key moments.
//
// Each monomial of degree >= 1 is its parent (one degree lower) times one
// variable, so a feature vector is built with one multiplication per entry.
// Only variables at or after the parent's last variable are appended, which
// generates each multi-index exactly once.
type monomials struct {
	d, g   int
	parent []int32   // index of the monomial this one extends
	vari   []int32   // variable multiplied in
	degree []int32   // |alpha|
	multi  []float64 // |alpha|! / alpha!, the multinomial coefficient
	starts []int     // starts[j] = number of monomials of degree < j; starts[g+1] = total
	table  *kernels.MonoTable
}

// Rank is C(d+g, g), the number of monomials in d variables of degree <= g.
// It saturates at math.MaxInt, so that a rank no machine holds compares as
// too large instead of wrapping to a negative int (d = 64 at degree 20 is
// above 2^63).
func Rank(d, g int) int {
	r := RankFloat(d, g)
	if r >= math.MaxInt {
		return math.MaxInt
	}
	return int(math.Round(r))
}

// RankFloat is Rank without overflow for huge values, for cost estimates.
func RankFloat(d, g int) float64 {
	r := 1.0
	for i := 1; i <= g; i++ {
		r = r * float64(d+i) / float64(i)
	}
	return r
}

func newMonomials(d, g int) *monomials {
	r := Rank(d, g)
	m := &monomials{d: d, g: g,
		parent: make([]int32, 1, r), vari: make([]int32, 1, r), degree: make([]int32, 1, r),
		multi: make([]float64, 1, r), starts: make([]int, 1, g+2)}
	m.multi[0] = 1
	last := []int32{-1} // last variable of each monomial
	alphaLast := []int32{0}
	m.starts[0] = 0
	lo, hi := 0, 1 // monomials of the previous degree
	for j := 1; j <= g; j++ {
		m.starts = append(m.starts, hi)
		for p := lo; p < hi; p++ {
			for t := max(last[p], 0); t < int32(d); t++ {
				// alpha = alpha_p + e_t; the multinomial coefficient
				// j!/alpha! = (j-1)!/alpha_p! * j / alpha_t.
				at := int32(1)
				if t == last[p] {
					at = alphaLast[p] + 1
				}
				m.parent = append(m.parent, int32(p))
				m.vari = append(m.vari, t)
				m.degree = append(m.degree, int32(j))
				m.multi = append(m.multi, m.multi[p]*float64(j)/float64(at))
				last = append(last, t)
				alphaLast = append(alphaLast, at)
			}
		}
		lo, hi = hi, len(m.parent)
	}
	m.starts = append(m.starts, len(m.parent))
	m.table = kernels.NewMonoTable(m.parent, m.vari, d)
	return m
}

// eval fills f[a] = x^alpha_a for the first r monomials (r a prefix size).
func (m *monomials) eval(x []float64, f []float64, r int) {
	f[0] = 1
	for a := 1; a < r; a++ {
		f[a] = f[m.parent[a]] * x[m.vari[a]]
	}
}

// evalBlock fills ht (r x cnt, monomial-major) with the first r monomials
// of cnt points given variable-major in xt (variable t's coordinates at
// xt[t*ldx:]): each monomial is its parent's row times one variable's row,
// a vector product over the points. A non-nil sums (length r) receives
// each row's sum.
func (m *monomials) evalBlock(xt []float64, ldx, cnt int, ht []float64, r int, sums []float64) []float64 {
	ht = ht[:r*cnt]
	for k := range cnt {
		ht[k] = 1
	}
	if sums != nil {
		sums[0] = float64(cnt)
	}
	for a := 1; a < r; a++ {
		row := ht[a*cnt : (a+1)*cnt]
		par := ht[int(m.parent[a])*cnt : int(m.parent[a])*cnt+cnt]
		x := xt[int(m.vari[a])*ldx : int(m.vari[a])*ldx+cnt]
		if sums != nil {
			sums[a] = kernels.MulSum64(row, par, x)
		} else {
			kernels.Mul64(row, par, x)
		}
	}
	return ht
}
