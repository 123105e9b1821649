// Package polyexp builds the lowest-degree polynomial approximation of e^x
// on an interval whose relative error carries a proof, in the monomial basis
// that the polynomial-attention feature map (docs/ALGORITHMS.md section 3) needs.
//
// Why: polynomial-method attention replaces exp(s q.k) by P(s q.k), and the
// user-facing guarantee |T - Att| <= eps max|V| holds only if
// |P(x) - e^x| <= eps_A e^x on the whole range of s q.k. A sampled error is
// not a guarantee, so every Approx carries RelErr, an analytic bound.
//
// Method: P interpolates e^x at the g+1 Chebyshev points of [c-r, c+r].
// Values, Chebyshev coefficients and the (ill-conditioned) conversion to
// monomials are computed with 320-bit math/big arithmetic, then rounded to
// float64. The certificate (see CertifiedBound) is
//
//	interpolation bound                      min(Chebyshev-aliasing bound, Lagrange bound), / e^-r
//	+ coefficient rounding                   2^-53 sum_i |m_i| r^i, / e^(c-r)
//	+ high-precision arithmetic slack        2^-180 e^(2r)
//
// The degree is the smallest g <= MaxDegree whose a-priori certificate (with
// the rounding term bounded analytically) is <= relErr; the returned RelErr
// replaces the a-priori rounding term by the exact rounding error of the
// float64 coefficients, so RelErr <= a-priori certificate <= relErr.
//
// Floors. Rounding the monomial coefficients to float64 costs about
// 2^-53 e^(2r) relative at the left end of the interval (the terms c_j y^j,
// of total size about e^r, cancel to e^-r): relErr below roughly
// 1.1e-16 e^(2 beta) is unreachable, and beta above about 18 is unreachable
// for any relErr < 1. Evaluating P in floating point costs more again (about
// 2g 2^-53 e^(2r) for Horner); that part is not in RelErr, because it
// depends on how the caller evaluates: see Approx.AbsSum, EvalErr and
// TotalRelErr. Narrow or centred intervals (centre the keys, window the
// range) are the remedy.
//
// Certified degree versus the measured minimum degree of the exact Chebyshev
// interpolant (largest relative error over ~1000 sample points and the
// Chebyshev extrema, 200-bit arithmetic; the measured column reproduces the
// table in docs/ALGORITHMS.md section 3):
//
//	beta    eps=1e-2   1e-3      1e-4      1e-6      (certified / measured)
//	0.25     2 / 2      2 / 2     3 / 3     4 / 4
//	0.5      2 / 2      3 / 3     4 / 4     6 / 6
//	1        4 / 4      5 / 5     6 / 6     7 / 7
//	2        6 / 6      7 / 7     8 / 8    10 / 10
//	4       11 / 10    12 / 11   13 / 13   15 / 15
//	8       19 / 19    21 / 20   22 / 22   25 / 24
//
// The certificate overestimates the true error by a factor between 1 (small
// beta) and about 2.2 (beta >= 4), which costs at most one degree.
// TestDegreeTable regenerates this table and fails if a certified degree is
// below the measured one or more than 2 above it.
//
// Cost: DegreeFor takes a few microseconds; Symmetric and Interval take
// 0.3-2.5 ms (the 320-bit construction), so callers that need the same
// (beta, eps) repeatedly should keep the Approx.
package polyexp

import (
	"errors"
	"fmt"
	"math"
	"math/big"
)

// MaxDegree caps the degree. The feature map has C(d+g, g) columns, so
// degrees beyond a few dozen are useless to attention, and the float64
// rounding floor makes higher degrees pointless anyway; the cap also bounds
// the cost of the 320-bit construction.
const MaxDegree = 64

// ErrInvalid is wrapped by errors for parameters that can never make sense
// (negative, NaN or infinite beta, relErr outside (0, 1), lo > hi, ...), so
// callers can tell a programming error from an unreachable accuracy.
var ErrInvalid = errors.New("polyexp: invalid parameter")

// ErrUnreachable is wrapped by errors for valid parameters that no float64
// polynomial of degree <= MaxDegree can certify: the caller (a planner)
// should then fall back to exact attention or shrink the range.
var ErrUnreachable = errors.New("polyexp: accuracy unreachable")

// Approx is a polynomial P with |P(x) - e^x| <= RelErr * e^x for every real
// x in [Center-Radius, Center+Radius], where
//
//	P(x) = sum_j Coeffs[j] * (x - Center)^j
//
// with the float64 values of Coeffs taken exactly. The monomial basis in
// y = x - Center is what the attention feature map expands; for Symmetric,
// Center is 0 and y = x.
type Approx struct {
	// Center and Radius describe the certified interval. Interval rounds
	// Radius up so that the interval contains [lo, hi].
	Center, Radius float64
	// Degree is len(Coeffs)-1; attention features grow like C(d+Degree, Degree).
	Degree int
	// Coeffs are the monomial coefficients in y = x - Center, lowest first.
	Coeffs []float64
	// RelErr is the certified relative error: InterpErr + RoundErr.
	RelErr float64
	// InterpErr is the certified error of the exact Chebyshev interpolant.
	InterpErr float64
	// RoundErr is the exact cost of rounding the coefficients to float64,
	// sum_j |c_j - Coeffs[j]| Radius^j / e^(Center-Radius), plus the slack
	// for the high-precision arithmetic; it shows how close to the float64
	// floor the approximation sits.
	RoundErr float64
	// AbsSum = sum_j |Coeffs[j]| Radius^j (rounded up) bounds sum_j
	// |Coeffs[j] y^j| on the interval, the size of the terms that cancel
	// down to e^x. Why it matters: a caller that evaluates P in floating
	// point other than by Eval (for example through the feature map
	// U1 U2^T) makes an absolute error of at most gamma_n AbsSum, with
	// gamma_n = n u/(1 - n u), u = 2^-53 (or 2^-24 in float32), and n the
	// number of roundings along any one term's path (forming the monomial,
	// scaling, summing). Divide by e^(Center-Radius) for a relative bound;
	// it grows like e^(2 Radius).
	AbsSum float64
}

// Symmetric returns the lowest-degree Approx on [-beta, beta] whose
// certified RelErr is <= relErr. beta is the bound on |s q.k| (after
// centring the keys); relErr is the relative accuracy eps_A wanted of every
// attention-matrix entry. beta = 0 gives degree 0, Coeffs [1] and RelErr 0.
func Symmetric(beta, relErr float64) (Approx, error) {
	if err := checkBeta(beta, relErr); err != nil {
		return Approx{}, err
	}
	return build(0, beta, relErr, fmt.Sprintf("beta=%g", beta))
}

// Interval returns the lowest-degree Approx on [lo, hi] whose certified
// RelErr is <= relErr, expanded around the centre c = (lo+hi)/2:
// P(x) = e^c Q(x-c) with Q approximating e^y on [-r, r], r = (hi-lo)/2, and
// e^c folded into Coeffs. Windows [0, t] (the exponent after subtracting a
// row minimum) use it; its degree is DegreeFor(a.Radius, relErr) (except for
// intervals reaching the float64 exponent limits, where subnormal
// coefficients are charged too). lo and hi must lie in [-700, 700] so that
// e^x and the coefficients stay in float64 range.
func Interval(lo, hi, relErr float64) (Approx, error) {
	desc := fmt.Sprintf("interval [%g, %g]", lo, hi)
	if math.IsNaN(lo) || math.IsNaN(hi) || math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		return Approx{}, fmt.Errorf("%w: %s: lo and hi must be finite numbers", ErrInvalid, desc)
	}
	if lo > hi {
		return Approx{}, fmt.Errorf("%w: %s: lo must not exceed hi (swap them)", ErrInvalid, desc)
	}
	if lo < -700 || hi > 700 {
		return Approx{}, fmt.Errorf("%w: %s: lo and hi must lie in [-700, 700] so that e^x stays a normal float64; shift the exponent (softmax is invariant to a per-row constant)", ErrInvalid, desc)
	}
	if err := checkEps(relErr, desc); err != nil {
		return Approx{}, err
	}
	c := lo/2 + hi/2
	// r = max(hi-c, c-lo), computed exactly and rounded up.
	bc := bigFromFloat64(c)
	d1 := newFloat().Sub(bigFromFloat64(hi), bc)
	d2 := newFloat().Sub(bc, bigFromFloat64(lo))
	if d2.Cmp(d1) > 0 {
		d1 = d2
	}
	r := roundUp(d1)
	return build(c, r, relErr, desc)
}

// DegreeFor returns the degree Symmetric(beta, relErr) would choose, without
// building coefficients: a closed-form certificate per candidate degree,
// microseconds per call, so a planner can call it per query row (per-row
// beta_i) or per candidate block. It returns the same errors as Symmetric.
func DegreeFor(beta, relErr float64) (int, error) {
	if err := checkBeta(beta, relErr); err != nil {
		return 0, err
	}
	return selectDegree(beta, 0, relErr, fmt.Sprintf("beta=%g", beta))
}

// Eval returns P(x) in float64 by Horner's rule in y = x - Center. For x in
// the interval, |Eval(x) - e^x| <= TotalRelErr() e^x; outside it nothing is
// promised.
func (a Approx) Eval(x float64) float64 {
	y := x - a.Center
	p := 0.0
	for j := len(a.Coeffs) - 1; j >= 0; j-- {
		p = p*y + a.Coeffs[j]
	}
	return p
}

// EvalErr bounds |Eval(x) - P(x)| (absolute) for x in the interval: the
// Horner rounding error gamma_(2g) AbsSum (Higham, Accuracy and Stability,
// eq. 5.3; fused multiply-adds only help), plus, when Center != 0, the error
// of forming y = x - Center (|dy| <= 2^-53 Radius, times max|P'| <=
// sum_j j |Coeffs[j]| Radius^(j-1)). fl(x - Center) stays in [-Radius, Radius]
// because rounding is monotone.
func (a Approx) EvalErr() float64 {
	g := float64(a.Degree)
	gamma := 2 * g * unitRoundoff / (1 - 2*g*unitRoundoff)
	e := gamma * a.AbsSum
	if a.Center != 0 {
		d, rp := 0.0, 1.0
		for j := 1; j < len(a.Coeffs); j++ {
			d += float64(j) * math.Abs(a.Coeffs[j]) * rp * a.Radius
			rp *= a.Radius
		}
		e += unitRoundoff * d
	}
	return e * (1 + float64(4*a.Degree+8)*unitRoundoff)
}

// TotalRelErr bounds |Eval(x) - e^x| / e^x for x in the interval: RelErr plus
// EvalErr divided by min e^x = e^(Center-Radius). Use it when P is evaluated
// by Eval itself; for large Radius the evaluation term dominates RelErr.
func (a Approx) TotalRelErr() float64 {
	lowArg := math.Nextafter(a.Center-a.Radius, math.Inf(-1))
	low := math.Exp(lowArg) * (1 - 1e-14)
	return (a.RelErr + a.EvalErr()/low) * (1 + 4*unitRoundoff)
}

func checkBeta(beta, relErr float64) error {
	desc := fmt.Sprintf("beta=%g", beta)
	if math.IsNaN(beta) || math.IsInf(beta, 0) || beta < 0 {
		return fmt.Errorf("%w: %s eps=%g: beta must be a finite number >= 0 (the bound on |s q.k|)", ErrInvalid, desc, relErr)
	}
	if beta > 700 {
		return fmt.Errorf("%w: %s eps=%g: beta must be <= 700 so that e^beta is a float64 (and beta above about 18 is unreachable anyway); centre the keys or use exact attention", ErrInvalid, desc, relErr)
	}
	return checkEps(relErr, desc)
}

func checkEps(relErr float64, desc string) error {
	if math.IsNaN(relErr) || !(relErr > 0 && relErr < 1) {
		return fmt.Errorf("%w: %s eps=%g: the relative error eps must lie strictly between 0 and 1", ErrInvalid, desc, relErr)
	}
	return nil
}

// selectDegree returns the smallest g <= MaxDegree with bound(g, r, c) <= eps.
func selectDegree(r, c, eps float64, desc string) (int, error) {
	// Both interpolation bounds are >= 2 (r/2)^(g+1)/(g+1)! e^r (the first
	// term of the Bessel series), which costs one addition per degree:
	// degrees whose cheap lower bound already exceeds eps are skipped
	// without evaluating the full certificate.
	logEps := math.Log(eps)
	logLow := math.Ln2 + r // log of 2 (r/2)^(g+1)/(g+1)! e^r, built up below
	for g := 0; g <= MaxDegree; g++ {
		if r > 0 {
			logLow += math.Log(r/2) - math.Log(float64(g+1))
			if logLow > logEps+1e-6 {
				continue
			}
		}
		// bound >= interpBound, so skip the rounding term while the
		// interpolation error alone is too large.
		if !(interpBound(g, r) <= eps) {
			continue
		}
		if bound(g, r, c) <= eps {
			return g, nil
		}
	}
	// Failure: report the best achievable certificate and what limits it.
	best, bestG := math.Inf(1), -1
	for g := 0; g <= MaxDegree; g++ {
		if b := bound(g, r, c); b < best {
			best, bestG = b, g
		}
	}
	floor := unitRoundoff * math.Exp(2*r)
	if interpBound(MaxDegree, r) > eps {
		return 0, fmt.Errorf("%w: %s eps=%g needs degree > %d (interpolation error alone at degree %d is %.3g); raise eps or reduce the range (centre the keys, split into narrower windows)",
			ErrUnreachable, desc, eps, MaxDegree, MaxDegree, interpBound(MaxDegree, r))
	}
	return 0, fmt.Errorf("%w: %s eps=%g is below the float64 floor: the best certified error is %.3g (degree %d), limited by rounding the monomial coefficients (about 2^-53 e^(2r) = %.3g at r=%g); raise eps to at least %.3g or reduce the range (centre the keys, split into narrower windows)",
		ErrUnreachable, desc, eps, best, bestG, floor, r, best)
}

// build selects the degree and constructs the Approx on [c-r, c+r].
func build(c, r, eps float64, desc string) (Approx, error) {
	g, err := selectDegree(r, c, eps, desc)
	if err != nil {
		return Approx{}, err
	}
	a := Approx{Center: c, Radius: r, Degree: g}
	var m []*big.Float
	if r == 0 {
		m = []*big.Float{bigExp(bigFromFloat64(c))}
	} else {
		m = chebyshevInterpolant(g, c, r)
	}
	rb := bigFromFloat64(r)
	rpow := bigFromInt(1)
	roundSum := newFloat()
	absSum := newFloat()
	a.Coeffs = make([]float64, len(m))
	for i, mi := range m {
		f, _ := mi.Float64()
		a.Coeffs[i] = f
		bf := bigFromFloat64(f)
		d := newFloat().Sub(mi, bf)
		d.Abs(d).Mul(d, rpow)
		roundSum.Add(roundSum, d)
		absSum.Add(absSum, bf.Abs(bf).Mul(bf, rpow))
		rpow.Mul(rpow, rb)
	}
	low := bigExp(newFloat().Sub(bigFromFloat64(c), rb)) // e^(c-r)
	roundSum.Quo(roundSum, low)
	a.AbsSum = roundUp(absSum) * safety
	a.InterpErr = interpBound(g, r)
	slack := arithSlack(r)
	if c != 0 {
		slack += math.Ldexp(1, -250) // e^c computed to prec bits
	}
	a.RoundErr = (roundUp(roundSum) + slack) * safety
	a.RelErr = (a.InterpErr + a.RoundErr) * safety
	return a, nil
}
