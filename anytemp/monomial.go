package anytemp

import (
	"fmt"
	"sync"
)

// monomials lists the multi-indices alpha in r dimensions with
// |alpha| <= maxDeg in graded order (all of degree 0, then 1, ...), so the
// terms of degree <= g are a prefix: upTo[g] of them.
//
// Each alpha other than 0 is built from a parent alpha - e_dim[a], dim being
// its last non-zero coordinate, so a table of monomials x^alpha (or of
// Taylor coefficients y^alpha / alpha!) costs one multiplication per term.
type monomials struct {
	r, maxDeg int
	upTo      []int // upTo[g] = number of alpha with |alpha| <= g
	parent    []int32
	dim       []int32
	pow       []int32 // alpha_dim: the exponent of dim in alpha (for 1/alpha!)
	exps      []int32 // exps[a*r+t] = alpha_t
	down      []int32 // down[t*terms+a] = index of alpha - e_t, or -1
	binom     [][]float64
}

// monomialTables holds the tables built by cachedMonomials, by [r, maxDeg].
var monomialTables sync.Map

// cachedMonomials is newMonomials built once per process for each r and
// maxDeg (tables are read-only once built; a plan asks for them per head).
func cachedMonomials(r, maxDeg int) *monomials {
	key := [2]int{r, maxDeg}
	if mo, ok := monomialTables.Load(key); ok {
		return mo.(*monomials)
	}
	mo, _ := monomialTables.LoadOrStore(key, newMonomials(r, maxDeg))
	return mo.(*monomials)
}

func newMonomials(r, maxDeg int) *monomials {
	mo := &monomials{r: r, maxDeg: maxDeg, upTo: make([]int, maxDeg+1)}
	type mi struct {
		exp  []int32
		last int
	}
	cur := []mi{{exp: make([]int32, r), last: 0}}
	mo.parent = append(mo.parent, -1)
	mo.dim = append(mo.dim, -1)
	mo.pow = append(mo.pow, 0)
	mo.upTo[0] = 1
	start := 0 // index of cur[0] in the global list
	for g := 1; g <= maxDeg; g++ {
		var next []mi
		nextStart := len(mo.parent)
		for pi, b := range cur {
			for t := b.last; t < r; t++ {
				e := append([]int32(nil), b.exp...)
				e[t]++
				next = append(next, mi{exp: e, last: t})
				mo.parent = append(mo.parent, int32(start+pi))
				mo.dim = append(mo.dim, int32(t))
				mo.pow = append(mo.pow, e[t])
			}
		}
		cur, start = next, nextStart
		mo.upTo[g] = len(mo.parent)
	}
	nt := len(mo.parent)
	mo.exps = make([]int32, nt*r)
	for a := 1; a < nt; a++ {
		copy(mo.exps[a*r:(a+1)*r], mo.exps[int(mo.parent[a])*r:int(mo.parent[a]+1)*r])
		mo.exps[a*r+int(mo.dim[a])]++
	}
	index := map[string]int32{}
	keyOf := func(e []int32) string { return fmt.Sprint(e) }
	for a := range nt {
		index[keyOf(mo.exps[a*r:(a+1)*r])] = int32(a)
	}
	mo.down = make([]int32, r*nt)
	e := make([]int32, r)
	for t := range r {
		for a := range nt {
			copy(e, mo.exps[a*r:(a+1)*r])
			mo.down[t*nt+a] = -1
			if e[t] > 0 {
				e[t]--
				mo.down[t*nt+a] = index[keyOf(e)]
			}
		}
	}
	mo.binom = make([][]float64, maxDeg+1)
	for n := range mo.binom {
		mo.binom[n] = make([]float64, n+1)
		mo.binom[n][0], mo.binom[n][n] = 1, 1
		for k := 1; k < n; k++ {
			mo.binom[n][k] = mo.binom[n-1][k-1] + mo.binom[n-1][k]
		}
	}
	return mo
}

// translate rewrites moments about a centre z (term-major: the w columns
// of term alpha at m[alpha*w:(alpha+1)*w]) as moments about z - a, in
// place:
// sum_j (k_j - z + a)^alpha = sum_{beta <= alpha} C(alpha, beta) a^(alpha-beta) sum_j (k_j - z)^beta,
// one coordinate at a time. pw is scratch of length g+1.
func (mo *monomials) translate(m []float64, w, g int, a, pw []float64) {
	nt := mo.upTo[g]
	r := mo.r
	var sa [16]float64
	for t := range r {
		if a[t] == 0 {
			continue
		}
		pw[0] = 1
		for k := 1; k <= g; k++ {
			pw[k] = pw[k-1] * a[t]
		}
		down := mo.down[t*len(mo.parent):]
		// Higher indices first: alpha - k e_t comes earlier in the
		// graded order, so it still holds the old value. Each sum starts
		// from the term's own moment and adds the k = 1, 2, ... terms in
		// order (the rounding bound counts on it), the w columns side by
		// side.
		for al := nt - 1; al > 0; al-- {
			at := int(mo.exps[al*r+t])
			if at == 0 {
				continue
			}
			b := mo.binom[at]
			dst := m[al*w : (al+1)*w]
			j := al
			if w == 9 {
				// Nine scalars (an array would live in memory).
				d := (*[9]float64)(dst)
				s0, s1, s2, s3, s4, s5, s6, s7, s8 := d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8]
				for k := 1; k <= at; k++ {
					j = int(down[j])
					f := b[k] * pw[k]
					x := (*[9]float64)(m[j*9 : j*9+9])
					s0 += f * x[0]
					s1 += f * x[1]
					s2 += f * x[2]
					s3 += f * x[3]
					s4 += f * x[4]
					s5 += f * x[5]
					s6 += f * x[6]
					s7 += f * x[7]
					s8 += f * x[8]
				}
				d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8] = s0, s1, s2, s3, s4, s5, s6, s7, s8
				continue
			}
			s := sa[:min(w, len(sa))]
			if w > len(sa) {
				s = make([]float64, w)
			}
			copy(s, dst)
			for k := 1; k <= at; k++ {
				j = int(down[j])
				f := b[k] * pw[k]
				for c, x := range m[j*w : j*w+w] {
					s[c] += f * x
				}
			}
			copy(dst, s)
		}
	}
}

// terms returns the number of multi-indices of degree <= g.
func (mo *monomials) terms(g int) int { return mo.upTo[g] }

// coefficients fills c (length terms(g)) with y^alpha / alpha!, the
// coefficients of the multivariate Taylor expansion
// exp(y.x) = sum_alpha y^alpha/alpha! x^alpha.
func (mo *monomials) coefficients(y []float64, g int, c []float64) {
	c[0] = 1
	for a := 1; a < mo.upTo[g]; a++ {
		t := mo.dim[a]
		c[a] = c[mo.parent[a]] * y[t] / float64(mo.pow[a])
	}
}

// quotients fills yk[t*(maxDeg+1)+k] = y_t * (1/k) for k = from+1..g,
// the factors of coefficientsFrom: a product by the rounded reciprocal
// instead of a division (a division per coordinate and degree was 2% of a
// run), so two roundings, which kNodeBase counts.
func (mo *monomials) quotients(y []float64, from, g int, yk []float64) {
	stride := mo.maxDeg + 1
	inv := reciprocals[:]
	if g >= len(inv) {
		inv = make([]float64, g+1)
		for k := 1; k <= g; k++ {
			inv[k] = 1 / float64(k)
		}
	}
	for t, yt := range y {
		row := yk[t*stride : (t+1)*stride]
		for k := max(from+1, 1); k <= g; k++ {
			row[k] = yt * inv[k]
		}
	}
}

// reciprocals[k] is 1/k rounded, for the degrees of most trees.
var reciprocals = func() (r [33]float64) {
	for k := 1; k < len(r); k++ {
		r[k] = 1 / float64(k)
	}
	return r
}()

// coefficientsFrom fills the Taylor coefficients of degrees from+1..g into
// c, those of degree <= from being there already (from = -1: none), from
// the quotients yk of quotients: c_alpha = c_parent * (y_t / alpha_t),
// three roundings per degree (the reciprocal, the quotient, the product),
// with one product per coordinate and degree for the quotients instead of
// a division per term.
func (mo *monomials) coefficientsFrom(yk []float64, from, g int, c []float64) {
	if from < 0 {
		c[0] = 1
	}
	if mo.r == 2 {
		// Degree k is (k,0), (k-1,1), ..., (0,k): (k,0)'s parent is
		// (k-1,0), (k-j,j)'s is (k-j,j-1), entry j-1 of degree k-1, so the
		// same products as the loop below run without its index tables.
		stride := mo.maxDeg + 1
		q0, q1 := yk[:stride], yk[stride:2*stride]
		for k := max(from+1, 1); k <= g; k++ {
			prev := (k - 1) * k / 2
			src := c[prev : prev+k]
			c[prev+k] = src[0] * q0[k]
			dst := c[prev+k+1 : prev+2*k+1]
			q := q1[1 : k+1]
			dst, q = dst[:len(src)], q[:len(src)]
			for j, x := range src {
				dst[j] = x * q[j]
			}
		}
		return
	}
	mo.coefficientsChain(yk, from, g, c)
}

// coefficientsChain is coefficientsFrom through the parent and dimension
// tables, for any r (c[0] set already).
func (mo *monomials) coefficientsChain(yk []float64, from, g int, c []float64) {
	a := 1
	if from >= 0 {
		a = max(a, mo.upTo[from])
	}
	stride := int32(mo.maxDeg + 1)
	parent, dim, pow := mo.parent, mo.dim, mo.pow
	c = c[:mo.upTo[g]]
	for ; a < len(c); a++ {
		c[a] = c[parent[a]] * yk[dim[a]*stride+pow[a]]
	}
}

// powers fills x (length terms(g)) with x^alpha for the point w.
func (mo *monomials) powers(w []float64, g int, x []float64) {
	x[0] = 1
	if mo.r == 2 {
		// Degree k is (k,0), (k-1,1), ..., (0,k), after degree k-1.
		a, b := w[0], w[1]
		prev := 0
		for k := 1; k <= g; k++ {
			cur := prev + k
			src := x[prev : prev+k]
			dst := x[cur : cur+k+1]
			for j, v := range src {
				dst[j] = v * a
			}
			dst[k] = src[k-1] * b
			prev = cur
		}
		return
	}
	for a := 1; a < mo.upTo[g]; a++ {
		x[a] = x[mo.parent[a]] * w[mo.dim[a]]
	}
}
