package attntest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/reference"
)

// ToHalf returns p with Q, K and V rounded to format f (to nearest, ties
// to even) and stored in Q16, K16 and V16, or nil if a value would
// overflow f.
func ToHalf(p *attn.Problem[float32], f attn.HalfFormat) *attn.Problem[float32] {
	h := ToHalfKV(p, f)
	if h == nil {
		return nil
	}
	if h.Q16, h.Q = halfBits(f, p.Q), nil; h.Q16 == nil {
		return nil
	}
	return h
}

// Widened returns the float32 problem holding the values of p's 16-bit
// queries, keys and values: what a float32 computation on the rounded
// inputs sees.
func Widened(p *attn.Problem[float32]) *attn.Problem[float32] {
	w := *p
	w.KVFormat, w.Q16, w.K16, w.V16 = attn.NoHalf, nil, nil, nil
	w.Q, w.K, w.V = widenBits(p.KVFormat, p.Q16), widenBits(p.KVFormat, p.K16), widenBits(p.KVFormat, p.V16)
	return &w
}

func widenBits(f attn.HalfFormat, x []uint16) []float32 {
	y := make([]float32, len(x))
	for i, h := range x {
		y[i] = attn.HalfToFloat32(f, h)
	}
	return y
}

// HalfUnit returns the unit roundoff of format f (2^-11 for float16, 2^-8
// for bfloat16) and half its least subnormal step (2^-25, 2^-134), the
// absolute error of rounding below its normal range.
func HalfUnit(f attn.HalfFormat) (u, tiny float64) {
	if f == attn.BFloat16 {
		return 0x1p-8, 0x1p-134
	}
	return 0x1p-11, 0x1p-25
}

// CheckHalf runs m on p64 with Q, K, V and the output stored in format f
// (a float32 computation inside) and checks, for every output entry and
// log-sum-exp:
//
//   - against the float64 reference on p64's unrounded inputs, within tol
//     plus what the storage precision allows: rounding q and k (relative
//     error u each, after float32's 2^-24) moves logit (i, j) by at most
//     delta_i = s (2u + u^2) |q_i| max_j |k_j|, which moves the softmax
//     weights by factors within e^(+-2 delta_i) and so the output by
//     (e^(2 delta_i) - 1) max|V_col|; rounding v adds u max|V_col| and
//     rounding the output u |out| <= u max|V_col| (plus half a subnormal
//     step); the log-sum-exp moves by delta_i;
//   - against m's float32 computation on the rounded inputs: the two may
//     differ by the output's rounding, u |out| (plus half a subnormal
//     step), and each by its own error tol.
//
// A method that does not support 16-bit storage must decline it by name.
func CheckHalf(m attn.Method, p64 *attn.Problem[float64], f attn.HalfFormat, tol float64, allowUnsupported bool) error {
	ph := ToHalf(To32(p64), f)
	if ph == nil {
		return nil // a value beyond f's range
	}
	pr := Widened(ph)
	rows := ph.Heads * ph.N
	out := &attn.Output[float32]{O16: make([]uint16, rows*ph.E), LSE: make([]float64, rows)}
	for i := range out.O16 {
		out.O16[i] = 0x7fff // NaN in both formats: every entry must be written
	}
	for i := range out.LSE {
		out.LSE[i] = math.NaN()
	}
	q16, k16, v16 := slices.Clone(ph.Q16), slices.Clone(ph.K16), slices.Clone(ph.V16)
	st, err := attn.Forward(context.Background(), m, ph, out)
	if !slices.Equal(q16, ph.Q16) || !slices.Equal(k16, ph.K16) || !slices.Equal(v16, ph.V16) {
		return fmt.Errorf("%s modified its 16-bit inputs", m.Name())
	}
	if missing := (ph.Features() | attn.HalfQO) &^ attn.SupportedFeatures(m, false); missing != 0 {
		return checkDeclined(m, err, missing)
	}
	if err != nil {
		if allowUnsupported && errors.Is(err, attn.ErrUnsupported) {
			return nil
		}
		return fmt.Errorf("%s failed: %w", m.Name(), err)
	}
	u, tiny := HalfUnit(f)
	// Eps applies before the output's rounding, which the bound includes.
	if smallest := minColumnMax(pr); ph.Eps > 0 && st.ErrorBound > tol+u+tiny/smallest {
		return fmt.Errorf("%s reports error bound %g above the target %g plus the %v output's rounding", m.Name(), st.ErrorBound, tol, f)
	}
	out32 := attn.NewOutput(pr)
	if _, err := attn.Forward(context.Background(), m, pr, out32); err != nil {
		return fmt.Errorf("%s failed on the rounded float32 inputs: %w", m.Name(), err)
	}

	uIn := u + 0x1p-24
	want, wantLSE := reference.Attention(p64)
	d, e := p64.D, p64.E
	for h := range p64.Heads {
		colMax := attn.ColumnMaxAbs(p64, h, p64.KeyLen(h))
		kh := p64.KVHead(h)
		var kMax float64
		for j := range p64.KeyLen(h) {
			kMax = max(kMax, norm2(p64.K[(kh*p64.M+j)*d:(kh*p64.M+j+1)*d]))
		}
		for i := range p64.N {
			row := h*p64.N + i
			delta := p64.Scale * (2*uIn + uIn*uIn) * norm2(p64.Q[row*d:(row+1)*d]) * kMax
			tolIn := (math.Expm1(2*delta) + uIn + u + tol) * (1 + 1e-3)
			for j := range e {
				got := float64(attn.HalfToFloat32(f, out.O16[row*e+j]))
				ref, o32 := want[row*e+j], float64(out32.O[row*e+j])
				if !(math.Abs(got-ref) <= tolIn*colMax[j]+tiny) {
					return fmt.Errorf("head %d row %d col %d: got %g, float64 reference %g: error %.3g > %.3g (storage precision %v)",
						h, i, j, got, ref, math.Abs(got-ref), tolIn*colMax[j]+tiny, f)
				}
				if lim := u*math.Abs(o32) + tiny + 2*tol*colMax[j]*(1+uIn); !(math.Abs(got-o32) <= lim) {
					return fmt.Errorf("head %d row %d col %d: got %g, float32 on the rounded inputs %g: difference %.3g > %.3g",
						h, i, j, got, o32, math.Abs(got-o32), lim)
				}
			}
			got, ref := out.LSE[row], wantLSE[row]
			if math.IsInf(ref, -1) {
				if !math.IsInf(got, -1) {
					return fmt.Errorf("head %d row %d has no valid key: log-sum-exp %g, want -Inf", h, i, got)
				}
				continue
			}
			if lseTol := delta + math.Log1p(tol) + 1e-6*math.Abs(ref); !(math.Abs(got-ref) <= lseTol) {
				return fmt.Errorf("head %d row %d: log-sum-exp %g, float64 reference %g (tolerance %.3g)", h, i, got, ref, lseTol)
			}
			if lseTol := 2*math.Log1p(tol) + 1e-6*math.Abs(ref); !(math.Abs(got-out32.LSE[row]) <= lseTol) {
				return fmt.Errorf("head %d row %d: log-sum-exp %g, float32 on the rounded inputs %g (tolerance %.3g)", h, i, got, out32.LSE[row], lseTol)
			}
		}
	}
	return nil
}

func norm2(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v * v
	}
	return math.Sqrt(s)
}

// minColumnMax is the smallest nonzero max_l |V_lj| of any column of any
// head (+Inf if there is none).
func minColumnMax(p *attn.Problem[float32]) float64 {
	smallest := math.Inf(1)
	for h := range p.Heads {
		for _, c := range attn.ColumnMaxAbs(p, h, p.KeyLen(h)) {
			if c > 0 {
				smallest = min(smallest, c)
			}
		}
	}
	return smallest
}
