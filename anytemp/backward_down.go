package anytemp

import (
	"sync/atomic"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/parallel"
)

// The backward pass, phase 2: local expansions translated down each tree
// and evaluated at the keys (dK, dV).

// downward translates the local expansions of bt down to its leaves and
// evaluates them at every key below a node that received one, adding dV
// and dK into the head's accumulator. It returns the number of nodes that
// held an expansion, of keys evaluated and of flops.
func (hb *bwdHead[T]) downward(bt *bwdTree[T], workers int) (held, evaluated, flops int64) {
	if bt.loc == nil {
		return 0, 0, 0
	}
	tr := bt.tr
	nodes := len(tr.lo)
	sub := make([]bool, nodes) // the node or a descendant has an expansion
	for i := nodes - 1; i >= 0; i-- {
		if bt.loc[i] != nil {
			sub[i] = true
			held++
		}
		if i < tr.firstLeaf && (sub[2*i+1] || sub[2*i+2]) {
			sub[i] = true
		}
	}
	if !sub[0] {
		return held, 0, 0
	}
	// Split the top of the tree among the workers: the subtrees below
	// level lv are independent (disjoint keys).
	lv := 0
	for 1<<lv < 4*workers && lv < tr.depth {
		lv++
	}
	if workers == 1 {
		lv = 0
	}
	var nEval, nFlops atomic.Int64
	first := (1 << lv) - 1
	// The complete expansions of the nodes of level lv (their ancestors'
	// translated plus their own), computed serially.
	ds := newDownState(hb, tr.depth)
	starts := make([][]float64, 1<<lv)
	var walk func(i, depth int, cur []float64)
	walk = func(i, depth int, cur []float64) {
		if depth == lv {
			if cur != nil {
				starts[i-first] = append([]float64(nil), cur...)
			}
			return
		}
		z := tr.centre[i*hb.d : (i+1)*hb.d]
		for _, c := range []int{2*i + 1, 2*i + 2} {
			if tr.hi[c] > tr.lo[c] {
				walk(c, depth+1, ds.combine(bt, c, depth+1, cur, z))
			}
		}
	}
	walk(0, 0, ds.combine(bt, 0, 0, nil, nil))
	var c parallel.Crew
	c.Work = func(int) {
		st := ds
		if lv > 0 {
			st = newDownState(hb, tr.depth)
			defer func() { nFlops.Add(st.flops) }()
		}
		for {
			x, ok := c.Take(1 << lv)
			if !ok {
				return
			}
			nEval.Add(st.visit(bt, sub, first+x, lv, starts[x]))
		}
	}
	c.Run(min(workers, 1<<lv))
	return held, nEval.Load(), nFlops.Load() + ds.flops
}

// downState is the scratch space of one downward walk: one expansion per
// depth, and the evaluation tables.
type downState[T attn.Float] struct {
	hb    *bwdHead[T]
	level [][]float64
	a, pw []float64
	y, pk []float64
	comb  []float64
	fac   []float64 // fac[t*terms(G)+a] = alpha_t + 1
	flops int64
}

func newDownState[T attn.Float](hb *bwdHead[T], depth int) *downState[T] {
	ntB := hb.mo.terms(hb.deg + 1)
	ds := &downState[T]{hb: hb, level: make([][]float64, depth+2),
		a: make([]float64, hb.d), pw: make([]float64, hb.deg+2),
		y: make([]float64, hb.d), pk: make([]float64, ntB), comb: make([]float64, ntB)}
	for x := range ds.level {
		ds.level[x] = make([]float64, ntB*(hb.e+1))
	}
	nt := hb.mo.terms(hb.deg)
	ds.fac = make([]float64, hb.d*nt)
	for t := range hb.d {
		for a := range nt {
			ds.fac[t*nt+a] = float64(hb.mo.exps[a*hb.d+t] + 1)
		}
	}
	return ds
}

// combine returns node i's complete expansion: the parent's (about pz)
// translated to node i's centre plus node i's own, in ds.level[depth];
// nil if both are absent.
func (ds *downState[T]) combine(bt *bwdTree[T], i, depth int, parent, pz []float64) []float64 {
	hb := ds.hb
	own := bt.loc[i]
	if parent == nil && own == nil {
		return nil
	}
	cur := ds.level[depth]
	if parent != nil {
		copy(cur, parent)
		z := bt.tr.centre[i*hb.d : (i+1)*hb.d]
		for t := range hb.d {
			ds.a[t] = z[t] - pz[t]
		}
		hb.localShift(cur, ds.a, ds.pw)
		ds.flops += hb.shiftFlops
	} else {
		clear(cur)
	}
	if own != nil {
		for x, v := range own {
			cur[x] += v
		}
		ds.flops += int64(len(own))
	}
	return cur
}

// visit walks the subtree of node i, at the given depth, whose complete
// expansion is cur (nil if none), evaluating at the leaves. Children
// write deeper levels only, so cur stays valid.
func (ds *downState[T]) visit(bt *bwdTree[T], sub []bool, i, depth int, cur []float64) int64 {
	tr := bt.tr
	if cur == nil && !sub[i] {
		return 0
	}
	if i >= tr.firstLeaf {
		if cur == nil {
			return 0
		}
		return ds.evalLeaf(bt, i, cur)
	}
	z := tr.centre[i*ds.hb.d : (i+1)*ds.hb.d]
	var n int64
	for _, c := range []int{2*i + 1, 2*i + 2} {
		if tr.hi[c] > tr.lo[c] && (cur != nil || sub[c]) {
			n += ds.visit(bt, sub, c, depth+1, ds.combine(bt, c, depth+1, cur, z))
		}
	}
	return n
}

// evalLeaf evaluates the expansion loc (about leaf i's centre) at the
// leaf's keys: dV_j += F_dO(k_j), dK_j += grad F_dO(k_j).v_j - grad F_Delta(k_j).
func (ds *downState[T]) evalLeaf(bt *bwdTree[T], i int, loc []float64) int64 {
	hb := ds.hb
	tr := bt.tr
	d, e := hb.d, hb.e
	gb := hb.deg + 1
	ntB := hb.mo.terms(gb)
	nt := hb.mo.terms(hb.deg)
	wd := d + e
	z := tr.centre[i*d : (i+1)*d]
	lo, hi := int(tr.lo[i]), int(tr.hi[i])
	for x := lo; x < hi; x++ {
		for t := range d {
			ds.y[t] = tr.keys[x*d+t] - z[t]
		}
		hb.mo.powers(ds.y, gb, ds.pk)
		j := int(tr.perm[x])
		acc := hb.acc[j*wd : (j+1)*wd]
		v := tr.vals[x*e : (x+1)*e]
		comb := ds.comb
		for a, l := range loc[e*ntB : (e+1)*ntB] {
			comb[a] = -l
		}
		for c := range e {
			col := loc[c*ntB : (c+1)*ntB]
			acc[d+c] += dotU(col, ds.pk)
			axpy(comb, col, float64(v[c]))
		}
		for t := range d {
			up := hb.up[t*ntB : t*ntB+nt]
			fac := ds.fac[t*nt : (t+1)*nt]
			var s float64
			for a, u := range up {
				s += fac[a] * comb[u] * ds.pk[a]
			}
			acc[t] += s
		}
	}
	ds.flops += int64(hi-lo) * hb.evalFlops
	return int64(hi - lo)
}

// localShift re-centres a local expansion (columns of stride
// terms(G+1)): the polynomial sum_alpha L_alpha y^alpha in y = k - z_p is
// rewritten in y' = k - z_c with y = y' + a, a = z_c - z_p, one
// coordinate at a time: L'_beta = sum_m C(beta_t + m, m) a_t^m L_(beta + m e_t).
// Ascending graded order keeps the higher terms unchanged until used.
func (hb *bwdHead[T]) localShift(loc, a, pw []float64) {
	mo := hb.mo
	d := hb.d
	gb := hb.deg + 1
	ntB := mo.terms(gb)
	for t := range d {
		if a[t] == 0 {
			continue
		}
		pw[0] = 1
		for k := 1; k <= gb; k++ {
			pw[k] = pw[k-1] * a[t]
		}
		up := hb.up[t*ntB : (t+1)*ntB]
		for c := range hb.e + 1 {
			col := loc[c*ntB : (c+1)*ntB]
			for be := range ntB {
				bt := int(mo.exps[be*d+t])
				s := col[be]
				j := be
				for m := 1; ; m++ {
					j = int(up[j])
					if j < 0 {
						break
					}
					s += mo.binom[bt+m][m] * pw[m] * col[j]
				}
				col[be] = s
			}
		}
	}
}
