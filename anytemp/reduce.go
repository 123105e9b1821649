package anytemp

import (
	"context"
	"math"
	"slices"
	"sync"

	"gonum.org/v1/gonum/mat"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/accurate"
	"github.com/fastattn/fastattn/internal/parallel"
)

// head is one head's problem rewritten for the method: keys centred on
// their mean (a per-row constant shift of the logits, undone in the LSE)
// and, when Q or K has low numerical rank, both projected on r <= d
// orthonormal directions W, the projection's effect on every exponent
// being bounded by rankErr.
type head struct {
	h, n, l, r int
	side       string    // "none", "keys" or "queries": which matrix's rank was used
	q          []float64 // n*r reduced queries (unscaled)
	k          []float64 // l*r reduced centred keys, original order
	mu         []float64 // d: the key mean the keys are centred on
	lseShift   []float64 // n: s q_i.mu, added back to each row's LSE
	kMax       float64   // max_j |k'_j|_inf
	kRad       float64   // max_j |k'_j|_2
	rankErr    float64   // max_i of the bound on |s q_i.(k_j - mu) - s q'_i.k'_j| from the projection
	theta      float64   // max_i of the exponent error bound (rankErr + rounding)
	lambdaMax  float64   // max_i s |q'_i|_1 kMax, the logit magnitude
	workers    int       // goroutines for the Gram matrices
}

// prepare builds head h of p. allowance is the largest rank-truncation
// error the budget accepts; reduce=false keeps all d dimensions.
func prepare[T attn.Float](p *attn.Problem[T], h int, allowance float64, reduce bool, workers int) *head {
	n, d, l := p.N, p.D, p.KeyLen(h)
	hd := &head{h: h, n: n, l: l, side: "none", workers: workers}
	q := make([]float64, n*d)
	qs := p.Q[h*n*d : (h+1)*n*d]
	spans(workers, n, func(a, b int) {
		for i, x := range qs[a*d : b*d] {
			q[a*d+i] = float64(x)
		}
	})
	mu := make([]float64, d)
	kc := make([]float64, l*d)
	keys := p.K[p.KVHead(h)*p.M*d:] // grouped-query heads read their key/value head
	for j := range l {
		for t := range d {
			mu[t] += float64(keys[j*d+t])
		}
	}
	if l > 0 {
		for t := range d {
			mu[t] /= float64(l)
		}
	}
	rk := spanMax(workers, l, func(a, b int) float64 { // max |k_j - mu|_2
		var rk float64
		for j := a; j < b; j++ {
			var s2 float64
			for t := range d {
				x := float64(keys[j*d+t]) - mu[t]
				kc[j*d+t] = x
				s2 += x * x
			}
			rk = max(rk, math.Sqrt(s2))
		}
		return rk
	})
	hd.mu = mu
	hd.lseShift = make([]float64, n)
	qn := make([]float64, n) // |q_i|_2
	qmax := spanMax(workers, n, func(a, b int) float64 {
		var qmax float64
		for i := a; i < b; i++ {
			var s2 float64
			for t := range d {
				s2 += q[i*d+t] * q[i*d+t]
			}
			hd.lseShift[i] = accurate.ScaledDot(q[i*d:(i+1)*d], mu, p.Scale)
			qn[i] = math.Sqrt(s2)
			qmax = max(qmax, qn[i])
		}
		return qmax
	})
	s := p.Scale
	// Rounding of the projection itself (W^T q, W^T k, the residuals).
	slack := gamma(float64(2*d+8)) * s * qmax * (math.Sqrt(float64(d)) + 1) * rk

	hd.r = d
	var w *mat.Dense // d x r, nil for the identity
	if reduce && d >= 2 && l > 0 {
		w = hd.lowRank(q, kc, qn, qmax, rk, s, d, allowance-slack)
	}
	if w == nil {
		hd.r = d
		hd.q, hd.k = q, kc
	} else {
		hd.rankErr += slack
		hd.q = project(q, n, d, w)
		hd.k = project(kc, l, d, w)
	}
	r := hd.r
	var kMax, kRad [64]float64 // per part: max_j |k'_j|_inf and |k'_j|_2
	parts := spanParts(min(workers, len(kMax)), l, func(w, a, b int) {
		var m, rad float64
		for j := a; j < b; j++ {
			var s2 float64
			for _, x := range hd.k[j*r : (j+1)*r] {
				m = max(m, math.Abs(x))
				s2 += x * x
			}
			rad = max(rad, math.Sqrt(s2))
		}
		kMax[w], kRad[w] = m, rad
	})
	hd.kMax, hd.kRad = slices.Max(kMax[:parts]), slices.Max(kRad[:parts])
	hd.lambdaMax = spanMax(workers, n, func(a, b int) float64 {
		var m float64
		for i := a; i < b; i++ {
			var q1 float64
			for t := range r {
				q1 += math.Abs(hd.q[i*r+t])
			}
			m = max(m, s*q1*hd.kMax)
		}
		return m
	})
	// Exponent error, absolute, common to every weight of a row:
	//   centring, scaling and the r-term dot product   gamma(r+2) Lambda
	//   the accumulation base (base0 + k ln 2)          u (5 Lambda + 300)
	//   x - base, node bounds, 1-D cell boundaries      u (3 Lambda + t + 100), t <= 60
	// which gamma(r+12) (Lambda + 400) covers.
	hd.theta = hd.rankErr + gamma(float64(r+12))*(hd.lambdaMax+400)
	return hd
}

// spanRows is the fewest rows (or keys) per goroutine in prepare's loops.
const spanRows = 1 << 14

// spans runs f on consecutive parts of [0, n), on up to workers goroutines
// with at least spanRows each.
func spans(workers, n int, f func(a, b int)) {
	spanParts(workers, n, func(_, a, b int) { f(a, b) })
}

// spanParts is spans with the part's number passed to f.
func spanParts(workers, n int, f func(part, a, b int)) int {
	parts := max(1, min(workers, n/spanRows))
	if parts == 1 {
		f(0, 0, n)
		return 1
	}
	parallel.For(context.Background(), parts, parts, func(w int) { f(w, w*n/parts, (w+1)*n/parts) })
	return parts
}

// spanMax is spans for a loop that returns the largest of a non-negative
// quantity over its part: the largest over all (0 for n = 0).
func spanMax(workers, n int, f func(a, b int) float64) float64 {
	var out [64]float64
	parts := spanParts(min(workers, len(out)), n, func(w, a, b int) { out[w] = f(a, b) })
	return slices.Max(out[:parts])
}

// lowRank looks for the smallest r < d such that projecting the keys (or
// the queries) on their top r principal directions shifts no exponent by
// more than allowance, and returns W (d x r), or nil. The bound is checked
// on the actual residuals, so the accuracy of the eigenvectors does not
// matter for the guarantee.
func (hd *head) lowRank(q, kc, qn []float64, qmax, rk, s float64, d int, allowance float64) *mat.Dense {
	if !(allowance > 0) {
		return nil
	}
	n, l := hd.n, hd.l
	eig := func(x []float64, rows int) ([]float64, *mat.Dense, bool) {
		g := gram(x, rows, d, hd.workers)
		var es mat.EigenSym
		if !es.Factorize(g, true) {
			return nil, nil, false
		}
		var v mat.Dense
		es.VectorsTo(&v)
		return es.Values(nil), &v, true
	}
	top := func(v *mat.Dense, r int) *mat.Dense {
		return mat.DenseCopyOf(v.Slice(0, d, d-r, d))
	}
	tail := func(vals []float64, r int) float64 {
		var t float64
		for _, x := range vals[:d-r] {
			t += max(x, 0)
		}
		return t
	}
	var kVals, qVals []float64
	var kVecs, qVecs *mat.Dense
	var kOK, qOK bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); kVals, kVecs, kOK = eig(kc, l) }()
	qVals, qVecs, qOK = eig(q, n)
	wg.Wait()
	for r := 1; r < d; r++ {
		best := math.Inf(1)
		var bestW *mat.Dense
		side := ""
		// Keys: |s q.(k - W W^T k)| <= s |q| |k_perp|.
		if kOK && s*qmax*math.Sqrt(tail(kVals, r)/float64(l)) <= allowance {
			w := top(kVecs, r)
			perp := maxResidual(kc, l, d, w)
			if e := s * qmax * perp; e <= allowance && e < best {
				best, bestW, side = e, w, "keys"
			}
		}
		// Queries: |s (q - W W^T q).k| <= s |q_perp| |k - mu|.
		if qOK && s*rk*math.Sqrt(tail(qVals, r)/float64(n)) <= allowance {
			w := top(qVecs, r)
			perp := maxResidual(q, n, d, w)
			if e := s * perp * rk; e <= allowance && e < best {
				best, bestW, side = e, w, "queries"
			}
		}
		if bestW != nil {
			hd.r, hd.side, hd.rankErr = r, side, best
			return bestW
		}
	}
	return nil
}

// maxResidual returns max_i |x_i - W W^T x_i|_2 over the rows of x.
func maxResidual(x []float64, rows, d int, w *mat.Dense) float64 {
	_, r := w.Dims()
	c := make([]float64, r)
	var worst float64
	for i := range rows {
		xi := x[i*d : (i+1)*d]
		for a := range r {
			var s float64
			for t := range d {
				s += w.At(t, a) * xi[t]
			}
			c[a] = s
		}
		var s2 float64
		for t := range d {
			y := xi[t]
			for a := range r {
				y -= w.At(t, a) * c[a]
			}
			s2 += y * y
		}
		worst = max(worst, math.Sqrt(s2))
	}
	return worst
}

// project returns x W (rows x r).
func project(x []float64, rows, d int, w *mat.Dense) []float64 {
	_, r := w.Dims()
	out := make([]float64, rows*r)
	wt := make([]float64, d*r)
	for t := range d {
		for a := range r {
			wt[t*r+a] = w.At(t, a)
		}
	}
	for i := range rows {
		xi := x[i*d : (i+1)*d]
		o := out[i*r : (i+1)*r]
		for t, xv := range xi {
			for a := range r {
				o[a] += xv * wt[t*r+a]
			}
		}
	}
	return out
}

// wideWindows tells whether the typical row's relevance window (width t in
// logit) covers much of the range of its logits, about 2 s |q'| R: low
// temperature, where rows expand many nodes.
func (hd *head) wideWindows(s, t float64) bool {
	if hd.n == 0 || hd.l == 0 {
		return true
	}
	r := hd.r
	step := max(1, hd.n/256)
	var sum float64
	var cnt int
	for i := 0; i < hd.n; i += step {
		var s2 float64
		for _, x := range hd.q[i*r : (i+1)*r] {
			s2 += x * x
		}
		spread := 2 * s * math.Sqrt(s2) * hd.kRad
		sum += min(1, t/max(spread, 1e-300))
		cnt++
	}
	return sum/float64(cnt) >= 0.3
}

// gram returns x^T x (x is rows x d), summed over row blocks computed in
// parallel.
func gram(x []float64, rows, d, workers int) *mat.SymDense {
	parts := max(1, min(workers, rows/4096))
	gs := make([]*mat.SymDense, parts)
	parallel.For(context.Background(), parts, parts, func(w int) {
		a, b := w*rows/parts, (w+1)*rows/parts
		var g mat.SymDense
		if b > a {
			g.SymOuterK(1, mat.NewDense(b-a, d, x[a*d:b*d]).T())
		} else {
			g = *mat.NewSymDense(d, nil)
		}
		gs[w] = &g
	})
	out := gs[0]
	for _, g := range gs[1:] {
		out.AddSym(out, g)
	}
	return out
}
