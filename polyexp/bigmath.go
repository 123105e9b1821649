package polyexp

import (
	"math"
	"math/big"
	"sync"
)

// prec is the working precision (mantissa bits) of every high-precision
// step: exp and cos at the Chebyshev nodes, the discrete cosine transform
// that gives the Chebyshev coefficients, and the Chebyshev-to-monomial
// conversion. The conversion multiplies by integer coefficients of T_j up to
// about (1+sqrt2)^64 < 2^82 and cancels them again, so 320 bits leave more
// than 200 correct bits in every monomial coefficient; the package charges a
// generous 2^-180 e^(2r) for all of this arithmetic (see arithSlack).
const prec = 320

// guard is the number of extra bits used inside the elementary functions, so
// that their results are accurate to the full working precision.
const guard = 64

func newFloat() *big.Float { return new(big.Float).SetPrec(prec) }

func bigFromFloat64(x float64) *big.Float { return newFloat().SetFloat64(x) }

func bigFromInt(n int64) *big.Float { return newFloat().SetInt64(n) }

var (
	piOnce sync.Once
	piVal  *big.Float
)

// bigPi returns pi to prec+guard bits, by Machin's formula
// pi = 16 atan(1/5) - 4 atan(1/239). The caller must not modify the result.
func bigPi() *big.Float {
	piOnce.Do(func() {
		wp := uint(prec + guard)
		a := atanInv(5, wp)
		b := atanInv(239, wp)
		a.Mul(a, new(big.Float).SetPrec(wp).SetInt64(16))
		b.Mul(b, new(big.Float).SetPrec(wp).SetInt64(4))
		piVal = a.Sub(a, b)
	})
	return piVal
}

// atanInv returns atan(1/x) = sum_k (-1)^k / ((2k+1) x^(2k+1)) at precision wp.
func atanInv(x int64, wp uint) *big.Float {
	xx := new(big.Float).SetPrec(wp).SetInt64(x * x)
	pow := new(big.Float).SetPrec(wp).Quo(new(big.Float).SetPrec(wp).SetInt64(1), new(big.Float).SetPrec(wp).SetInt64(x))
	sum := new(big.Float).SetPrec(wp).Set(pow)
	term := new(big.Float).SetPrec(wp)
	for k := int64(1); ; k++ {
		pow.Quo(pow, xx)
		if pow.Sign() == 0 || pow.MantExp(nil) < -int(wp)-8 {
			break
		}
		term.Quo(pow, new(big.Float).SetPrec(wp).SetInt64(2*k+1))
		if k%2 == 1 {
			sum.Sub(sum, term)
		} else {
			sum.Add(sum, term)
		}
	}
	return sum
}

// bigExp returns e^x rounded to prec bits. It scales x down by 2^k until
// |x| < 2^-10, sums the Taylor series, and squares k times; the guard bits
// absorb the error growth of the squarings (k <= 20 for |x| <= 1000).
func bigExp(x *big.Float) *big.Float {
	if x.Sign() == 0 {
		return bigFromInt(1)
	}
	k := x.MantExp(nil) + 10 // |x| < 2^MantExp
	if k < 0 {
		k = 0
	}
	wp := uint(prec+guard) + uint(k)
	y := new(big.Float).SetPrec(wp).SetMantExp(x, -k)
	sum := new(big.Float).SetPrec(wp).SetInt64(1)
	term := new(big.Float).SetPrec(wp).SetInt64(1)
	for n := int64(1); ; n++ {
		term.Mul(term, y)
		term.Quo(term, new(big.Float).SetPrec(wp).SetInt64(n))
		if term.Sign() == 0 || term.MantExp(nil) < -int(wp)-4 {
			break
		}
		sum.Add(sum, term)
	}
	for i := 0; i < k; i++ {
		sum.Mul(sum, sum)
	}
	return newFloat().Set(sum)
}

// bigCos returns cos(x) for |x| <= 4 by its Taylor series, accurate to about
// prec+guard bits in absolute terms (the largest term is below 2^4).
func bigCos(x *big.Float) *big.Float {
	wp := uint(prec + guard)
	x2 := new(big.Float).SetPrec(wp).Mul(x, x)
	sum := new(big.Float).SetPrec(wp).SetInt64(1)
	term := new(big.Float).SetPrec(wp).SetInt64(1)
	for n := int64(1); ; n++ {
		term.Mul(term, x2)
		term.Quo(term, new(big.Float).SetPrec(wp).SetInt64((2*n-1)*(2*n)))
		term.Neg(term)
		if term.Sign() == 0 || term.MantExp(nil) < -int(wp)-8 {
			break
		}
		sum.Add(sum, term)
	}
	return newFloat().Set(sum)
}

// roundUp returns the smallest float64 >= x (x finite, non-negative in our
// uses), so bounds stay bounds after leaving big arithmetic.
func roundUp(x *big.Float) float64 {
	f, acc := x.Float64()
	if acc == big.Below {
		f = math.Nextafter(f, math.Inf(1))
	}
	return f
}

// chebyshevInterpolant returns the monomial coefficients m_0..m_g (in
// y = x - c, at prec bits) of the polynomial that interpolates e^x = e^c e^y
// at the g+1 Chebyshev points of the first kind on [c-r, c+r]:
// y_k = r cos((2k+1) pi / (2(g+1))), k = 0..g.
//
// Steps: values f_k = e^c e^(r t_k); Chebyshev coefficients
// b_j = (2/n) sum_k f_k T_j(t_k) (b_0 halved), n = g+1; monomial coefficients
// in t = y/r from the exact integer coefficients of T_j; finally m_i = mu_i / r^i.
// Requires r > 0.
func chebyshevInterpolant(g int, c, r float64) []*big.Float {
	n := g + 1
	pi := bigPi()
	// Nodes t_k; t_{g-k} = -t_k, and the middle node (n odd) is exactly 0.
	t := make([]*big.Float, n)
	for k := 0; k < n; k++ {
		if j := g - k; j < k {
			t[k] = newFloat().Neg(t[j])
			continue
		}
		if 2*k+1 == n {
			t[k] = newFloat()
			continue
		}
		theta := new(big.Float).SetPrec(prec+guard).Mul(pi, new(big.Float).SetPrec(prec+guard).SetInt64(int64(2*k+1)))
		theta.Quo(theta, new(big.Float).SetPrec(prec+guard).SetInt64(int64(2*n)))
		t[k] = bigCos(theta)
	}
	rb := bigFromFloat64(r)
	ec := bigExp(bigFromFloat64(c))
	f := make([]*big.Float, n)
	for k := range t {
		arg := newFloat().Mul(rb, t[k])
		f[k] = newFloat().Mul(ec, bigExp(arg))
	}
	// Discrete cosine transform via the three-term recurrence per node.
	b := make([]*big.Float, n)
	for j := range b {
		b[j] = newFloat()
	}
	tmp := newFloat()
	for k := 0; k < n; k++ {
		tPrev := bigFromInt(1)       // T_0(t_k)
		tCur := newFloat().Set(t[k]) // T_1(t_k)
		b[0].Add(b[0], f[k])
		if n > 1 {
			b[1].Add(b[1], tmp.Mul(f[k], tCur))
		}
		twoT := newFloat().Mul(t[k], bigFromInt(2))
		for j := 2; j < n; j++ {
			next := newFloat().Mul(twoT, tCur)
			next.Sub(next, tPrev)
			tPrev, tCur = tCur, next
			b[j].Add(b[j], tmp.Mul(f[k], tCur))
		}
	}
	scale := newFloat().Quo(bigFromInt(2), bigFromInt(int64(n)))
	for j := range b {
		b[j].Mul(b[j], scale)
	}
	b[0].Quo(b[0], bigFromInt(2))

	// Monomial coefficients in t: mu = sum_j b_j T_j, with T_j's integer
	// coefficients (exact at prec bits: they are below 2^(j+1)).
	mu := make([]*big.Float, n)
	for i := range mu {
		mu[i] = newFloat()
	}
	prev := make([]*big.Float, n) // T_{j-1}
	cur := make([]*big.Float, n)  // T_j
	for i := range prev {
		prev[i] = newFloat()
		cur[i] = newFloat()
	}
	prev[0].SetInt64(1) // T_0 = 1
	mu[0].Add(mu[0], b[0])
	if n > 1 {
		cur[1].SetInt64(1) // T_1 = t
		mu[1].Add(mu[1], b[1])
	}
	for j := 2; j < n; j++ {
		next := make([]*big.Float, n)
		for i := range next {
			next[i] = newFloat()
			if i > 0 {
				next[i].Mul(cur[i-1], bigFromInt(2))
			}
			next[i].Sub(next[i], prev[i])
		}
		prev, cur = cur, next
		for i := 0; i <= j; i++ {
			if cur[i].Sign() != 0 {
				mu[i].Add(mu[i], tmp.Mul(b[j], cur[i]))
			}
		}
	}
	// Back from t = y/r to y.
	rpow := bigFromInt(1)
	for i := range mu {
		mu[i].Quo(mu[i], rpow)
		rpow.Mul(rpow, rb)
	}
	return mu
}
