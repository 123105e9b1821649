package polyexp

import "math"

// The a-priori certificate. Everything here is closed-form (a few dozen
// float64 operations per degree), so DegreeFor is cheap and agrees exactly
// with the degree Symmetric and Interval choose. The float64 evaluation of
// these formulas has relative error far below the 1e-12 safety factor
// applied to each bound (safety).

const (
	// unitRoundoff is u = 2^-53: |fl(x) - x| <= u |x| for round-to-nearest
	// float64 in the normal range.
	unitRoundoff = 0x1p-53
	// safety inflates every float64-evaluated bound to cover the rounding
	// of its own evaluation.
	safety = 1 + 1e-12
	// maxRadius: beyond this radius the float64 coefficient-rounding floor
	// 2^-53 e^(2r) exceeds 1e17, so no relErr < 1 can be certified; bounds
	// return +Inf without evaluating series that would overflow.
	maxRadius = 40.0
)

// expUp returns e^l inflated by safety, and never 0 for finite l (an
// underflowing bound becomes the smallest positive float64, still >= e^l).
func expUp(l float64) float64 {
	if math.IsNaN(l) {
		return math.Inf(1)
	}
	v := math.Exp(l) * safety
	if v == 0 {
		return math.SmallestNonzeroFloat64
	}
	return v
}

func lgamma(x float64) float64 {
	v, _ := math.Lgamma(x)
	return v
}

// logBesselI returns log I_m(2h) for h > 0, the modified Bessel function of
// the first kind: I_m(2h) = sum_k h^(2k+m) / (k! (k+m)!). The series is
// summed until the (geometrically bounded) remainder is below 1e-17 of the
// sum, and that remainder bound is added, so the result is an upper bound up
// to float64 rounding.
func logBesselI(m int, h float64) float64 {
	h2 := h * h
	s, term := 1.0, 1.0
	for k := 0; k < 100000; k++ {
		ratio := h2 / (float64(k+1) * float64(k+1+m))
		term *= ratio
		s += term
		// Later ratios are smaller, so the rest is at most term*q/(1-q).
		q := h2 / (float64(k+2) * float64(k+2+m))
		if q <= 0.5 && term*q/(1-q) <= 1e-17*s {
			s += term * q / (1 - q)
			break
		}
	}
	return float64(m)*math.Log(h) - lgamma(float64(m+1)) + math.Log(s)
}

// interpBound returns a certified bound on max |p(y) - e^y| / e^y over
// [-r, r], where p is the degree-g Chebyshev interpolant of e^y at the
// first-kind Chebyshev points. It is the smaller of two proofs:
//
//  1. Aliasing (Chebyshev series). e^(rt) = I_0(r) + 2 sum_m I_m(r) T_m(t).
//     At the zeros of T_(g+1), T_(g+1) vanishes and every T_m, m >= g+2,
//     coincides with +-T_m' (m' <= g) or 0, so
//     |p - e^y| <= 2 I_(g+1)(r) + 4 sum_(m>=g+2) I_m(r)
//     <= 2 I_(g+1)(r) + 4 I_(g+2)(r) / (1 - r/(2(g+3)))
//     (termwise I_(m+1) <= I_m r/(2(m+1))).
//  2. Lagrange remainder: |p - e^y| <= r^(g+1) e^r / (2^g (g+1)!).
//
// Either absolute bound is divided by min e^y = e^-r.
func interpBound(g int, r float64) float64 {
	if r == 0 {
		return 0
	}
	if !(r <= maxRadius) {
		return math.Inf(1)
	}
	h := r / 2
	lag := float64(g+1)*math.Log(r) + 2*r - float64(g)*math.Ln2 - lgamma(float64(g+2))
	best := lag
	if q := h / float64(g+3); q < 1 {
		l1 := logBesselI(g+1, h)
		l2 := logBesselI(g+2, h)
		bes := l1 + math.Log(2+4*math.Exp(l2-l1)/(1-q)) + r
		best = math.Min(best, bes)
	}
	return expUp(best)
}

// monomialAbsSumBound returns S(g, r) >= sum_i |mu_i|, where mu_i are the
// monomial coefficients in t = y/r of the degree-g Chebyshev interpolant of
// e^(rt) on [-1, 1] (so sum_i |m_i| r^i <= S for the coefficients m_i in y).
//
// Proof. Interpolation is linear and e^(rt) = sum_j r^j t^j / j!, so
// p = sum_(j<=g) r^j t^j / j! + sum_(j>g) (r^j/j!) R_j with R_j the
// interpolant of t^j. Write t^j = L_j + H_j, H_j = sum_(k>g) w_k T_k its part
// above degree g, w_k = 2^(1-j) C(j, (j-k)/2) >= 0. Then R_j = L_j + alias(H_j)
// = t^j - H_j + alias(H_j), and with N(P) = sum of |monomial coefficients|,
// N(T_k) = |T_k(i)| = |(1+sqrt2)^k + (1-sqrt2)^k| / 2 <= kappa (1+sqrt2)^k
// (kappa = (1 + (1+sqrt2)^-2)/2 = 2 - sqrt2 for k >= 1), and aliasing maps
// T_k to +-T_k' (k' < k) or 0:
//
//	N(R_j) <= 1 + 2 sum_(k>g) w_k N(T_k) <= 1 + 4 kappa A^j sum_(m<=(j-g-1)/2) C(j,m) rho^m,
//
// A = (1+sqrt2)/2, rho = (1+sqrt2)^-2. The full binomial sum is (1+rho)^j and
// A (1+rho) = sqrt2, so beyond a cut-off J every term is at most
// (1 + 4 kappa) (sqrt2 r)^j / j!, whose tail is bounded geometrically.
func monomialAbsSumBound(g int, r float64) float64 {
	if r == 0 {
		return 1
	}
	if !(r <= maxRadius) {
		return math.Inf(1)
	}
	const (
		sqrt2 = math.Sqrt2
		kappa = 0.58578643762691 // >= 2 - sqrt2
	)
	A := (1 + sqrt2) / 2
	rho := 1 / ((1 + sqrt2) * (1 + sqrt2))
	term, sum := 1.0, 1.0 // r^j/j!
	for j := 1; j <= g; j++ {
		term *= r / float64(j)
		sum += term
	}
	Aj := math.Pow(A, float64(g))
	s2r := sqrt2 * r
	for j := g + 1; ; j++ {
		// Tail from j on: sum_(i>=j) (1+4kappa) (sqrt2 r)^i / i!.
		if float64(j+1) >= 2*s2r {
			lt := float64(j)*math.Log(s2r) - lgamma(float64(j+1))
			q := s2r / float64(j+1)
			tail := (1 + 4*kappa) * math.Exp(lt) / (1 - q)
			if tail <= 1e-6*sum || j > g+400 {
				sum += tail
				break
			}
		}
		term *= r / float64(j)
		Aj *= A
		// Partial binomial sum sum_(m=0..M) C(j,m) rho^m, M = (j-g-1)/2.
		M := (j - g - 1) / 2
		bs, bt := 1.0, 1.0
		for m := 0; m < M; m++ {
			bt *= float64(j-m) / float64(m+1) * rho
			bs += bt
		}
		sum += term * (1 + 4*kappa*Aj*bs)
	}
	return sum * safety
}

// arithSlack bounds, relative to e^x on the interval, the error of the
// prec-bit arithmetic that computes the interpolant's monomial coefficients:
// about 2^-(prec-110) of sum_i |mu_i| (values and DCT lose under 10 bits, the
// Chebyshev-to-monomial cancellation under 90, the sums under 10), i.e. below
// 2^-200 e^r in absolute terms relative to e^c, charged as 2^-180 e^(2r).
func arithSlack(r float64) float64 {
	if r == 0 {
		return 0
	}
	return math.Ldexp(math.Exp(2*r), -180)
}

// bound is the a-priori certificate of a degree-g float64 approximation on
// [c-r, c+r]: interpolation error + coefficient rounding
// (2^-53 sum_i |m_i| r^i <= 2^-53 S e^c, relative to e^(c-r)), plus the
// arithmetic slack and, for coefficients that underflow to subnormals, an
// absolute 2^-1075 per coefficient.
func bound(g int, r, c float64) float64 {
	if r == 0 {
		if c == 0 {
			return 0 // P = 1 exactly
		}
		return unitRoundoff // rounding of e^c
	}
	if !(r <= maxRadius) {
		return math.Inf(1)
	}
	ib := interpBound(g, r)
	rb := unitRoundoff * monomialAbsSumBound(g, r) * math.Exp(r) * safety
	sub := expUp(math.Log(float64(g+1)) + float64(g)*math.Log(math.Max(1, r)) - 1075*math.Ln2 - (c - r))
	return (ib + rb + arithSlack(r) + sub) * safety
}

// CertifiedBound returns the a-priori certified relative error of the
// degree-g approximation on [-radius, radius] (centre 0): the quantity
// DegreeFor and Symmetric compare with relErr. Planners that fix the degree
// first (say, to cap the feature count C(d+g, g)) use it to learn what error
// that degree buys. It is +Inf for degree < 0 or > MaxDegree, and for radius
// that is negative, NaN or too large to certify anything.
func CertifiedBound(degree int, radius float64) float64 {
	if degree < 0 || degree > MaxDegree || !(radius >= 0) || math.IsInf(radius, 1) {
		return math.Inf(1)
	}
	return bound(degree, radius, 0)
}
