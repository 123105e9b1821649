// Package poly is polynomial-method attention (Alman & Song, NeurIPS 2023,
// Algorithm 1): when every logit s q.k lies in [-beta, beta], a polynomial P
// with |P(x) - e^x| <= eps_A e^x there makes exp(s Q K^T) the product of two
// thin matrices, and attention costs O((n + m) r e) instead of O(n m e),
// with r = C(d+g, g) monomials of degree <= g.
//
// How this implementation keeps the error certified and the rank small:
//
//   - Keys are centred (k -> k - mu, which leaves softmax unchanged) and
//     normalised by R = max_j |k_j - mu|, so each query row i has its own
//     range beta_i = s |q_i| R by Cauchy-Schwarz, usually far below the
//     worst case s d B^2.
//   - Key-side features are plain monomials u^alpha of u = (k - mu)/R, in
//     graded order; the query side carries the polynomial's coefficients and
//     the multinomial factors. So every query row uses the lowest degree its
//     own beta_i allows, reading a prefix of the same key moments.
//   - Everything after reading the inputs is float64, and the rounding error
//     is bounded and charged: see bound.
//
// Causal attention sums key moments over prefixes of key blocks and adds the
// diagonal block's keys exactly; a sliding window sums the moments of the
// key blocks inside each row's window and adds the keys at both edges
// exactly.
package poly

import (
	"context"
	"fmt"
	"math"
	"runtime"

	"sync"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/check"
	"github.com/fastattn/fastattn/internal/lsebound"
	"github.com/fastattn/fastattn/internal/parallel"
	"github.com/fastattn/fastattn/internal/sinkshift"
	"github.com/fastattn/fastattn/internal/vscale"
	"github.com/fastattn/fastattn/polyexp"
)

// Method is polynomial-method attention. Its zero value is ready to use.
type Method struct {
	// Workers caps the goroutines used; 0 means GOMAXPROCS.
	Workers int
	// MemoryBudget caps the working memory in bytes (key moments and
	// feature blocks); 0 means DefaultMemoryBudget.
	MemoryBudget float64
	// AllowExpensive is kept for compatibility and has no effect: the method
	// runs whenever it can certify eps within its memory budget, even where
	// it is predicted to cost more than exact attention (the prediction is
	// in the statistics, "flops_predicted" against "exact_flops").
	//
	// Deprecated: every call behaves as if it were true.
	AllowExpensive bool
	// SampleRows is how many rows per call are recomputed with the accurate
	// reference of internal/check after the run, to measure the observed
	// error (a row above the certified bound is an error); 0 means 16,
	// negative means none.
	SampleRows int
}

// Method implements the contract's method, planner and gradient interfaces;
// dropping one would silently take it out of auto or Gradient.
var (
	_ attn.Method         = Method{}
	_ attn.Planner        = Method{}
	_ attn.Differentiable = Method{}
)

// DefaultMemoryBudget is the working-memory cap when Method.MemoryBudget is 0.
const DefaultMemoryBudget = 2 << 30

// MinEps32 and MinEps64 are the smallest error targets honoured for each
// element type: below them the final rounding of the output to the element
// type (or float64 rounding inside) would use up the budget.
const (
	MinEps32 = 1e-6
	MinEps64 = 1e-12
)

const (
	keyBlock   = 256 // keys per feature block
	queryBlock = 128 // query rows per block
	// PolyShare of eps goes to the polynomial's relative error eps_A (which
	// costs 2 eps_A / (1 - eps_A) by Lemma 3.6); the rest covers rounding.
	// Exported for the transition experiment's cost model.
	PolyShare = 0.45
	// maxDegree bounds the degree considered; the rank explodes long before.
	maxDegree = 40
)

// Name returns "poly".
func (Method) Name() string { return "poly" }

// Supports lists the options beyond plain attention the forward handles:
// grouped-query attention (each query head reads its key/value head, no
// copies), top-left causal alignment (rows attend prefixes either way),
// sinks (an exact term of the denominator) and sliding windows (moments of
// the key blocks inside a row's window summed directly, the edges added
// exactly: see window.go). Mask tensors are declined: a row's own mask
// would need moments of its own keys.
func (Method) Supports() attn.Feature {
	return attn.GQA | attn.TopLeftAlign | attn.AttentionSinks | attn.SlidingWindow
}

// BackwardSupports lists the options the backward pass handles: those of
// the forward (dK and dV summed over a key/value head's query heads, the
// sinks' gradient, and windows: a key block's moments receive the sum over
// the rows that read them, summed by a second sweep).
func (Method) BackwardSupports() attn.Feature {
	return attn.GQA | attn.TopLeftAlign | attn.AttentionSinks | attn.SlidingWindow
}

// Forward32 computes float32 attention (internally float64).
func (m Method) Forward32(ctx context.Context, p *attn.Problem[float32], out *attn.Output[float32]) (attn.Stats, error) {
	return forward(ctx, m, p, out, MinEps32, 0x1p-24)
}

// Forward64 computes float64 attention.
func (m Method) Forward64(ctx context.Context, p *attn.Problem[float64], out *attn.Output[float64]) (attn.Stats, error) {
	return forward(ctx, m, p, out, MinEps64, 0x1p-53)
}

func (m Method) workers() int {
	if m.Workers > 0 {
		return m.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// unsupported wraps attn.ErrUnsupported with a message.
func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: %s", attn.ErrUnsupported, fmt.Sprintf(format, args...))
}

// headPlan is what one head needs before any feature is built: the key
// centre and radius, each row's range and degree.
type headPlan struct {
	keys   int       // valid keys L
	mu     []float64 // key centre
	radius float64   // R >= max_j |k_j - mu|, rounded up
	beta   []float64 // per row: s |q_i| R, rounded up
	degree []int     // per row; exactRow for rows computed exactly

	// win is a sliding window's sweep over key blocks, or nil.
	win *windowPlan
}

// exactRow marks a row computed exactly: a few rows whose range needs a
// higher degree than the rest would otherwise raise the rank of every key's
// features, and computing them directly is cheaper.
const exactRow = -1

// planHead centres the keys of head h and picks each row's degree: the
// lowest certified for its range, plus bump (the backward pass adds one, so
// that P' approximates e^x as well as P does: the derivative of a degree-g
// approximation is only as good as one of degree g-1).
func planHead[T attn.Float](p *attn.Problem[T], h int, deg *degreeTable, bump int) (*headPlan, error) {
	L := p.KeyLen(h)
	hp := &headPlan{keys: L, beta: make([]float64, p.N), degree: make([]int, p.N)}
	if L == 0 {
		return hp, nil
	}
	kh := p.KVHead(h)
	keys := p.K[kh*p.M*p.D : (kh*p.M+L)*p.D]
	st := scanKeys(keys, p.D)
	hp.mu, hp.radius = ballAbout(keys, p.D, st.mean)
	if testCentre != nil {
		hp.mu, hp.radius = testCentre, radiusAbout(keys, p.D, testCentre)
	}
	// The forward also bounds each row's range through the keys'
	// bounding box (see rowBeta); the backward keeps Cauchy-Schwarz's.
	var half []float64
	if bump == 0 {
		half = halfWidths(st.lo, st.hi, hp.mu)
	}
	// The ranges on every core (a pass over the queries), then the
	// degrees (the table extends itself, one goroutine at a time).
	q := p.Q[h*p.N*p.D : (h+1)*p.N*p.D]
	chunks := (p.N + normChunk - 1) / normChunk
	parallel.For(context.Background(), runtime.GOMAXPROCS(0), chunks, func(c int) {
		for i := c * normChunk; i < min((c+1)*normChunk, p.N); i++ {
			hp.beta[i] = rowBeta(q[i*p.D:(i+1)*p.D], p.Scale, hp.radius, half)
		}
	})
	for i, b := range hp.beta {
		g, err := deg.degreeFor(b)
		if err != nil {
			return nil, err
		}
		if bump > 0 {
			g += bump
			if err := deg.raise(g, bump); err != nil {
				return nil, err
			}
		}
		hp.degree[i] = g
	}
	if windowed(p) {
		planWindow(p, h, hp, !testNoExactRows, bump > 0)
	} else if !testNoExactRows {
		hp.capDegree(p.D, p.E)
	}
	return hp, nil
}

// rowBeta returns beta >= sum_t |w_t u_t| for the row's w = s R q and
// every normalised key u = (k - mu)/R, which bounds both the exponent
// |w.u| the polynomial must cover and the sums of absolute values of the
// terms bound charges (sum_alpha |c_alpha w^alpha u^alpha| <= sum_k |c_k|
// beta^k): the smaller of Cauchy-Schwarz's s |q| R (|u| <= 1) and, if half
// is not nil, the box's s sum_t |q_t| half_t (|k_t - mu_t| <= half_t),
// rounded up.
func rowBeta[T attn.Float](q []T, scale, radius float64, half []float64) float64 {
	var nq, box float64
	for t, x := range q {
		nq += float64(x) * float64(x)
		if half != nil {
			box += math.Abs(float64(x)) * half[t]
		}
	}
	b := scale * math.Sqrt(nq) * radius * (1 + 1e-12)
	if half != nil {
		b = min(b, scale*box*(1+float64(len(q)+4)*0x1p-52))
	}
	return b
}

// halfWidths returns half_t >= |k_t - mu_t| for every key whose
// coordinates t lie in [lo_t, hi_t], rounded up.
func halfWidths(lo, hi, mu []float64) []float64 {
	half := make([]float64, len(mu))
	for t := range mu {
		// Each difference is within a rounding of the exact one.
		half[t] = max(hi[t]-mu[t], mu[t]-lo[t]) * (1 + 0x1p-50)
	}
	return half
}

// capDegree picks the degree cap that minimises the head's flops: key
// moments cost about 2 L r_cap (e+1), each row of degree g <= cap costs
// 2 r_g (e+1), and each row above the cap costs 2 L (d+e) exactly.
func (hp *headPlan) capDegree(d, e int) {
	var count []int // rows per degree
	gmax := 0
	for _, g := range hp.degree {
		for len(count) <= g {
			count = append(count, 0)
		}
		count[g]++
		gmax = max(gmax, g)
	}
	best, bestCost := gmax, math.Inf(1)
	L := float64(hp.keys)
	for capG := gmax; capG >= 0; capG-- {
		cost := 2 * L * RankFloat(d, capG) * float64(e+1)
		for g, c := range count {
			if c == 0 {
				continue
			}
			if g <= capG {
				cost += 2 * float64(c) * RankFloat(d, g) * float64(e+1)
			} else {
				cost += 2 * float64(c) * L * float64(d+e)
			}
		}
		if cost < bestCost {
			best, bestCost = capG, cost
		}
	}
	for i, g := range hp.degree {
		if g > best {
			hp.degree[i] = exactRow
		}
	}
}

// testCentre, when set by a test, replaces the computed key centre, so
// finite differences see the function the backward pass differentiates
// (the gradient holds the centre constant).
var testCentre []float64

// testForwardBump, set by tests, raises the forward's degrees as the
// backward pass does, so finite differences of the forward check the
// backward exactly.
var testForwardBump int

// testNoExactRows, set by tests, keeps every row on the polynomial path
// (small test inputs would otherwise be computed exactly, being cheaper).
var testNoExactRows bool

// radiusAbout returns max_j |k_j - c|, rounded up.
func radiusAbout[T attn.Float](keys []T, d int, c []float64) float64 {
	var best float64
	for j := range len(keys) / d {
		var s float64
		for t, x := range keys[j*d : (j+1)*d] {
			diff := float64(x) - c[t]
			s += diff * diff
		}
		best = max(best, s)
	}
	return radiusFloor(c, math.Sqrt(best)*(1+1e-12))
}

// ballChunk is the fewest keys per goroutine of enclosingBall's searches.
const ballChunk = 1 << 14

// Enclosing-ball search: a sample of about ballSample / d keys (at least
// 256, so the steps on it cost a few passes over 2^16 keys), ballSteps
// Badoiu-Clarkson steps on it per round, at most ballRounds passes over
// every key after the mean's.
const (
	ballSample = 1 << 15
	ballSteps  = 64
	ballRounds = 4
	ballGrow   = 256 // keys per chunk added to the sample per round
)

// ballWork is the most key coordinates enclosingBall reads for L keys in
// d dimensions, for the cost model: the mean, the search about it and one
// per round over every key, and the steps on the sample.
func ballWork(L, d int) float64 {
	sample := min(L, max(ballSample/d, 256)+1) + ballRounds*(ballGrow*runtime.GOMAXPROCS(0)+1)
	return float64(d) * (float64(2+ballRounds)*float64(L) + float64(ballRounds*ballSteps*sample))
}

// enclosingBall returns a centre mu and R >= max_j |k_j - mu| (rounded up):
// the better of the mean and a centre found by Badoiu-Clarkson steps
// towards the farthest point, which approach the smallest enclosing ball.
// The steps run on a sample of the keys (a core set): each round takes
// them on the sample, measures the true radius about the centre they reach
// in one pass over every key, and adds the key found farthest to the
// sample, until that key is barely outside the sample's ball. The radius
// returned is always such a pass's, so the sample only steers the centre.
func enclosingBall[T attn.Float](keys []T, d int) ([]float64, float64) {
	return ballAbout(keys, d, scanKeys(keys, d).mean)
}

// keyScan is what one pass over a head's keys gives the plan: their mean
// and bounding box [lo, hi].
type keyScan struct{ mean, lo, hi []float64 }

// scanKeys makes that pass on every core, in chunks of a fixed size whose
// sums are added in order (the same mean whatever the core count).
func scanKeys[T attn.Float](keys []T, d int) keyScan {
	L := len(keys) / d
	parts := (L + ballChunk - 1) / ballChunk
	sums, los, his := make([]float64, parts*d), make([]float64, parts*d), make([]float64, parts*d)
	parallel.For(context.Background(), runtime.GOMAXPROCS(0), parts, func(x int) {
		s, lo, hi := sums[x*d:(x+1)*d], los[x*d:(x+1)*d], his[x*d:(x+1)*d]
		for t := range d {
			lo[t], hi[t] = math.Inf(1), math.Inf(-1)
		}
		for j := x * ballChunk; j < min((x+1)*ballChunk, L); j++ {
			for t, v := range keys[j*d : (j+1)*d] {
				f := float64(v)
				s[t] += f
				if f < lo[t] {
					lo[t] = f
				}
				if f > hi[t] {
					hi[t] = f
				}
			}
		}
	})
	st := keyScan{mean: make([]float64, d), lo: make([]float64, d), hi: make([]float64, d)}
	for t := range d {
		st.lo[t], st.hi[t] = math.Inf(1), math.Inf(-1)
	}
	for x := range parts {
		for t := range d {
			st.mean[t] += sums[x*d+t]
			st.lo[t] = min(st.lo[t], los[x*d+t])
			st.hi[t] = max(st.hi[t], his[x*d+t])
		}
	}
	for t := range d {
		st.mean[t] /= float64(L)
	}
	return st
}

// ballAbout is enclosingBall given the keys' mean.
func ballAbout[T attn.Float](keys []T, d int, mean []float64) ([]float64, float64) {
	L := len(keys) / d
	// farthest is the first key farthest from c, searched in chunks on
	// every core; it also lists up to ballGrow keys per chunk further
	// than sqrt(beyond) from c.
	chunks := max(1, min(runtime.GOMAXPROCS(0), L/ballChunk))
	bests, bestDs := make([]int, chunks), make([]float64, chunks)
	outside := make([][]int, chunks)
	farthest := func(c []float64, beyond float64) (int, float64, [][]int) {
		parallel.For(context.Background(), chunks, chunks, func(x int) {
			j0, j1 := x*L/chunks, (x+1)*L/chunks
			outside[x] = outside[x][:0]
			bests[x], bestDs[x] = farthestKey(keys[j0*d:j1*d], d, c, beyond, &outside[x])
			bests[x] += j0
			for y := range outside[x] {
				outside[x][y] += j0
			}
		})
		best, bestD := 0, -1.0
		for x := range chunks {
			if bestDs[x] > bestD {
				best, bestD = bests[x], bestDs[x]
			}
		}
		return best, math.Sqrt(bestD), outside
	}
	bestC := append([]float64(nil), mean...)
	_, bestR, _ := farthest(mean, math.Inf(1))
	if L > 1 {
		// The sample, in float64: every stride-th key.
		stride := max(1, L/max(ballSample/d, 256))
		var sample []float64
		for j := 0; j < L; j += stride {
			for _, x := range keys[j*d : (j+1)*d] {
				sample = append(sample, float64(x))
			}
		}
		c, cs := make([]float64, d), make([]float64, d)
		for range ballRounds {
			// The steps' best centre on the sample, cs, with its radius
			// there.
			copy(c, mean)
			sampleD := math.Inf(1)
			for it := 1; it <= ballSteps; it++ {
				j, s := farthestKey(sample, d, c, math.Inf(1), nil)
				if s < sampleD {
					sampleD = s
					copy(cs, c)
				}
				for t, x := range sample[j*d : (j+1)*d] {
					c[t] += (x - c[t]) / float64(it+1)
				}
			}
			// That centre measured on every key; the keys outside the
			// sample's ball about it join the sample.
			j, r, out := farthest(cs, sampleD*(1+2e-3))
			if r < bestR {
				bestR = r
				copy(bestC, cs)
			}
			if r <= math.Sqrt(sampleD)*(1+1e-3) {
				break // the sample's ball is (nearly) every key's
			}
			for _, js := range append(out, []int{j}) {
				for _, j := range js {
					for _, x := range keys[j*d : (j+1)*d] {
						sample = append(sample, float64(x))
					}
				}
			}
		}
	}
	// Round up so that |k - mu| <= R holds for the exact values.
	return bestC, radiusFloor(bestC, bestR*(1+1e-12))
}

// farthestKey returns the first of the keys (rows of d) farthest from c
// and its squared distance, and appends to outside (if not nil) up to
// ballGrow keys at a squared distance above beyond.
func farthestKey[T attn.Float](keys []T, d int, c []float64, beyond float64, outside *[]int) (int, float64) {
	best, bestD := 0, -1.0
	end := len(keys) / d
	j := 0
	// Four keys at a time: four independent chains of additions (each
	// key's sum in the same order as one at a time).
	var s4 [4]float64
	for ; j+4 <= end; j += 4 {
		k4 := keys[j*d : (j+4)*d]
		s4 = [4]float64{}
		for t, ct := range c[:d] {
			d0 := float64(k4[t]) - ct
			d1 := float64(k4[d+t]) - ct
			d2 := float64(k4[2*d+t]) - ct
			d3 := float64(k4[3*d+t]) - ct
			s4[0] += d0 * d0
			s4[1] += d1 * d1
			s4[2] += d2 * d2
			s4[3] += d3 * d3
		}
		for y, s := range s4 {
			if s > bestD {
				best, bestD = j+y, s
			}
			if s > beyond && outside != nil && len(*outside) < ballGrow {
				*outside = append(*outside, j+y)
			}
		}
	}
	for ; j < end; j++ {
		var s float64
		for t, y := range keys[j*d : (j+1)*d] {
			diff := float64(y) - c[t]
			s += diff * diff
		}
		if s > bestD {
			best, bestD = j, s
		}
		if s > beyond && outside != nil && len(*outside) < ballGrow {
			*outside = append(*outside, j)
		}
	}
	return best, bestD
}

// radiusFloor keeps R away from zero (identical keys): any R >= max |k - mu|
// is valid, a floor of 1e-9 (1 + |mu|) changes beta negligibly, and the
// backward pass divides by R.
func radiusFloor(mu []float64, r float64) float64 {
	var m float64
	for _, x := range mu {
		m = max(m, math.Abs(x))
	}
	return max(r, 1e-9*(1+m))
}

// degreeTable maps a row's beta to the lowest certified degree for eps_A,
// through thresholds computed once (polyexp.DegreeFor per row would cost
// microseconds per row), and caches the polynomials.
type degreeTable struct {
	epsA    float64
	maxBeta []float64 // maxBeta[g]: largest beta certified at degree <= g
	approx  map[int]polyexp.Approx
	mu      sync.Mutex
}

func newDegreeTable(epsA float64) *degreeTable {
	return &degreeTable{epsA: epsA, approx: map[int]polyexp.Approx{}}
}

func (t *degreeTable) degreeFor(beta float64) (int, error) {
	for g := 0; ; g++ {
		if g == len(t.maxBeta) {
			if g > maxDegree {
				break
			}
			t.maxBeta = append(t.maxBeta, t.threshold(g))
		}
		if beta <= t.maxBeta[g] {
			return g, nil
		}
	}
	return 0, unsupported("the logits reach |s q.k| <= beta = %.3g, which needs a polynomial of degree above %d for eps_A = %.2g; use the exact method (or anytemp for small d)", beta, maxDegree, t.epsA)
}

// extend computes the thresholds up to degree g.
func (t *degreeTable) extend(g int) error {
	if g > maxDegree {
		return unsupported("degree %d exceeds the largest considered (%d); use the exact method", g, maxDegree)
	}
	for len(t.maxBeta) <= g {
		t.maxBeta = append(t.maxBeta, t.threshold(len(t.maxBeta)))
	}
	return nil
}

// threshold finds the largest beta whose certified degree is <= g by
// bisection (DegreeFor is monotone in beta).
func (t *degreeTable) threshold(g int) float64 {
	ok := func(b float64) bool {
		d, err := polyexp.DegreeFor(b, t.epsA)
		return err == nil && d <= g
	}
	lo, hi := 0.0, 1.0
	if !ok(lo) {
		return -1
	}
	for ok(hi) && hi < 1e3 {
		lo, hi = hi, 2*hi
	}
	for range 60 {
		mid := (lo + hi) / 2
		if ok(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// polynomial returns a certified polynomial of degree <= g on [-beta, beta].
func (t *degreeTable) polynomial(g int) (polyexp.Approx, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if a, ok := t.approx[g]; ok {
		return a, nil
	}
	a, err := polyexp.Symmetric(t.maxBeta[g], t.epsA)
	if err != nil {
		return a, unsupported("%v", err)
	}
	if a.Degree > g {
		return a, fmt.Errorf("poly: internal error: degree %d certified for beta %g, table says %d", a.Degree, t.maxBeta[g], g)
	}
	t.approx[g] = a
	return a, nil
}

// bound is the a priori entrywise error bound, relative to max_l |V_lj|,
// for a row using polynomial a on [-beta, beta] with L keys, rank r and
// output rounding unit uOut. With eps_A the polynomial's relative error and
// f the relative rounding error of the float64 sums (terms with relative
// error gamma_{K} each, K = 2g + 8 roundings along a term's path, summed
// over L keys and r features, each sum at most AbsSum * e^beta times the
// smallest possible denominator L e^-beta):
//
//	|T - Att| <= 2 eps_A / (1 - eps_A) + 2 f / (1 - eps_A - f) + 2 uOut
//
// The first term is Lemma 3.6 (weights perturbed by at most
// (1+eps_A)/(1-eps_A)); the second perturbs numerator and denominator by f;
// the last is the conversion to the output type.
func bound(a polyexp.Approx, L, r int, uOut float64) float64 {
	return perturbed(a.RelErr, roundingError(a, L, r), uOut)
}

// perturbed is the bound of a row whose weights are within a relative e of
// exp and whose sums are off by at most f of the denominator: +Inf once
// e + f reaches 1, where the formula would turn negative. (A polynomial
// decoding state of degree 36 on a row range of 20 once had f near 3 and
// reported a bound of -2.6, which passed every eps; the random search over
// Cache streams found it.)
func perturbed(e, f, uOut float64) float64 {
	if !(e+f < 1) {
		return math.Inf(1)
	}
	return 2*e/(1-e) + 2*f/(1-e-f) + 2*uOut
}

// roundingError is f above.
func roundingError(a polyexp.Approx, L, r int) float64 {
	const u = 0x1p-53
	k := float64(2*a.Degree+8+L+r) * u
	return k / (1 - k) * a.AbsSum * math.Exp(a.Radius)
}

// exactBound is the rounding bound for a row computed directly in float64:
// each exponent s q.(k - mu) is a d-term dot product of size <= beta, so
// exp of it is off by a relative gamma_d beta plus exp's own error (the SIMD
// exp is within 1e-15, under 10 units of 2^-53); the
// L-term sums add gamma_L relative to the sums of absolute values, which
// are at most D and D max|V|.
func exactBound(beta float64, L, d int, uOut float64) float64 {
	return perturbed(0, exactRoundingError(beta, L, d), uOut)
}

// exactRoundingError is f of exactBound: the relative error of both sums.
func exactRoundingError(beta float64, L, d int) float64 {
	const u = 0x1p-53
	k := float64(L+d+14) * u
	return k / (1 - k) * (2 + beta)
}

// headMax is the largest over the rows of planned head hp of perDegree(g,
// a), a the polynomial of the row's degree g, and of exact(beta) for rows
// computed exactly: the first depends on the row through its degree alone
// and the second grows with beta, so each degree is evaluated once and
// exact once, for the widest exact row.
func headMax(hp *headPlan, deg *degreeTable, perDegree func(g int, a polyexp.Approx) float64, exact func(beta float64) float64) (float64, error) {
	var b float64
	var seen []bool
	exactBeta := math.Inf(-1)
	for i, g := range hp.degree {
		if g == exactRow {
			exactBeta = max(exactBeta, hp.beta[i])
			continue
		}
		if g < len(seen) && seen[g] {
			continue
		}
		seen = append(seen, make([]bool, max(g+1-len(seen), 0))...)
		seen[g] = true
		a, err := deg.polynomial(g)
		if err != nil {
			return 0, err
		}
		b = max(b, perDegree(g, a))
	}
	if !math.IsInf(exactBeta, -1) {
		b = max(b, exact(exactBeta))
	}
	return b, nil
}

// planBound is the certified bound of planned head h of p: the largest over
// its rows of bound (polynomial rows) or exactBound (rows computed
// exactly), plus what its sink costs on keys centred on mu (package
// sinkshift: finishRows weighs the sink against s q.mu + log den, whose
// second term is at most beta_i + log L in magnitude). The planner calls it
// before running, the forward while running.
func planBound[T attn.Float](p *attn.Problem[T], h int, hp *headPlan, deg *degreeTable, uOut float64) (float64, error) {
	d, L := p.D, hp.sumTerms()
	b, err := headMax(hp, deg,
		func(g int, a polyexp.Approx) float64 { return bound(a, L, Rank(d, g), uOut) },
		func(beta float64) float64 { return exactBound(beta, L, d, uOut) })
	if err != nil {
		return 0, err
	}
	logL := math.Log(float64(max(hp.keys, 1)))
	return b + sinkshift.Bound(p, h, hp.mu, func(i int) float64 { return hp.beta[i] + logL }), nil
}

// planSumError is the largest relative error of planned head hp's rows'
// denominators (their log-sum-exps' share of Stats.LSEBound): eps_A + f
// for polynomial rows, as bound perturbs them, and f of exactBound for
// rows computed exactly.
func planSumError(d int, hp *headPlan, deg *degreeTable) (float64, error) {
	L := hp.sumTerms()
	return headMax(hp, deg,
		func(g int, a polyexp.Approx) float64 { return a.RelErr + roundingError(a, L, Rank(d, g)) },
		func(beta float64) float64 { return exactRoundingError(beta, L, d) })
}

// Values whose column maxima lie outside [valueLo, valueHi] are scaled by
// powers of two first (package vscale), so that moments (sums of up to
// 2^34 values times features up to e^beta) stay finite and subnormal
// values keep their digits; uOut grows by the subnormal outputs' share.
const valueLo, valueHi = 0x1p-900, 0x1p800

func forward[T attn.Float](ctx context.Context, m Method, p *attn.Problem[T], out *attn.Output[T], minEps, uOut float64) (attn.Stats, error) {
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}
	return vscale.Run("poly", p, out, valueLo, valueHi, func(q *attn.Problem[T], subnormal float64) (attn.Stats, error) {
		return compute(ctx, m, q, out, minEps, uOut+subnormal)
	})
}

// compute is forward on values in range.
func compute[T attn.Float](ctx context.Context, m Method, p *attn.Problem[T], out *attn.Output[T], minEps, uOut float64) (attn.Stats, error) {
	if p.Eps < minEps {
		return attn.Stats{}, unsupported("eps = %g is below the smallest error this method certifies for %s (%g); use the exact method", p.Eps, attn.DTypeName[T](), minEps)
	}
	deg := newDegreeTable(PolyShare * p.Eps)
	run := &runner[T]{p: p, out: out, deg: deg, workers: m.workers(), uOut: uOut,
		details: map[string]any{}, degreeRows: map[int]int{}}
	plans := make([]*headPlan, p.Heads)
	for h := range p.Heads {
		hp, err := planHead(p, h, deg, testForwardBump)
		if err != nil {
			return attn.Stats{}, err
		}
		plans[h] = hp
	}
	if err := run.checkCost(plans, m.MemoryBudget); err != nil {
		return attn.Stats{}, err
	}
	for h, hp := range plans {
		if err := ctx.Err(); err != nil {
			return attn.Stats{}, err
		}
		if err := run.head(ctx, h, hp); err != nil {
			return attn.Stats{}, err
		}
	}
	if err := ctx.Err(); err != nil {
		return attn.Stats{}, err
	}
	if run.bound > p.Eps {
		return attn.Stats{}, unsupported("the certified bound %.3g exceeds eps = %g (beta = %.3g, rounding dominates); raise eps or use the exact method", run.bound, p.Eps, run.maxBeta)
	}
	chk, err := check.Forward(p, out, run.bound, m.SampleRows)
	if err != nil {
		return attn.Stats{}, fmt.Errorf("poly: %w", err)
	}
	run.details["beta_max"] = run.maxBeta
	run.details["degree_max"] = run.maxDegree
	run.details["rank_max"] = Rank(p.D, run.maxDegree)
	run.details["rows_per_degree"] = run.degreeRows
	run.details["exact_rows"] = run.exactRows
	run.details["eps_a"] = deg.epsA
	lse := lsebound.Bound(p, out.LSE, lsebound.SumError(run.sumErr), func(h int) []float64 { return plans[h].mu })
	return attn.Stats{Flops: run.flops, ErrorBound: run.bound, LSEBound: lse, ObservedError: chk.Observed, SampledRows: chk.Rows, Details: run.details}, nil
}

// runner carries one call's state across heads.
type runner[T attn.Float] struct {
	p          *attn.Problem[T]
	out        *attn.Output[T]
	deg        *degreeTable
	workers    int
	uOut       float64
	mu         sync.Mutex // guards the statistics below
	flops      float64
	bound      float64
	sumErr     float64 // largest relative error of a row's denominator
	maxBeta    float64
	maxDegree  int
	degreeRows map[int]int
	exactRows  int
	details    map[string]any
	// scratches are the workers' buffers, sized for scratchRank.
	scratches   []*scratch
	scratchRank int
}

// Cost returns the floating-point operations of the method for given
// sizes: key moments 2 L r (e+1), query products 2 sum_i r_i (e+1), plus
// building the features.
func Cost(keys int, ranks []int, e int, maxRank int) float64 {
	c := float64(keys) * float64(maxRank) * float64(2*(e+1)+1)
	for _, r := range ranks {
		c += float64(r) * float64(2*(e+1)+3)
	}
	return c
}

// costs is what checkCost computes about a planned call.
type costs struct {
	polyFlops, exactFlops, memory float64
	maxDegree                     int
	maxBeta, rank                 float64
}

// checkCost refuses inputs that would not fit the memory budget and
// records the cost prediction in the statistics.
func (run *runner[T]) checkCost(plans []*headPlan, budget float64) error {
	c, err := assessCost(run.p, plans, run.workers, budget)
	run.details["flops_predicted"] = c.polyFlops
	run.details["exact_flops"] = c.exactFlops
	run.details["predicted_slower_than_exact"] = c.polyFlops > c.exactFlops
	return err
}

// assessCost estimates flops and memory of the planned call and returns an
// error wrapping attn.ErrUnsupported if it would not fit the memory budget.
// A call predicted to cost more flops than exact attention still runs (an
// explicit request is honoured; auto compares the estimates).
func assessCost[T attn.Float](p *attn.Problem[T], plans []*headPlan, workers int, budget float64) (costs, error) {
	if budget == 0 {
		budget = DefaultMemoryBudget
	}
	var polyFlops, exactFlops float64
	maxG, maxB := 0, 0.0
	var rankOf []int // Rank(p.D, g) by degree, computed once each
	for h, hp := range plans {
		ranks := make([]int, p.N)
		g := 0
		for i, d := range hp.degree {
			rowExact := 2 * float64(rowKeys(p, h, i)) * float64(p.D+p.E)
			exactFlops += rowExact
			maxB = max(maxB, hp.beta[i])
			if d == exactRow {
				polyFlops += rowExact
				continue
			}
			for len(rankOf) <= d {
				rankOf = append(rankOf, Rank(p.D, len(rankOf)))
			}
			ranks[i] = rankOf[d]
			g = max(g, d)
		}
		maxG = max(maxG, g)
		polyFlops += Cost(hp.momentKeys(), ranks, p.E, Rank(p.D, g)) + hp.edgeFlops(p.D, p.E)
	}
	r := RankFloat(p.D, maxG)
	mem := 8 * r * (float64(p.E+1)*float64(2*workers+2+windowMatrices(plans, workers)) + float64(workers)*(keyBlock+queryBlock))
	c := costs{polyFlops: polyFlops, exactFlops: exactFlops, memory: mem, maxDegree: maxG, maxBeta: maxB, rank: r}
	if mem > budget {
		return c, unsupported("beta = %.3g needs degree %d and rank r = C(d+g, g) = %.3g in d = %d, about %.3g GB of working memory (budget %.3g GB); use the exact method",
			maxB, maxG, r, p.D, mem/1e9, budget/1e9)
	}
	return c, nil
}

// head computes every row of head h.
func (run *runner[T]) head(ctx context.Context, h int, hp *headPlan) error {
	p := run.p
	e1 := p.E + 1
	if hp.keys == 0 {
		for i := range p.N {
			run.finishEmpty(h, i)
		}
		return nil
	}
	hk, polys, err := run.prepareKeys(h, hp, false)
	if err != nil {
		return err
	}
	L, r := hk.L, hk.r
	run.mu.Lock()
	run.flops += float64(hp.momentKeys()) * float64(r) * float64(2*e1+1)
	run.mu.Unlock()
	polyRows, direct := hp.splitRows()
	if err := run.directRows(ctx, h, hp, hk, direct); err != nil {
		return err
	}
	if hp.win != nil {
		return run.window(ctx, h, hp, hk, polys, polyRows)
	}
	if !p.Causal {
		moments := make([]float64, r*e1)
		run.parallelBlocks(ctx, 0, (L+keyBlock-1)/keyBlock, func(scratch *scratch, b int) {
			hk.addMoments(scratch, b*keyBlock, min((b+1)*keyBlock, L), scratch.moments)
		}, func(s *scratch) { addTo(moments, s.moments) }, r)
		return run.queryRows(ctx, h, hp, hk, polys, polyRows, moments, L)
	}
	return run.causal(ctx, h, hp, hk, polys, polyRows)
}

// prepare normalises the keys of head h (which must have some), builds the
// monomial table and the polynomials its rows need, and records the head's
// bound and statistics.
func (run *runner[T]) prepare(h int, hp *headPlan) (*headKeys[T], map[int]polyexp.Approx, error) {
	return run.prepareKeys(h, hp, true)
}

// prepareKeys is prepare, with the key-major copy of the normalised keys
// (headKeys.uk) only if keyMajor: the forward reads the variable-major one
// alone.
func (run *runner[T]) prepareKeys(h int, hp *headPlan, keyMajor bool) (*headKeys[T], map[int]polyexp.Approx, error) {
	p := run.p
	g := 0
	for _, d := range hp.degree {
		g = max(g, d)
	}
	mono := newMonomials(p.D, g)
	r := len(mono.parent)
	// Normalised keys u_j = (k_j - mu) / R, stored variable-major so a
	// feature row over a block of keys is a contiguous product.
	L := hp.keys
	ut := make([]float64, p.D*L)
	var uk []float64
	if keyMajor {
		uk = make([]float64, L*p.D)
	}
	kh := p.KVHead(h)
	keys := p.K[kh*p.M*p.D:]
	chunks := (L + normChunk - 1) / normChunk
	parallel.For(context.Background(), run.workers, chunks, func(c int) {
		for j := c * normChunk; j < min((c+1)*normChunk, L); j++ {
			for t := range p.D {
				u := (float64(keys[j*p.D+t]) - hp.mu[t]) / hp.radius
				ut[t*L+j] = u
				if uk != nil {
					uk[j*p.D+t] = u
				}
			}
		}
	})
	polys := map[int]polyexp.Approx{}
	for _, d := range hp.degree {
		if _, ok := polys[d]; !ok && d != exactRow {
			a, err := run.deg.polynomial(d)
			if err != nil {
				return nil, nil, err
			}
			polys[d] = a
		}
	}
	hb, err := planBound(p, h, hp, run.deg, run.uOut)
	if err != nil {
		return nil, nil, err
	}
	se, err := planSumError(p.D, hp, run.deg)
	if err != nil {
		return nil, nil, err
	}
	run.mu.Lock()
	run.bound = max(run.bound, hb)
	run.sumErr = max(run.sumErr, se)
	run.maxDegree = max(run.maxDegree, g)
	for i, d := range hp.degree {
		run.maxBeta = max(run.maxBeta, hp.beta[i])
		if d == exactRow {
			run.exactRows++
		} else {
			run.degreeRows[d]++
		}
	}
	run.mu.Unlock()
	return &headKeys[T]{ut: ut, uk: uk, L: L, mono: mono, r: r, vals: p.V[kh*p.M*p.E:], e: p.E}, polys, nil
}

// normChunk is the keys per task of prepare's normalisation.
const normChunk = 1 << 14

// headKeys is one head's keys prepared for features.
type headKeys[T attn.Float] struct {
	ut   []float64 // d x L normalised keys, variable-major
	uk   []float64 // L x d the same, key-major, or nil (exact tiles then read ut)
	L    int
	mono *monomials
	r    int
	vals []T // the head's values, m x e
	e    int
}

func addTo(dst, src []float64) {
	for i, v := range src {
		dst[i] += v
	}
}

// scratch is one worker's buffers.
type scratch struct {
	feat    []float64 // r x keyBlock features, monomial-major
	vblock  []float64 // keyBlock x (e+1) values with a column of ones
	moments []float64 // r x (e+1) partial key moments
	h       []float64 // queryBlock x r query features
	y       []float64 // queryBlock x (e+1) results
	yt      []float64 // (e+1) x queryBlock results, transposed
	wt      []float64 // d x queryBlock scaled queries, variable-major
	limits  []int     // queryBlock key limits
	groups  [][]int   // a query block's rows by degree
	sums    []float64 // r feature-row sums of a key block
	vt      []float64 // (e+1) x 128 values of a key block, transposed, with ones
	upad    []float64 // d x 128 normalised keys of a last, partial block
	w       []float64 // queryBlock x d scaled queries
	scores  []float64 // queryBlock x keyBlock exponents, for keys added exactly
	grad    *gradScratch
}
