package polyexp

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"sync"
	"testing"
)

// checkPrec is the precision of the reference evaluation in the tests. The
// polynomial's terms reach AbsSum <= e^16 while the result can be e^-16, so
// 200 bits leave over 150 correct bits in every measured relative error.
const checkPrec = 200

func refFloat() *big.Float { return new(big.Float).SetPrec(checkPrec) }

var (
	expCacheMu sync.Mutex
	expCache   = map[[2]float64]*big.Float{}
)

// refExp returns e^(c + y), exactly enough, for float64 c and y. Results are
// cached: the same points recur for every eps.
func refExp(c, y float64) *big.Float {
	key := [2]float64{c, y}
	expCacheMu.Lock()
	v, ok := expCache[key]
	expCacheMu.Unlock()
	if ok {
		return v
	}
	v = bigExp(newFloat().Add(bigFromFloat64(c), bigFromFloat64(y)))
	expCacheMu.Lock()
	expCache[key] = v
	expCacheMu.Unlock()
	return v
}

// evalBig evaluates sum_j coeffs[j] y^j exactly enough (checkPrec bits).
func evalBig(coeffs []float64, y *big.Float) *big.Float {
	p := refFloat()
	tmp := refFloat()
	for j := len(coeffs) - 1; j >= 0; j-- {
		p.Mul(p, y)
		p.Add(p, tmp.SetFloat64(coeffs[j]))
	}
	return p
}

// relErrAt returns |p - e| / e as float64.
func relErrAt(p, e *big.Float) float64 {
	d := refFloat().Sub(p, e)
	d.Abs(d).Quo(d, e)
	f, _ := d.Float64()
	return f
}

// samplePoints returns y values in [-r, r]: both endpoints, the Chebyshev
// extrema r cos(j pi / g) and nodes r cos((2j+1) pi / (2g+2)) of the degree
// under test, the extrema of neighbouring degrees (where interpolation
// errors peak), and a uniform grid of n+1 points. All are float64, exactly
// representable, and clamped to [-r, r].
func samplePoints(r float64, g, n int) []float64 {
	var ys []float64
	add := func(y float64) {
		ys = append(ys, math.Max(-r, math.Min(r, y)))
	}
	add(-r)
	add(r)
	for _, gg := range []int{g - 1, g, g + 1, g + 2} {
		if gg < 1 {
			continue
		}
		for j := 0; j <= gg; j++ {
			add(r * math.Cos(float64(j)*math.Pi/float64(gg)))
			add(r * math.Cos(float64(2*j+1)*math.Pi/float64(2*gg+2)))
		}
	}
	for i := 0; n > 0 && i <= n; i++ {
		add(-r + 2*r*float64(i)/float64(n))
	}
	return ys
}

// verify checks an Approx against the reference at many points: the exact
// polynomial (float64 coefficients taken exactly) must be within RelErr, and
// Eval within TotalRelErr. It returns the largest measured relative error.
func verify(t *testing.T, name string, a Approx, nGrid int) float64 {
	t.Helper()
	worst := 0.0
	for _, y := range samplePoints(a.Radius, a.Degree, nGrid) {
		yb := bigFromFloat64(y)
		e := refExp(a.Center, y)
		got := relErrAt(evalBig(a.Coeffs, yb), e)
		if !(got <= a.RelErr) {
			t.Errorf("%s: at y=%g: |P(y)-e^x|/e^x = %.6g exceeds certified RelErr %.6g", name, y, got, a.RelErr)
			return got
		}
		worst = math.Max(worst, got)
		// Float64 evaluation, including forming y = x - Center.
		x := a.Center + y
		if x < a.Center-a.Radius || x > a.Center+a.Radius {
			continue // x rounded out of the interval; Eval promises nothing
		}
		ex := refExp(x, 0)
		ev := relErrAt(refFloat().SetFloat64(a.Eval(x)), ex)
		if !(ev <= a.TotalRelErr()) {
			t.Errorf("%s: at x=%g: |Eval(x)-e^x|/e^x = %.6g exceeds TotalRelErr %.6g", name, x, ev, a.TotalRelErr())
			return got
		}
	}
	return worst
}

// checkUnreachable asserts that an ErrUnreachable is legitimate: no degree
// up to MaxDegree meets eps by the certificate.
func checkUnreachable(t *testing.T, name string, err error, r, c, eps float64) {
	t.Helper()
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("%s: got error %v, want ErrUnreachable", name, err)
		return
	}
	for g := 0; g <= MaxDegree; g++ {
		if b := bound(g, r, c); b <= eps {
			t.Errorf("%s: reported unreachable, but degree %d certifies %.3g <= eps", name, g, b)
			return
		}
	}
	if !strings.Contains(err.Error(), "eps=") || !strings.Contains(err.Error(), "raise eps") {
		t.Errorf("%s: error message %q does not say which eps and what to change", name, err)
	}
}

// checkChosen asserts the properties of the degree choice: RelErr <= eps,
// RelErr no larger than the a-priori certificate, and minimality (degree-1
// fails the same certificate).
func checkChosen(t *testing.T, name string, a Approx, eps float64) {
	t.Helper()
	if len(a.Coeffs) != a.Degree+1 {
		t.Errorf("%s: len(Coeffs)=%d, Degree=%d", name, len(a.Coeffs), a.Degree)
	}
	if !(a.RelErr <= eps) {
		t.Errorf("%s: RelErr %.6g exceeds requested eps %g", name, a.RelErr, eps)
	}
	cb := bound(a.Degree, a.Radius, a.Center)
	if !(a.RelErr <= cb*(1+1e-9)) {
		t.Errorf("%s: a-posteriori RelErr %.6g exceeds a-priori certificate %.6g", name, a.RelErr, cb)
	}
	if math.Abs(a.RelErr-(a.InterpErr+a.RoundErr)) > 1e-9*a.RelErr {
		t.Errorf("%s: RelErr %.6g != InterpErr %.6g + RoundErr %.6g", name, a.RelErr, a.InterpErr, a.RoundErr)
	}
	if a.Degree > 0 {
		if prev := bound(a.Degree-1, a.Radius, a.Center); prev <= eps {
			t.Errorf("%s: degree %d chosen but degree %d already certifies %.6g <= eps", name, a.Degree, a.Degree-1, prev)
		}
	}
}

func TestBigMath(t *testing.T) {
	const piDigits = "3.14159265358979323846264338327950288419716939937510582097494459230781640628620899862803482534211706798214808651"
	const eDigits = "2.71828182845904523536028747135266249775724709369995957496696762772407663035354759457138217852516642742746"
	tol := new(big.Float).SetMantExp(big.NewFloat(1), -310)
	check := func(name string, got *big.Float, digits string) {
		want, _, err := big.ParseFloat(digits, 10, prec+guard, big.ToNearestEven)
		if err != nil {
			t.Fatal(err)
		}
		d := new(big.Float).SetPrec(prec+guard).Sub(got, want)
		if d.Abs(d).Cmp(tol) > 0 {
			t.Errorf("%s = %s, want %s", name, got.Text('g', 60), digits)
		}
	}
	check("pi", bigPi(), piDigits)
	check("e", bigExp(bigFromInt(1)), eDigits)
	for _, x := range []float64{-700, -30, -1.5, -1e-9, 1e-300, 0.1, 0.5, 2, 17.25, 300, 709} {
		got, _ := bigExp(bigFromFloat64(x)).Float64()
		if want := math.Exp(x); math.Abs(got-want) > 2e-16*want {
			t.Errorf("bigExp(%g) = %g, math.Exp = %g", x, got, want)
		}
	}
	// exp(a) exp(-a) = 1 to nearly full precision.
	for _, x := range []float64{0.3, 7, 40, 500} {
		p := newFloat().Mul(bigExp(bigFromFloat64(x)), bigExp(bigFromFloat64(-x)))
		p.Sub(p, bigFromInt(1))
		if p.Abs(p).Cmp(new(big.Float).SetMantExp(big.NewFloat(1), -300)) > 0 {
			t.Errorf("exp(%g) exp(-%g) - 1 = %s", x, x, p.Text('g', 5))
		}
	}
	// cos(pi/3) = 1/2, cos(pi) = -1, and agreement with math.Cos.
	third := newFloat().Quo(bigPi(), bigFromInt(3))
	c := bigCos(third)
	c.Sub(c, new(big.Float).SetFloat64(0.5))
	if c.Abs(c).Cmp(new(big.Float).SetMantExp(big.NewFloat(1), -300)) > 0 {
		t.Errorf("cos(pi/3) - 1/2 = %s", c.Text('g', 5))
	}
	c = bigCos(bigPi())
	c.Add(c, bigFromInt(1))
	if c.Abs(c).Cmp(new(big.Float).SetMantExp(big.NewFloat(1), -300)) > 0 {
		t.Errorf("cos(pi) + 1 = %s", c.Text('g', 5))
	}
	for _, x := range []float64{0, 0.1, 1, 2.5, 3.1} {
		got, _ := bigCos(bigFromFloat64(x)).Float64()
		if math.Abs(got-math.Cos(x)) > 2e-16 {
			t.Errorf("bigCos(%g) = %g, math.Cos = %g", x, got, math.Cos(x))
		}
	}
}

var (
	testBetas = []float64{0, 1e-3, 0.1, 0.25, 0.5, 1, 1.7, 2, 3, 4, 6, 8, 10, 12, 16}
	testEps   = []float64{1e-1, 1e-2, 1e-3, 1e-4, 1e-6, 1e-8, 1e-10, 1e-12}
)

func TestSymmetricCertified(t *testing.T) {
	type job struct{ beta, eps float64 }
	var jobs []job
	for _, b := range testBetas {
		for _, e := range testEps {
			jobs = append(jobs, job{b, e})
		}
	}
	var mu sync.Mutex
	lines := []string{}
	var wg sync.WaitGroup
	ch := make(chan job)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ch {
				name := fmt.Sprintf("Symmetric(%g, %g)", j.beta, j.eps)
				a, err := Symmetric(j.beta, j.eps)
				dg, derr := DegreeFor(j.beta, j.eps)
				if (err == nil) != (derr == nil) {
					t.Errorf("%s: error %v but DegreeFor error %v", name, err, derr)
					continue
				}
				if err != nil {
					checkUnreachable(t, name, err, j.beta, 0, j.eps)
					mu.Lock()
					lines = append(lines, fmt.Sprintf("beta=%-6g eps=%-6g unreachable", j.beta, j.eps))
					mu.Unlock()
					continue
				}
				if dg != a.Degree {
					t.Errorf("%s: degree %d, DegreeFor says %d", name, a.Degree, dg)
				}
				if a.Center != 0 || a.Radius != j.beta {
					t.Errorf("%s: interval centre %g radius %g", name, a.Center, a.Radius)
				}
				checkChosen(t, name, a, j.eps)
				worst := verify(t, name, a, 3000)
				mu.Lock()
				lines = append(lines, fmt.Sprintf("beta=%-6g eps=%-6g g=%2d RelErr=%.3g measured=%.3g (ratio %.2f) RoundErr=%.2g AbsSum=%.3g TotalRelErr=%.3g",
					j.beta, j.eps, a.Degree, a.RelErr, worst, worst/math.Max(a.RelErr, 1e-300), a.RoundErr, a.AbsSum, a.TotalRelErr()))
				mu.Unlock()
			}
		}()
	}
	for _, j := range jobs {
		ch <- j
	}
	close(ch)
	wg.Wait()
	for _, l := range lines {
		t.Log(l)
	}
	// beta = 0: the constant 1, exactly.
	a, err := Symmetric(0, 1e-12)
	if err != nil || a.Degree != 0 || len(a.Coeffs) != 1 || a.Coeffs[0] != 1 || a.RelErr != 0 {
		t.Errorf("Symmetric(0, 1e-12) = %+v, %v; want degree 0, Coeffs [1], RelErr 0", a, err)
	}
}

// measuredErrors returns, for g = 0..maxG, the largest sampled relative
// error of the exact (prec-bit, unrounded) Chebyshev interpolant on [-r, r].
// It stops after the first degree whose error is below stopAt.
func measuredErrors(r float64, maxG int, stopAt float64) []float64 {
	ys := samplePoints(r, 0, 1000)
	var errs []float64
	for g := 0; g <= maxG; g++ {
		m := chebyshevInterpolant(g, 0, r)
		for j := range m {
			m[j] = refFloat().Set(m[j])
		}
		worst := 0.0
		for _, y := range append(append([]float64(nil), ys...), samplePoints(r, g, 0)...) {
			yb := bigFromFloat64(y)
			p := refFloat()
			for j := len(m) - 1; j >= 0; j-- {
				p.Mul(p, yb)
				p.Add(p, m[j])
			}
			worst = math.Max(worst, relErrAt(p, refExp(0, y)))
		}
		errs = append(errs, worst)
		if worst < stopAt {
			break
		}
	}
	return errs
}

func TestDegreeTable(t *testing.T) {
	betas := []float64{0.25, 0.5, 1, 2, 4, 8}
	epss := []float64{1e-2, 1e-3, 1e-4, 1e-6}
	// Measured minimum degrees quoted in docs/ALGORITHMS.md section 3.
	quoted := map[float64][]int{
		0.25: {2, 2, 3, 4}, 0.5: {2, 3, 4, 6}, 1: {4, 5, 6, 7},
		2: {6, 7, 8, 10}, 4: {10, 11, 13, 15}, 8: {19, 20, 22, 24},
	}
	var b strings.Builder
	fmt.Fprintf(&b, "certified / measured (quoted) minimum degree\n%-6s", "beta")
	for _, e := range epss {
		fmt.Fprintf(&b, "  eps=%-10g", e)
	}
	b.WriteString("\n")
	for _, beta := range betas {
		errs := measuredErrors(beta, 30, 1e-7)
		for g, me := range errs {
			if ib := interpBound(g, beta); !(me <= ib) {
				t.Errorf("beta=%g g=%d: sampled interpolation error %.6g exceeds interpBound %.6g", beta, g, me, ib)
			}
		}
		fmt.Fprintf(&b, "%-6g", beta)
		for i, eps := range epss {
			cert, err := DegreeFor(beta, eps)
			if err != nil {
				t.Fatalf("DegreeFor(%g, %g): %v", beta, eps, err)
			}
			meas := -1
			for g, me := range errs {
				if me <= eps {
					meas = g
					break
				}
			}
			if meas < 0 {
				t.Fatalf("beta=%g eps=%g: no degree <= 30 measured below eps", beta, eps)
			}
			if cert < meas || cert > meas+2 {
				t.Errorf("beta=%g eps=%g: certified degree %d, measured %d: want measured <= certified <= measured+2", beta, eps, cert, meas)
			}
			fmt.Fprintf(&b, "  %2d / %2d (%2d)   ", cert, meas, quoted[beta][i])
		}
		b.WriteString("\n")
	}
	t.Log("\n" + b.String())
}

func TestAbsSumBound(t *testing.T) {
	for _, r := range []float64{1e-6, 0.25, 1, 3, 8, 12, 16, 18} {
		for _, g := range []int{0, 1, 2, 5, 10, 20, 30, 45, 64} {
			m := chebyshevInterpolant(g, 0, r)
			sum := newFloat()
			rp := bigFromInt(1)
			for _, mi := range m {
				term := newFloat().Abs(mi)
				sum.Add(sum, term.Mul(term, rp))
				rp.Mul(rp, bigFromFloat64(r))
			}
			exact, _ := sum.Float64()
			s := monomialAbsSumBound(g, r)
			if !(exact <= s) {
				t.Errorf("r=%g g=%d: sum |m_i| r^i = %.10g exceeds the a-priori bound %.10g", r, g, exact, s)
			}
			if g%10 == 0 {
				t.Logf("r=%-6g g=%2d  sum|m_i|r^i=%.6g  bound=%.6g  e^r=%.6g", r, g, exact, s, math.Exp(r))
			}
		}
	}
}

func TestInterval(t *testing.T) {
	cases := [][2]float64{{0, 1}, {0, 5}, {0, 10}, {0, 20}, {-3, 7}, {-50, -45}, {100, 101}, {2.5, 2.5}, {0.1, 0.3}}
	for _, lh := range cases {
		lo, hi := lh[0], lh[1]
		for _, eps := range []float64{1e-2, 1e-4, 1e-6, 1e-9, 1e-12} {
			name := fmt.Sprintf("Interval(%g, %g, %g)", lo, hi, eps)
			a, err := Interval(lo, hi, eps)
			if err != nil {
				checkUnreachable(t, name, err, (hi-lo)/2, lo/2+hi/2, eps)
				t.Logf("%s: unreachable", name)
				continue
			}
			if a.Center-a.Radius > lo || a.Center+a.Radius < hi {
				t.Errorf("%s: [%g-%g, %g+%g] does not contain [lo, hi]", name, a.Center, a.Radius, a.Center, a.Radius)
			}
			checkChosen(t, name, a, eps)
			if lo > -100 && hi < 100 {
				if d, err := DegreeFor(a.Radius, eps); err != nil || d != a.Degree {
					t.Errorf("%s: degree %d, DegreeFor(radius %g) = %d, %v", name, a.Degree, a.Radius, d, err)
				}
			}
			worst := verify(t, name, a, 2000)
			t.Logf("%s: g=%d RelErr=%.3g measured=%.3g TotalRelErr=%.3g", name, a.Degree, a.RelErr, worst, a.TotalRelErr())
		}
	}
}

func TestErrors(t *testing.T) {
	nan, inf := math.NaN(), math.Inf(1)
	invalidSym := [][2]float64{
		{-1, 1e-3}, {nan, 1e-3}, {inf, 1e-3}, {-inf, 1e-3}, {1000, 1e-3},
		{1, 0}, {1, -1e-3}, {1, 1}, {1, 2}, {1, nan}, {1, inf},
	}
	for _, c := range invalidSym {
		_, err := Symmetric(c[0], c[1])
		_, derr := DegreeFor(c[0], c[1])
		for _, e := range []error{err, derr} {
			if !errors.Is(e, ErrInvalid) {
				t.Errorf("beta=%g eps=%g: got %v, want ErrInvalid", c[0], c[1], e)
				continue
			}
			msg := e.Error()
			if !strings.Contains(msg, "beta=") || !strings.Contains(msg, "eps=") || !strings.Contains(msg, "must") {
				t.Errorf("beta=%g eps=%g: message %q should name beta, eps and what they must be", c[0], c[1], msg)
			}
		}
	}
	invalidInt := [][3]float64{
		{1, 0, 1e-3}, {nan, 1, 1e-3}, {0, inf, 1e-3}, {-800, 0, 1e-3}, {0, 701, 1e-3}, {0, 1, 0}, {0, 1, 1},
	}
	for _, c := range invalidInt {
		_, err := Interval(c[0], c[1], c[2])
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "must") {
			t.Errorf("Interval(%g, %g, %g): got %v, want ErrInvalid saying what must hold", c[0], c[1], c[2], err)
		}
	}
	// Valid but unreachable: below the float64 floor, and beyond MaxDegree.
	for _, c := range [][2]float64{{16, 1e-6}, {8, 1e-12}, {30, 0.5}, {100, 0.5}, {1, 1e-17}} {
		_, err := Symmetric(c[0], c[1])
		checkUnreachable(t, fmt.Sprintf("Symmetric(%g, %g)", c[0], c[1]), err, c[0], 0, c[1])
		if err != nil && !strings.Contains(err.Error(), fmt.Sprintf("beta=%g", c[0])) {
			t.Errorf("message %q does not name beta", err)
		}
		_, derr := DegreeFor(c[0], c[1])
		if !errors.Is(derr, ErrUnreachable) {
			t.Errorf("DegreeFor(%g, %g): got %v, want ErrUnreachable", c[0], c[1], derr)
		}
	}
	// CertifiedBound is +Inf outside its domain.
	for _, c := range []struct {
		g int
		r float64
	}{{-1, 1}, {MaxDegree + 1, 1}, {3, -1}, {3, nan}, {3, inf}, {3, 100}} {
		if b := CertifiedBound(c.g, c.r); !math.IsInf(b, 1) {
			t.Errorf("CertifiedBound(%d, %g) = %g, want +Inf", c.g, c.r, b)
		}
	}
}

// TestCertifiedBoundMonotoneInEps: a smaller eps never gives a smaller degree.
func TestDegreeMonotone(t *testing.T) {
	for _, beta := range []float64{0.1, 0.7, 2.2, 5, 9, 13} {
		prev := -1
		for e := 0.5; e > 1e-15; e /= 3 {
			g, err := DegreeFor(beta, e)
			if err != nil {
				break
			}
			if g < prev {
				t.Errorf("beta=%g: degree %d at eps=%g is below %d at a larger eps", beta, g, e, prev)
			}
			prev = g
		}
	}
}

func BenchmarkSymmetric(b *testing.B) {
	for _, c := range [][2]float64{{1, 1e-6}, {4, 1e-6}, {8, 1e-6}, {16, 1e-2}} {
		b.Run(fmt.Sprintf("beta=%g/eps=%g", c[0], c[1]), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := Symmetric(c[0], c[1]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDegreeFor(b *testing.B) {
	for _, c := range [][2]float64{{1, 1e-6}, {4, 1e-6}, {8, 1e-6}, {16, 1e-2}} {
		b.Run(fmt.Sprintf("beta=%g/eps=%g", c[0], c[1]), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := DegreeFor(c[0], c[1]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
