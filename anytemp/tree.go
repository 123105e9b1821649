package anytemp

import (
	"math"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/kernels"
)

// leafSize is the largest number of keys in a leaf: leaves are summed key
// by key (brute force) unless a low-degree expansion is cheaper.
const leafSize = 16

// momentBudget caps terms(G) * (e+1), the float64s stored per node whose
// moments are used: the degree G of a tree is the largest with
// terms(G) * (e+1) <= momentBudget and G <= maxDegree(r).
const momentBudget = 4096

// maxDegree is the largest expansion degree per dimension, for wide
// windows (low temperature: most rows expand many nodes, so a high degree,
// which lets wider nodes be expanded, pays) and for narrow ones (high
// temperature: few rows expand, and computing moments of high degree for
// the nodes they touch would dominate).
func maxDegree(r int, wide bool) int {
	hi := []int{0, 24, 20, 9, 7, 5, 5}
	lo := []int{0, 12, 10, 5, 4, 3, 3}
	if r >= len(hi) {
		return 3
	}
	if wide {
		return hi[r]
	}
	return lo[r]
}

// degreeFor returns the degree G used for trees of dimension r with e
// value columns, and the monomial table.
func degreeFor(r, e int, wide bool) (int, *monomials) {
	g := maxDegree(r, wide)
	// terms(g) = C(r+g, g), counted without building the table (which
	// for r = 64 holds tens of thousands of monomials).
	for g > 0 && binomial(r+g, g)*float64(e+1) > momentBudget {
		g--
	}
	return g, cachedMonomials(r, g)
}

// momentDirect is the most keys whose moments a node sums directly (one
// matrix product of the values by the keys' monomials); larger nodes
// translate their children's. In whole runs at d = 2, e = 8, n = 2^16
// (single worker, alternating, under load), 512 took about 3% less CPU
// than 256 or 1024 at degree 16, and 1024 about 2% less than 512 at
// degree 20, whose translations cost more: fewer of them, while most nodes
// rows expand below it still come out of the merges.
const momentDirect = 1024

// kNodeBase is the operation count in the rounding bound of a node's
// expansion: moments summed directly (at most momentDirect terms, g+1
// products per monomial, k - z), then translated up to depth log2(l)
// levels (r passes of at most g+2 operations each), the Taylor
// coefficients (g+1 products; their quotients y_t (1/k) add a rounding
// per degree, hence 3g rather than 2g), the sum over terms and the
// exponential factor.
func kNodeBase(r, g int, mo *monomials, l int) float64 {
	depth := math.Ceil(math.Log2(float64(max(l, 2)))) + 1
	return float64(momentDirect+3*g+r+16) + depth*float64(r*(g+3)) + float64(mo.terms(g))
}

// tree is a kd-tree over the keys of one block (a contiguous range of one
// head's keys), stored in an implicit complete binary layout: node i has
// children 2i+1 and 2i+2, every leaf is at depth depth and holds the keys
// lo[i]..hi[i]-1 of the tree order. Boxes are tight bounding boxes given
// as centre and half-widths (rounded outwards).
type tree[T attn.Float] struct {
	r, e, n   int
	depth     int
	firstLeaf int
	keys      []float64 // n*r, tree order
	vals      []T       // n*e, tree order
	lo, hi    []int32
	perm      []int32   // perm[x]: index in the head of the key at tree position x
	centre    []float64 // nodes*r
	half      []float64 // nodes*r
	rad       []float64 // nodes: max_j |k_j - centre|_2 (rounded up)
	nd        []float64 // nodes*(2r+1): centre, half, rad packed for the traversal
	g         int       // moment degree
	ld        int       // column stride of the moments: terms(g) rounded up to 8
	mo        *monomials
	mom       []atomic.Pointer[[]float64]
	momOnce   []sync.Once  // one computation per node: racing workers wait for it
	parallel  bool         // large nodes' moments may use a second goroutine
	momNodes  atomic.Int64 // nodes whose moments were computed
	momFlops  atomic.Int64

	// r == 1 only: keys sorted ascending, with double-double prefix sums
	// of the values: sum_{l<j} v_l = preHi[j] + preLo[j] (per column).
	preHi, preLo []float64
}

// buildTree builds the tree over keys start..start+count-1 of hd, with
// values from v (the head's m x e values).
func buildTree[T attn.Float](hd *head, v []T, e, start, count, g int, mo *monomials, parallel bool) *tree[T] {
	r := hd.r
	tr := &tree[T]{r: r, e: e, n: count, g: g, ld: alignedStride(mo.terms(g)), mo: mo, parallel: parallel}
	for (count+(1<<tr.depth)-1)>>tr.depth > leafSize {
		tr.depth++
	}
	nodes := (1 << (tr.depth + 1)) - 1
	tr.firstLeaf = (1 << tr.depth) - 1
	tr.lo = make([]int32, nodes)
	tr.hi = make([]int32, nodes)
	tr.centre = make([]float64, nodes*r)
	tr.half = make([]float64, nodes*r)
	tr.rad = make([]float64, nodes)
	tr.mom = make([]atomic.Pointer[[]float64], nodes)
	tr.momOnce = make([]sync.Once, nodes)
	tr.keys = make([]float64, count*r)
	copy(tr.keys, hd.k[start*r:(start+count)*r])
	perm := make([]int32, count)
	for i := range perm {
		perm[i] = int32(start + i)
	}
	if r == 2 {
		// Coordinates in two arrays: a partition compares one and moves
		// both with the indices, without branches.
		xs, ys := make([]float64, count), make([]float64, count)
		for j := range xs {
			xs[j], ys[j] = tr.keys[2*j], tr.keys[2*j+1]
		}
		tr.split2(0, 0, count, [2][]float64{xs, ys}, perm, parallel)
		for j := range xs {
			tr.keys[2*j], tr.keys[2*j+1] = xs[j], ys[j]
		}
	} else {
		tr.split(0, 0, count, perm, parallel)
	}
	tr.perm = perm
	tr.vals = make([]T, count*e)
	for i, j := range perm {
		copy(tr.vals[i*e:(i+1)*e], v[int(j)*e:int(j+1)*e])
	}
	tr.boxes()
	tr.nd = make([]float64, nodes*(2*r+1))
	for i := range nodes {
		nd := tr.nd[i*(2*r+1) : (i+1)*(2*r+1)]
		copy(nd[:r], tr.centre[i*r:(i+1)*r])
		copy(nd[r:2*r], tr.half[i*r:(i+1)*r])
		nd[2*r] = tr.rad[i]
	}
	if r == 1 {
		tr.prefixSums()
	}
	return tr
}

// split partitions keys lo..hi-1 for node i at the median of the widest
// coordinate, recursively.
func (tr *tree[T]) split(i, lo, hi int, perm []int32, parallel bool) {
	tr.lo[i], tr.hi[i] = int32(lo), int32(hi)
	if i >= tr.firstLeaf {
		return
	}
	r := tr.r
	dim, widest := 0, -1.0
	for t := range r {
		a, b := math.Inf(1), math.Inf(-1)
		for j := lo; j < hi; j++ {
			x := tr.keys[j*r+t]
			a, b = min(a, x), max(b, x)
		}
		if b-a > widest {
			dim, widest = t, b-a
		}
	}
	mid := lo + (hi-lo)/2
	if widest > 0 {
		tr.selectKth(lo, hi, mid, dim, perm)
	}
	if parallel && hi-lo > 1<<15 {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); tr.split(2*i+1, lo, mid, perm, true) }()
		tr.split(2*i+2, mid, hi, perm, true)
		wg.Wait()
		return
	}
	tr.split(2*i+1, lo, mid, perm, parallel)
	tr.split(2*i+2, mid, hi, perm, parallel)
}

// split2 is split for r = 2, the coordinates in xy[0] and xy[1].
func (tr *tree[T]) split2(i, lo, hi int, xy [2][]float64, perm []int32, parallel bool) {
	tr.lo[i], tr.hi[i] = int32(lo), int32(hi)
	if i >= tr.firstLeaf {
		return
	}
	a0, b0 := math.Inf(1), math.Inf(-1)
	a1, b1 := a0, b0
	ys := xy[1][lo:hi]
	for j, x := range xy[0][lo:hi] {
		y := ys[j]
		if x < a0 {
			a0 = x
		}
		if x > b0 {
			b0 = x
		}
		if y < a1 {
			a1 = y
		}
		if y > b1 {
			b1 = y
		}
	}
	dim, widest := 0, b0-a0
	if b1-a1 > widest {
		dim, widest = 1, b1-a1
	}
	mid := lo + (hi-lo)/2
	if widest > 0 {
		selectKth2(xy[dim][lo:hi], xy[1-dim][lo:hi], perm[lo:hi], mid-lo)
	}
	if parallel && hi-lo > 1<<15 {
		var wg sync.WaitGroup
		wg.Go(func() { tr.split2(2*i+1, lo, mid, xy, perm, true) })
		tr.split2(2*i+2, mid, hi, xy, perm, true)
		wg.Wait()
		return
	}
	tr.split2(2*i+1, lo, mid, xy, perm, parallel)
	tr.split2(2*i+2, mid, hi, xy, perm, parallel)
}

// selectKth2 is selectKth for two coordinates: c (the one compared) and o
// are moved with perm so that c[k] is the k-th smallest of c, those before
// it are <= and those after >=. Partitions are branch-free (Lomuto's
// scheme with an unconditional swap, the sign of c - pivot counting the
// smaller ones: random keys would mispredict half the branches of
// Hoare's), the pivot the median of three.
func selectKth2(c, o []float64, perm []int32, k int) {
	swap := func(a, b int) {
		c[a], c[b] = c[b], c[a]
		o[a], o[b] = o[b], o[a]
		perm[a], perm[b] = perm[b], perm[a]
	}
	lo, hi := 0, len(c)-1
	for hi-lo > 16 {
		m := lo + (hi-lo)/2
		if c[m] < c[lo] {
			swap(m, lo)
		}
		if c[hi] < c[lo] {
			swap(hi, lo)
		}
		if c[hi] < c[m] {
			swap(hi, m)
		}
		// c[lo] <= pivot <= c[hi]: lo+1..hi-2 partitioned around the
		// pivot, parked at hi-1. Equal keys may go either way (x - x is
		// +0, -0 - +0 is -0): both sides of a median may hold them.
		swap(m, hi-1)
		pivot := c[hi-1]
		i := lo + 1
		cs, os, ps := c[:hi-1], o[:hi-1], perm[:hi-1]
		for j := lo + 1; j < len(cs); j++ {
			tc, to, tp := cs[j], os[j], ps[j]
			cs[j], os[j], ps[j] = cs[i], os[i], ps[i]
			cs[i], os[i], ps[i] = tc, to, tp
			i += int(math.Float64bits(tc-pivot) >> 63)
		}
		swap(i, hi-1)
		if k > i && i-lo < (hi-lo)/16 {
			// Few keys below the pivot: it may be a value many keys
			// share, which the strict partition leaves all on the right
			// (a range of equal keys would then shrink by one key a
			// pass). Gather the keys equal to it after it, branch-free:
			// if k falls among them, it is placed.
			e := i + 1
			cs, os, ps := c[:hi+1], o[:hi+1], perm[:hi+1]
			for j := i + 1; j < len(cs); j++ {
				tc, to, tp := cs[j], os[j], ps[j]
				cs[j], os[j], ps[j] = cs[e], os[e], ps[e]
				cs[e], os[e], ps[e] = tc, to, tp
				e += int(math.Float64bits(pivot-tc)>>63) ^ 1 // tc <= pivot
			}
			if k < e {
				return
			}
			lo = e
			continue
		}
		switch {
		case k < i:
			hi = i - 1
		case k > i:
			lo = i + 1
		default:
			return
		}
	}
	for a := lo + 1; a <= hi; a++ {
		for b := a; b > lo && c[b] < c[b-1]; b-- {
			swap(b, b-1)
		}
	}
}

func (tr *tree[T]) swap(a, b int, perm []int32) {
	r := tr.r
	for t := range r {
		tr.keys[a*r+t], tr.keys[b*r+t] = tr.keys[b*r+t], tr.keys[a*r+t]
	}
	perm[a], perm[b] = perm[b], perm[a]
}

// selectKth reorders keys lo..hi-1 so that key k has the k-th smallest
// coordinate dim, the ones before it are <= and the ones after are >=.
func (tr *tree[T]) selectKth(lo, hi, k, dim int, perm []int32) {
	r := tr.r
	x := func(j int) float64 { return tr.keys[j*r+dim] }
	hi--
	for hi > lo {
		// Median of three as the pivot, Hoare partition.
		m := lo + (hi-lo)/2
		if x(m) < x(lo) {
			tr.swap(m, lo, perm)
		}
		if x(hi) < x(lo) {
			tr.swap(hi, lo, perm)
		}
		if x(hi) < x(m) {
			tr.swap(hi, m, perm)
		}
		pivot := x(m)
		i, j := lo, hi
		for i <= j {
			for x(i) < pivot {
				i++
			}
			for x(j) > pivot {
				j--
			}
			if i <= j {
				tr.swap(i, j, perm)
				i++
				j--
			}
		}
		switch {
		case k <= j:
			hi = j
		case k >= i:
			lo = i
		default:
			return
		}
	}
}

// boxes computes bounding boxes bottom-up. Half-widths are rounded up so
// that |k_t - centre_t| <= half_t holds in exact arithmetic for every key.
func (tr *tree[T]) boxes() {
	r := tr.r
	nodes := len(tr.lo)
	bmin := make([]float64, nodes*r)
	bmax := make([]float64, nodes*r)
	for i := nodes - 1; i >= 0; i-- {
		a, b := bmin[i*r:(i+1)*r], bmax[i*r:(i+1)*r]
		if i >= tr.firstLeaf {
			for t := range r {
				a[t], b[t] = math.Inf(1), math.Inf(-1)
			}
			for j := tr.lo[i]; j < tr.hi[i]; j++ {
				for t := range r {
					x := tr.keys[int(j)*r+t]
					a[t], b[t] = min(a[t], x), max(b[t], x)
				}
			}
		} else {
			l, rt := 2*i+1, 2*i+2
			for t := range r {
				a[t] = min(bmin[l*r+t], bmin[rt*r+t])
				b[t] = max(bmax[l*r+t], bmax[rt*r+t])
			}
		}
		for t := range r {
			if a[t] > b[t] { // empty node: a zero box at the origin
				tr.centre[i*r+t], tr.half[i*r+t] = 0, 0
				continue
			}
			c := 0.5 * (a[t] + b[t])
			tr.centre[i*r+t] = c
			tr.half[i*r+t] = max(b[t]-c, c-a[t]) * (1 + 4*u64)
		}
	}
	// Ball radii about the box centres: from the keys at the leaves, then
	// R_p <= max_c |z_c - z_p| + R_c up the tree. A node's keys lie in
	// the intersection of its box and its ball.
	for i := nodes - 1; i >= 0; i-- {
		z := tr.centre[i*r : (i+1)*r]
		var rad float64
		if i >= tr.firstLeaf {
			var r2 float64
			for j := tr.lo[i]; j < tr.hi[i]; j++ {
				var s2 float64
				for t := range r {
					x := tr.keys[int(j)*r+t] - z[t]
					s2 += x * x
				}
				r2 = max(r2, s2)
			}
			rad = math.Sqrt(r2)
		} else {
			for _, c := range []int{2*i + 1, 2*i + 2} {
				if tr.hi[c] == tr.lo[c] {
					continue
				}
				var s2 float64
				for t := range r {
					x := tr.centre[c*r+t] - z[t]
					s2 += x * x
				}
				rad = max(rad, math.Sqrt(s2)+tr.rad[c])
			}
		}
		tr.rad[i] = rad * (1 + float64(4*r+16)*u64)
	}
	if r == 1 {
		// Leaves are ordered, their keys not yet: sort each leaf.
		for i := tr.firstLeaf; i < nodes; i++ {
			lo, hi := int(tr.lo[i]), int(tr.hi[i])
			for j := lo + 1; j < hi; j++ {
				for k := j; k > lo && tr.keys[k] < tr.keys[k-1]; k-- {
					tr.keys[k], tr.keys[k-1] = tr.keys[k-1], tr.keys[k]
					tr.perm[k], tr.perm[k-1] = tr.perm[k-1], tr.perm[k]
					e := tr.e
					for c := range e {
						tr.vals[k*e+c], tr.vals[(k-1)*e+c] = tr.vals[(k-1)*e+c], tr.vals[k*e+c]
					}
				}
			}
		}
	}
}

// prefixSums builds double-double prefix sums of the values (r == 1).
func (tr *tree[T]) prefixSums() {
	e := tr.e
	tr.preHi = make([]float64, (tr.n+1)*e)
	tr.preLo = make([]float64, (tr.n+1)*e)
	for j := range tr.n {
		for c := range e {
			s, err := twoSum(tr.preHi[j*e+c], float64(tr.vals[j*e+c]))
			lo := tr.preLo[j*e+c] + err
			tr.preHi[(j+1)*e+c], tr.preLo[(j+1)*e+c] = fastTwoSum(s, lo)
		}
	}
}

// rangeSum returns sum_{a<=l<b} v_lc from the prefix sums, accurate to a
// few units in the last place of the result (plus ~L^2 u^2 of the total).
func (tr *tree[T]) rangeSum(a, b, c int) float64 {
	e := tr.e
	s, err := twoSum(tr.preHi[b*e+c], -tr.preHi[a*e+c])
	return s + (err + (tr.preLo[b*e+c] - tr.preLo[a*e+c]))
}

func twoSum(a, b float64) (float64, float64) {
	s := a + b
	bb := s - a
	return s, (a - (s - bb)) + (b - bb)
}

func fastTwoSum(a, b float64) (float64, float64) {
	s := a + b
	return s, b - (s - a)
}

// moments returns node i's moments about its centre z, computed on first
// use, column-major: mom[c*ld + a] is sum_j (k_j - z)^alpha_a v_jc
// for c < e and sum_j (k_j - z)^alpha_a for c = e, alpha in graded order.
// A worker that needs a node another is computing waits for it rather
// than computing it again (the first rows of a run all want the root's);
// a large node's two halves are then computed by two goroutines, so the
// waiting worker's core is not idle.
func (tr *tree[T]) moments(i int) []float64 {
	if p := tr.mom[i].Load(); p != nil {
		return *p
	}
	tr.momOnce[i].Do(func() {
		m := tr.computeMoments(i)
		tr.mom[i].Store(&m)
		tr.momNodes.Add(1)
	})
	return *tr.mom[i].Load()
}

// momentSplit is the fewest keys of a node whose children's moments are
// computed by two goroutines (in a parallel tree): about a millisecond of
// work each at d = 2, e = 8.
const momentSplit = 1 << 12

func (tr *tree[T]) computeMoments(i int) []float64 {
	if i < tr.firstLeaf && tr.hi[i]-tr.lo[i] > momentDirect {
		return tr.mergeMoments(i)
	}
	// The keys' monomials are built a monomial at a time over a chunk of
	// momentChunk keys (each its parent's times one coordinate,
	// vectorised), so they are held transposed (terms(g) x keys), and M
	// (terms(g) x e+1) += monomials times [V 1] (keys x e+1) is a product
	// whose wide operand needs no packing (as A B^T it did: 8% of a run at
	// d = 2, e = 8); M is then transposed into the moments' column-major
	// layout. Chunks keep the monomials in cache between their products
	// and the GEMM (a whole node's, 600 KB at 512 keys, were rebuilt
	// through L2 at a fraction of the multiply rate).
	r, e, g := tr.r, tr.e, tr.g
	w := e + 1
	nt, ld := tr.mo.terms(g), tr.ld
	out := alignedFloats(ld * w)
	lo, hi := int(tr.lo[i]), int(tr.hi[i])
	cnt := hi - lo
	kc := min(cnt, momentChunk)
	bp := momentScratch.Get().(*[]float64)
	if need := kc*(nt+w+r) + nt*w; cap(*bp) < need {
		*bp = make([]float64, need)
	}
	buf := (*bp)[:kc*(nt+w+r)+nt*w]
	pwT, vt, xT, m := buf[:kc*nt], buf[kc*nt:kc*(nt+w)], buf[kc*(nt+w):kc*(nt+w+r)], buf[kc*(nt+w+r):]
	z := tr.centre[i*r : (i+1)*r]
	mo := tr.mo
	clear(m)
	for c0 := lo; c0 < hi; c0 += kc {
		n := min(kc, hi-c0)
		for j := range n {
			for t := range r {
				xT[t*n+j] = tr.keys[(c0+j)*r+t] - z[t]
			}
			for c, vc := range tr.vals[(c0+j)*e : (c0+j+1)*e] {
				vt[j*w+c] = float64(vc)
			}
			vt[j*w+e] = 1
			pwT[j] = 1
		}
		for a := 1; a < nt; a++ {
			t, par := int(mo.dim[a]), int(mo.parent[a])
			kernels.Mul64(pwT[a*n:(a+1)*n], pwT[par*n:(par+1)*n], xT[t*n:(t+1)*n])
		}
		kernels.GemmNN64(nt, w, n, pwT[:nt*n], n, vt[:n*w], w, m, w)
	}
	for a := range nt {
		for c := range w {
			out[c*ld+a] = m[a*w+c]
		}
	}
	momentScratch.Put(bp)
	tr.momFlops.Add(int64(cnt) * int64(nt*(2*e+3)))
	return out
}

// momentChunk is the most keys whose monomials computeMoments holds at a
// time: 128 keys of the 153 monomials of degree 16 in two dimensions fill
// 160 KB.
const momentChunk = 128

// momentScratch holds the monomial and value buffers of computeMoments.
var momentScratch = sync.Pool{New: func() any { return new([]float64) }}

// mergeMoments computes an internal node's moments from its children's
// (computed first if needed), each translated from the child's centre to
// the node's: a few thousand operations instead of a pass over the keys.
// Since a child's box lies in its parent's, every term of the translation
// is bounded by the parent's monomial bound: no cancellation.
func (tr *tree[T]) mergeMoments(i int) []float64 {
	r, e, g := tr.r, tr.e, tr.g
	w := e + 1
	nt, ld := tr.mo.terms(g), tr.ld
	z := tr.centre[i*r : (i+1)*r]
	if tr.parallel && tr.hi[i]-tr.lo[i] >= momentSplit {
		var wg sync.WaitGroup
		wg.Go(func() { tr.moments(2*i + 1) })
		tr.moments(2*i + 2)
		wg.Wait()
	}
	var kids [2][]float64
	for x, c := range []int{2*i + 1, 2*i + 2} {
		if tr.hi[c] > tr.lo[c] {
			kids[x] = tr.moments(c)
		}
	}
	// Translated and summed term-major (a term's columns side by side),
	// then transposed to the moments' column-major layout; the scratch is
	// taken once the children's moments (which use their own) are done.
	bp := momentScratch.Get().(*[]float64)
	if need := 2*nt*w + r + g + 1; cap(*bp) < need {
		*bp = make([]float64, need)
	}
	sum, buf := (*bp)[:nt*w], (*bp)[nt*w:2*nt*w]
	a, pw := (*bp)[2*nt*w:2*nt*w+r], (*bp)[2*nt*w+r:2*nt*w+r+g+1]
	clear(sum)
	for x, c := range []int{2*i + 1, 2*i + 2} {
		m := kids[x]
		if m == nil {
			continue
		}
		for col := range w {
			for al, v := range m[col*ld : col*ld+nt] {
				buf[al*w+col] = v
			}
		}
		for t := range r {
			a[t] = tr.centre[c*r+t] - z[t]
		}
		tr.mo.translate(buf, w, g, a, pw)
		for k, v := range buf {
			sum[k] += v
		}
	}
	out := alignedFloats(ld * w)
	for al := range nt {
		for col, x := range sum[al*w : (al+1)*w] {
			out[col*ld+al] = x
		}
	}
	momentScratch.Put(bp)
	tr.momFlops.Add(int64(2 * 2 * r * (e + 1) * nt * (g + 3) / 3))
	return out
}

// alignedStride rounds a column length up to a whole number of 64-byte
// vectors, so that with an aligned base every column of the moments starts
// on a cache line (a dot product's vector loads then never straddle two).
func alignedStride(n int) int { return (n + 7) &^ 7 }

// alignedFloats returns n zeros starting on a 64-byte boundary.
func alignedFloats(n int) []float64 {
	x := make([]float64, n+7)
	off := int(uintptr(unsafe.Pointer(unsafe.SliceData(x))) / 8 % 8)
	return x[(8-off)%8:][:n:n]
}

// axpy adds a*x to y (len(x) == len(y)).
func axpy(y, x []float64, a float64) {
	x = x[:len(y)]
	k := 0
	for ; k+4 <= len(y); k += 4 {
		y[k] += a * x[k]
		y[k+1] += a * x[k+1]
		y[k+2] += a * x[k+2]
		y[k+3] += a * x[k+3]
	}
	for ; k < len(y); k++ {
		y[k] += a * x[k]
	}
}

// dotU is a dot product with four partial sums (the rounding bound
// gamma(n) holds for any order of summation).
func dotU(a, b []float64) float64 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float64
	k := 0
	for ; k+4 <= len(a); k += 4 {
		s0 += a[k] * b[k]
		s1 += a[k+1] * b[k+1]
		s2 += a[k+2] * b[k+2]
		s3 += a[k+3] * b[k+3]
	}
	for ; k < len(a); k++ {
		s0 += a[k] * b[k]
	}
	return (s0 + s1) + (s2 + s3)
}

// binomial returns C(n, k) as a float64.
func binomial(n, k int) float64 {
	c := 1.0
	for i := 1; i <= k; i++ {
		c = c * float64(n-k+i) / float64(i)
	}
	return c
}
