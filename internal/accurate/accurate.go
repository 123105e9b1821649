// Package accurate computes attention rows to within a few units of
// float64 rounding whatever the size of the logits or the values: each
// logit s q.k in double-double arithmetic (error about u^2 |s q.k|, so a
// common offset of the keys of 1e8 costs nothing), exponentials of exact
// differences from the row maximum, compensated sums, values scaled per
// column by a power of two (exact) so that neither huge nor subnormal
// values lose digits. It is the reference of the sampled checks (package
// check) and exact attention's most accurate arithmetic.
package accurate

import (
	"math"

	"github.com/fastattn/fastattn/attn"
)

const u = 0x1p-53 // float64 unit roundoff

// Error bounds the reference's own error on a row of l keys, relative
// to the column's largest value: each weight is within 3u of exact (the
// logit difference to u^2, exp within an ulp, the product with 1 + lo),
// and the compensated sums of numerator and denominator add u of the sum
// plus gamma_l^2 of the sum of magnitudes, so the ratio is within
// 2 (4u + gamma_l^2) + u; 16u + 4 gamma_l^2 covers it.
func Error(l int) float64 {
	g := float64(l) * u / (1 - float64(l)*u)
	return 16*u + 4*g*g
}

// twoSum returns s + t = a + b exactly, s = fl(a + b).
func twoSum(a, b float64) (s, t float64) {
	s = a + b
	bb := s - a
	return s, (a - (s - bb)) + (b - bb)
}

// twoProd returns p + e = a * b exactly, p = fl(a * b).
func twoProd(a, b float64) (p, e float64) {
	p = a * b
	return p, math.FMA(a, b, -p)
}

// logit returns s q.k as a double-double hi + lo (Ogita, Rump and Oishi's
// Dot2, then the product by s).
func logit[T, U attn.Float](q []T, k []U, s float64) (hi, lo float64) {
	for t := range q {
		ph, pl := twoProd(float64(q[t]), float64(k[t]))
		var e float64
		hi, e = twoSum(hi, ph)
		lo += e + pl
	}
	hi, lo = twoSum(hi, lo)
	ph, pl := twoProd(hi, s)
	return twoSum(ph, pl+lo*s)
}

// ScaledDot returns s q.c rounded once from its double-double value
// (logit): within u |s q.c| + gamma_d^2 |s| sum_t |q_t c_t| of exact (and
// terms of order u^2 |s q.c|), where a plain float64 loop is within
// gamma_(d+1) |s| sum_t |q_t c_t|, which cancellation can make far larger
// than |s q.c|. The methods compute the shift that centring the keys on c
// takes from row q's logits with it (package sinkshift bounds its error).
func ScaledDot[T attn.Float](q []T, c []float64, s float64) float64 {
	hi, lo := logit(q, c, s)
	return hi + lo
}

// neumaier is a compensated sum.
type neumaier struct{ s, c float64 }

func (n *neumaier) add(x float64) {
	// Neumaier's compensation is the exact rounding error of s + x; twoSum
	// computes the same value without the data-dependent branch, which
	// mispredicts on sums of values of either sign.
	var e float64
	n.s, e = twoSum(n.s, x)
	n.c += e
}

func (n *neumaier) sum() float64 { return n.s + n.c }

// Row computes output row i of query head h of p accurately (see the
// package comment) into out (length e) and returns the row's log-sum-exp,
// -Inf for a row without keys. It follows every option of the problem:
// the key/value head, the key range (padding, causal mask, window), the
// mask tensor and the sink.
func Row[T attn.Float](p *attn.Problem[T], h, i int, out []float64) float64 {
	d, e := p.D, p.E
	clear(out)
	a, b := p.KeyRange(h, i)
	kh := p.KVHead(h)
	q := p.Q[(h*p.N+i)*d : (h*p.N+i+1)*d]
	// The row's keys and their logits as double-doubles; a mask adds its
	// term (exactly: twoSum), -Inf drops the key.
	// Without a mask the kept keys are a..b-1 and need no list (at a
	// million keys the list would be 8 MB per row).
	var keys []int
	if p.Mask != nil {
		keys = make([]int, 0, max(b-a, 0))
	}
	hi, lo := make([]float64, 0, max(b-a, 0)), make([]float64, 0, max(b-a, 0))
	best := -1
	for j := a; j < b; j++ {
		h1, l1 := logit(q, p.K[(kh*p.M+j)*d:(kh*p.M+j+1)*d], p.Scale)
		if p.Mask != nil {
			m := p.Mask.Logit(h, i, j)
			if math.IsInf(m, -1) {
				continue
			}
			var l2 float64
			h1, l2 = twoSum(h1, m)
			h1, l1 = twoSum(h1, l1+l2)
			keys = append(keys, j)
		}
		hi, lo = append(hi, h1), append(lo, l1)
		if x := len(hi) - 1; best < 0 || hi[x] > hi[best] || (hi[x] == hi[best] && lo[x] > lo[best]) {
			best = x
		}
	}
	sink := p.Sink(h)
	if best < 0 {
		if math.IsInf(sink, -1) {
			return math.Inf(-1)
		}
		return sink // only the sink: a zero output
	}
	mh, ml := hi[best], lo[best]
	if sink > mh {
		mh, ml = sink, 0
	}
	// Per-column power-of-two scales bring each column's largest value
	// near 1, so that sums of huge values do not overflow and subnormal
	// ones keep their digits.
	colMax := make([]float64, e)
	for x := range hi {
		j := a + x
		if keys != nil {
			j = keys[x]
		}
		for c, x := range p.V[(kh*p.M+j)*e : (kh*p.M+j+1)*e] {
			// A comparison, not the max builtin (whose NaN handling costs a
			// quarter of the row): a NaN value makes that column's output
			// NaN whatever its scale.
			if a := math.Abs(float64(x)); a > colMax[c] {
				colMax[c] = a
			}
		}
	}
	exps := make([]int, e)
	// Scaling by 2^-exps[c] is a multiplication by that power of two when
	// it is a normal number (then both round once, identically), else
	// math.Ldexp.
	pow := make([]float64, e)
	for c, m := range colMax {
		_, exps[c] = math.Frexp(m)
		if exps[c] > -1000 && exps[c] < 1000 {
			pow[c] = math.Ldexp(1, -exps[c])
		}
	}
	var den neumaier
	if !math.IsInf(sink, -1) {
		dh, dl := twoSum(sink, -mh)
		den.add(math.Exp(dh + (dl - ml)))
	}
	num := make([]neumaier, e)
	for x := range hi {
		j := a + x
		if keys != nil {
			j = keys[x]
		}
		dh, dl := twoSum(hi[x], -mh)
		arg := dh + (dl + (lo[x] - ml))
		if arg < -746 {
			continue // its weight is exactly 0: adding it changes no sum
		}
		w := math.Exp(arg)
		den.add(w)
		v := p.V[(kh*p.M+j)*e : (kh*p.M+j+1)*e]
		for c := range e {
			if pow[c] != 0 {
				num[c].add(w * (float64(v[c]) * pow[c]))
			} else {
				num[c].add(w * math.Ldexp(float64(v[c]), -exps[c]))
			}
		}
	}
	dsum := den.sum()
	for c := range e {
		out[c] = math.Ldexp(num[c].sum()/dsum, exps[c])
	}
	return mh + (ml + math.Log(dsum))
}
