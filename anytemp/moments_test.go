package anytemp

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestMomentsMerged: the moments of every node down to the leaves, most
// of them translated up from smaller nodes (momentDirect), in a tree built
// serially and in parallel (9000 keys: the halves of nodes of momentSplit
// keys or more on two goroutines), agree with the sums over the node's keys of
// (k - z)^alpha (v, 1) computed directly, in two and three dimensions and
// for value widths with and without the nine-column path.
func TestMomentsMerged(t *testing.T) {
	for _, c := range []struct{ r, e, n int }{{2, 8, 9000}, {2, 3, 1100}, {3, 8, 1500}} {
		for _, par := range []bool{false, true} {
			rnd := rand.New(rand.NewPCG(uint64(c.r), uint64(c.e)))
			hd := &head{r: c.r, l: c.n, k: make([]float64, c.n*c.r)}
			for j := range hd.k {
				hd.k[j] = rnd.NormFloat64()
			}
			v := make([]float32, c.n*c.e)
			for j := range v {
				v[j] = float32(rnd.NormFloat64())
			}
			g := 9
			mo := newMonomials(c.r, g)
			tr := buildTree(hd, v, c.e, 0, c.n, g, mo, par)
			nt, w := mo.terms(g), c.e+1
			pw := make([]float64, nt)
			for i := range tr.lo {
				lo, hi := int(tr.lo[i]), int(tr.hi[i])
				if hi == lo {
					continue
				}
				got := tr.moments(i)
				want := make([]float64, nt*w)
				scale := make([]float64, nt*w) // sum of |terms|: the size of the rounding
				z := tr.centre[i*c.r : (i+1)*c.r]
				x := make([]float64, c.r)
				for j := lo; j < hi; j++ {
					for d := range x {
						x[d] = tr.keys[j*c.r+d] - z[d]
					}
					mo.powers(x, g, pw)
					for col := range w {
						vc := 1.0
						if col < c.e {
							vc = float64(tr.vals[j*c.e+col])
						}
						for a := range nt {
							want[col*nt+a] += pw[a] * vc
							scale[col*nt+a] += math.Abs(pw[a] * vc)
						}
					}
				}
				for k := range want {
					col, a := k/nt, k%nt
					if d := math.Abs(got[col*tr.ld+a] - want[k]); !(d <= 1e-11*scale[k]) {
						t.Fatalf("r=%d e=%d parallel=%v node %d (%d keys) column %d moment %d: %g, want %g (scale %g)",
							c.r, c.e, par, i, hi-lo, col, a, got[col*tr.ld+a], want[k], scale[k])
					}
				}
			}
		}
	}
}

// TestSplit: every internal node of a tree (two dimensions, the
// two-array path, and three, the general one), on keys with many ties
// (the widest coordinate equal but for one key, or a few values), halves
// its keys at a median:
// children's sizes differ by at most one, and along some coordinate no
// key of the left child exceeds a key of the right; the tree order holds
// every key with its own index.
func TestSplit(t *testing.T) {
	for _, c := range []struct {
		r    int
		keys string
	}{{2, "rounded"}, {3, "rounded"}, {2, "one apart"}, {2, "few values"}} {
		r := c.r
		rnd := rand.New(rand.NewPCG(uint64(r), 5))
		n := 3000
		hd := &head{r: r, l: n, k: make([]float64, n*r)}
		for j := range hd.k {
			switch c.keys {
			case "rounded":
				hd.k[j] = math.Round(rnd.NormFloat64() * 4) // ties
			case "one apart": // the widest coordinate equal but for one key
				hd.k[j] = rnd.NormFloat64() * 0.01
				if j%r == 0 {
					hd.k[j] = 0
					if j/r == n/2 {
						hd.k[j] = 1
					}
				}
			case "few values":
				hd.k[j] = float64(rnd.IntN(3))
			}
		}
		v := make([]float32, n)
		for j := range v {
			v[j] = float32(j)
		}
		tr := buildTree(hd, v, 1, 0, n, 2, newMonomials(r, 2), true)
		for x, j := range tr.perm {
			if tr.vals[x] != float32(j) || !slices.Equal(tr.keys[x*r:(x+1)*r], hd.k[int(j)*r:int(j+1)*r]) {
				t.Fatalf("r=%d %s: position %d: key or value of index %d misplaced", r, c.keys, x, j)
			}
		}
		for i := range tr.firstLeaf {
			a, b := 2*i+1, 2*i+2
			na, nb := tr.hi[a]-tr.lo[a], tr.hi[b]-tr.lo[b]
			if tr.hi[a] != tr.lo[b] || tr.lo[a] != tr.lo[i] || tr.hi[b] != tr.hi[i] || nb-na > 1 || na > nb {
				t.Fatalf("r=%d %s: node %d: children [%d,%d) and [%d,%d) of [%d,%d)", r, c.keys, i, tr.lo[a], tr.hi[a], tr.lo[b], tr.hi[b], tr.lo[i], tr.hi[i])
			}
			ok := false
			for d := range r {
				lmax, rmin := math.Inf(-1), math.Inf(1)
				for j := tr.lo[a]; j < tr.hi[a]; j++ {
					lmax = max(lmax, tr.keys[int(j)*r+d])
				}
				for j := tr.lo[b]; j < tr.hi[b]; j++ {
					rmin = min(rmin, tr.keys[int(j)*r+d])
				}
				ok = ok || lmax <= rmin
			}
			if !ok {
				t.Fatalf("r=%d %s: node %d: no coordinate separates its children", r, c.keys, i)
			}
		}
	}
}
