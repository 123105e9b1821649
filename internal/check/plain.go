package check

import (
	"math"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/kernels"
)

// A cheaper reference for loose bounds. The accurate reference
// (double-double logits, compensated sums) costs about as much per key as
// a polynomial method's whole row at eps = 1e-3, so at a million keys the
// check was half of a certified call. A bound of 1e-3 needs a reference
// good to about 1e-5, which plain float64 arithmetic gives once the keys
// are centred (softmax ignores the common shift): plainRow computes the
// row that way and bounds its own error a priori, and Forward uses it
// only where that bound is far below the one being checked.

const plainU = 0x1p-53 // float64 unit roundoff

// gamma is the classical bound k u / (1 - k u) on k roundings.
func gamma(k int) float64 {
	return float64(k) * plainU / (1 - float64(k)*plainU)
}

// headBox is what plainRow needs of a head's valid keys and values: the
// centre and half-widths of the keys' bounding box, and each value
// column's largest magnitude.
type headBox struct {
	centre, radius, colMax []float64
}

func newHeadBox[T attn.Float](p *attn.Problem[T], h int, colMax []float64) headBox {
	d, l, kh := p.D, p.KeyLen(h), p.KVHead(h)
	lo, hi := make([]float64, d), make([]float64, d)
	for t := range d {
		lo[t], hi[t] = math.Inf(1), math.Inf(-1)
	}
	attn.RowRange(p.K[kh*p.M*d:][:l*d], lo, hi)
	box := headBox{centre: make([]float64, d), radius: make([]float64, d), colMax: colMax}
	for t := range d {
		c := lo[t] + (hi[t]-lo[t])/2
		box.centre[t] = c
		// Both distances as computed are within a rounding of the true
		// ones; the margin covers it.
		box.radius[t] = max(hi[t]-c, c-lo[t]) * (1 + 4*plainU)
	}
	return box
}

// plainRow computes output row i of query head h of p into out (length
// e) in float64 arithmetic on keys centred at box.centre, and returns a
// bound on its error relative to each column's largest |v|. ok is false
// when the row needs the accurate reference instead: a mask tensor or a
// finite sink (logits in the uncentred frame), 16-bit keys, non-finite or
// extreme inputs, or values so large or small that unscaled sums could
// overflow or lose digits.
func plainRow[T attn.Float](p *attn.Problem[T], h, i int, box headBox, out []float64) (refErr float64, ok bool) {
	colMin, ok := plainHead(p, h, box)
	if !ok {
		return 0, false
	}
	d, e, kh := p.D, p.E, p.KVHead(h)
	q := p.Q[(h*p.N+i)*d : (h*p.N+i+1)*d]
	a, ok := logitBound(p, q, box)
	if !ok {
		return 0, false
	}
	clear(out)
	lo, hi := p.KeyRange(h, i)
	if hi <= lo {
		return 0, true // no key: a zero row, as the accurate reference gives
	}
	c := box.centre
	logit := func(j int) float64 {
		var s float64
		for t, k := range p.K[(kh*p.M+j)*d : (kh*p.M+j+1)*d] {
			s = math.FMA(float64(q[t]), float64(k)-c[t], s)
		}
		return s * p.Scale
	}
	// The weights are exp(logit - shift). A bounds every logit, so for a
	// small A it is a shift that needs no pass of its own (the weights stay
	// above e^-2A, far from underflow); otherwise the row's maximum is.
	shift, small := a, a <= plainSmall
	if !small {
		shift = math.Inf(-1)
		for j := lo; j < hi; j++ {
			shift = max(shift, logit(j))
		}
	}
	// Blocks of logits go through the vectorised exponential.
	var buf [256]float64
	var den float64
	for j0 := lo; j0 < hi; j0 += len(buf) {
		w := buf[:min(len(buf), hi-j0)]
		for x := range w {
			w[x] = logit(j0 + x)
		}
		den += kernels.ExpShiftSum64(w, 1, shift)
		for x, wx := range w {
			j := j0 + x
			for c, v := range p.V[(kh*p.M+j)*e : (kh*p.M+j+1)*e] {
				out[c] = math.FMA(wx, float64(v), out[c])
			}
		}
	}
	for x := range out {
		out[x] /= den
	}
	return plainError(d, hi-lo, a, colMin, small), true
}

// plainSmall is the largest logit bound A whose rows are shifted by A
// itself (no pass for the maximum): their weights stay above e^-2A.
const plainSmall = 64

// plainHead reports whether the plain reference can serve rows of head h
// at all, and the smallest nonzero column maximum of its values: not for
// a mask tensor or a finite sink (logits in the uncentred frame), 16-bit
// keys, non-finite column maxima, or values so large or small that
// unscaled sums could overflow or lose digits.
func plainHead[T attn.Float](p *attn.Problem[T], h int, box headBox) (colMin float64, ok bool) {
	if p.Mask != nil || !math.IsInf(p.Sink(h), -1) || p.KVFormat != attn.NoHalf {
		return 0, false
	}
	colMin = math.Inf(1)
	for _, m := range box.colMax {
		if math.IsNaN(m) || m > 0x1p900 {
			return 0, false
		}
		if m > 0 {
			colMin = min(colMin, m)
		}
	}
	return colMin, colMin >= 0x1p-900
}

// logitBound returns A >= |s q.(k - c)| for every key k of the box, or
// false for non-finite or extreme queries.
func logitBound[T attn.Float](p *attn.Problem[T], q []T, box headBox) (float64, bool) {
	var a float64
	for t, x := range q {
		a += math.Abs(float64(x)) * box.radius[t]
	}
	a *= math.Abs(p.Scale) * (1 + gamma(len(q)+1))
	return a, !math.IsNaN(a) && a <= 1e300
}

// plainError is the a priori error of a plain reference row over l keys
// with logit bound a (shifted by a when small, by the row's maximum
// otherwise), relative to each column's largest |v| (the smallest nonzero
// being colMin).
//
// Each computed logit is within gamma(d+2) A of the centred logit (the
// differences k - c, d multiply-adds in any order, the scale), and its
// difference to the shift (at most 2A apart) rounds by u 2A more; so each
// weight is the exact one times e^theta (1 + expErr), |theta| <= gamma(d+5)
// A, expErr = 10u the float64 exp kernel's error (its subtraction of the
// shift is the rounding counted above). Weights off by a relative rho move
// the ratio by at most 2 rho / (1 - rho) of max|v|. The sums of l terms (in
// any order and grouping) add gamma(l) of the sum of magnitudes (at most
// den max|v| for the numerator), and the division one rounding: 3
// gamma(l+2) covers both. Weights and products that underflow lose at most
// 2^-1074 each, against a denominator of at least 1 (shift = maximum) or
// e^-2A (shift = A).
func plainError(d, l int, a, colMin float64, small bool) float64 {
	rho := math.Exp(gamma(d+5)*a)*(1+10*plainU) - 1
	if !(rho < 1) {
		return math.Inf(1) // the formula would turn negative
	}
	under := float64(l) * 0x1p-1072 / colMin
	if small {
		under *= math.Exp(2*a + 1)
	}
	return 2*rho/(1-rho) + 3*gamma(l+2) + under
}

// plainMayDo reports whether the plain reference can serve a check of
// bound on p at all (its rows may still decline).
func plainMayDo[T attn.Float](p *attn.Problem[T], bound float64) bool {
	return bound > 0 && !math.IsInf(bound, 1) && p.Mask == nil && p.KVFormat == attn.NoHalf
}
