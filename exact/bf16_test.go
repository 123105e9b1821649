package exact

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
	"github.com/fastattn/fastattn/internal/kernels"
	"github.com/fastattn/fastattn/internal/reference"
)

// bf16Cases are the bfloat16 path's test inputs: odd sizes (head and value
// dimensions off AMX's 32 and 16, rows and keys off its tiles), several
// key tiles, GQA, causal rows, windows, padding and sinks, large logits,
// keys with a common offset (which the bfloat16 path does not centre),
// values near 1e-30 (products below float32's normal range, which AMX and
// VDPBF16PS flush) and 1e30, and tiny queries.
func bf16Cases() []attntest.Case {
	return []attntest.Case{
		{Name: "small-odd", Heads: 1, N: 5, M: 7, D: 3, E: 5},
		{Name: "tiles", Heads: 2, N: 130, M: 600, D: 64, E: 64},
		{Name: "odd-dims", Heads: 1, N: 77, M: 300, D: 80, E: 72},
		{Name: "gqa-causal", Heads: 4, KVHeads: 2, N: 300, M: 300, D: 128, E: 128, Causal: true},
		{Name: "causal-topleft-padding", Heads: 2, N: 200, M: 520, D: 32, E: 16, Causal: true, CausalAlign: attn.TopLeft, KeyLens: []int{400, 130}},
		{Name: "window-sinks", Heads: 2, N: 150, M: 900, D: 16, E: 24, Window: &attn.Window{Left: 300, Right: 10}, Sinks: []float64{1, -2}},
		{Name: "large-logits", Heads: 1, N: 64, M: 512, D: 64, E: 32, QScale: 3, KScale: 3},
		{Name: "tiny-values", Heads: 1, N: 64, M: 700, D: 32, E: 16, VScale: 1e-30},
		{Name: "huge-values", Heads: 1, N: 64, M: 700, D: 32, E: 16, VScale: 1e30},
		{Name: "tiny-queries", Heads: 1, N: 64, M: 700, D: 32, E: 16, QScale: 1e-30},
		{Name: "offset-keys", Heads: 1, N: 64, M: 300, D: 32, E: 32, Shape: func(_ *rand.Rand, p *attn.Problem[float64]) {
			for i := range p.K {
				p.K[i] += 4
			}
		}},
		// Keys that grow from one 512-key tile to the next, gently (the
		// rows' maxima rise by less than bf16ShiftLag: weights above 1)
		// and steeply (by more: rows done again with their new max).
		{Name: "rising-keys-gently", Heads: 1, N: 128, M: 2048, D: 64, E: 32, Shape: risingKeys(0.15)},
		{Name: "rising-keys-steeply", Heads: 1, N: 128, M: 2048, D: 64, E: 32, QScale: 2, Shape: risingKeys(1.5)},
	}
}

// risingKeys scales key tile t (bf16KeyTile keys) by 1 + rate t.
func risingKeys(rate float64) func(*rand.Rand, *attn.Problem[float64]) {
	return func(_ *rand.Rand, p *attn.Problem[float64]) {
		for j := range p.M {
			f := 1 + rate*float64(j/bf16KeyTile)
			for h := range p.KVHeadCount() {
				for t := range p.D {
					p.K[(h*p.M+j)*p.D+t] *= f
				}
			}
		}
	}
}

// TestBF16AgainstFloat64 runs bfloat16 attention on hardware bfloat16
// products (AMX or VDPBF16PS, whichever runs here) with P split and
// with P rounded once, and checks every output entry against the float64
// reference on the same (rounded) inputs: within the reported bound,
// relative to its value column's max, and each log-sum-exp within the
// bound plus the logits' rounding. It logs the largest errors seen, the
// measurement README's "bfloat16 on AMX" quotes.
func TestBF16AgainstFloat64(t *testing.T) {
	if !kernels.PackedBF16Fast() {
		t.Skip("no hardware bfloat16 products here: bfloat16 inputs take the float32 path")
	}
	// Small shapes too: the kernels' edges.
	defer func(old int) { bf16MinRows = old }(bf16MinRows)
	bf16MinRows = 0
	for _, c := range bf16Cases() {
		ph := attntest.ToHalf(attntest.To32(c.Generate(41)), attn.BFloat16)
		pr := attntest.Widened(ph)
		want, wantLSE := reference.Attention(pr)
		for _, run := range []struct {
			mode    bf16Mode
			float32 bool
		}{{bf16Split, true}, {bf16Rounded, true}, {bf16Split, false}, {bf16Rounded, false}} {
			mode := run.mode
			testForceBF16Mode = &mode
			out := &attn.Output[float32]{O16: make([]uint16, ph.Heads*ph.N*ph.E), LSE: make([]float64, ph.Heads*ph.N)}
			if run.float32 {
				out = attn.NewOutput(ph)
			}
			st, err := attn.Forward(context.Background(), Method{}, ph, out)
			testForceBF16Mode = nil
			if err != nil {
				t.Fatalf("%s %v: %v", c.Name, mode, err)
			}
			outName := "bfloat16 output"
			if run.float32 {
				outName = "float32 output"
			}
			if st.Details["arithmetic"] != mode.String() {
				t.Fatalf("%s: ran %v, want %v", c.Name, st.Details["arithmetic"], mode)
			}
			var worst, worstLSE float64
			logit := st.Details["max_logit"].(float64)
			for h := range ph.Heads {
				colMax := attn.ColumnMaxAbs(pr, h, pr.KeyLen(h))
				for i := range ph.N {
					r := h*ph.N + i
					for x := range ph.E {
						var got float64
						if run.float32 {
							got = float64(out.O[r*ph.E+x])
						} else {
							got = float64(attn.HalfToFloat32(attn.BFloat16, out.O16[r*ph.E+x]))
						}
						diff := math.Abs(got - want[r*ph.E+x])
						if colMax[x] == 0 {
							if diff != 0 {
								t.Fatalf("%s %v: head %d row %d col %d: %g for a zero column", c.Name, mode, h, i, x, got)
							}
							continue
						}
						rel := diff / colMax[x]
						worst = max(worst, rel)
						if rel > st.ErrorBound {
							t.Fatalf("%s %v: head %d row %d col %d: %g, float64 reference %g: error %.3g max|V| above the bound %.3g", c.Name, mode, h, i, x, got, want[r*ph.E+x], rel, st.ErrorBound)
						}
					}
					if math.IsInf(wantLSE[r], -1) {
						if !math.IsInf(out.LSE[r], -1) {
							t.Fatalf("%s %v: row %d without keys has LSE %g", c.Name, mode, r, out.LSE[r])
						}
						continue
					}
					d := math.Abs(out.LSE[r] - wantLSE[r])
					worstLSE = max(worstLSE, d)
					// The reported bound, and the float64 reference's own
					// rounding (its logits, its sum, its log).
					refErr := gammaOf(float64(ph.D+5), u64)*logit + gammaOf(float64(ph.M+8), u64)*(1+math.Abs(wantLSE[r]))
					if tol := st.LSEBound + refErr; d > tol {
						t.Fatalf("%s %v: LSE of row %d is %.17g, reference %.17g: off by %.3g, above the reported bound %.3g", c.Name, mode, r, out.LSE[r], wantLSE[r], d, st.LSEBound)
					}
				}
			}
			t.Logf("%-24s %-15s %-52v error %.3g max|V| (bound %.3g), LSE error %.3g (bound %.3g)", c.Name, outName, mode, worst, st.ErrorBound, worstLSE, st.LSEBound)
		}
	}
}

// TestBF16Choice checks which path bfloat16 inputs take: P split under the
// default eps, P rounded once when eps allows it, the float32 path when
// eps is below the bfloat16 path's bound or the inputs hold a subnormal
// number (which AMX and VDPBF16PS would read as zero), for 16-bit keys and
// values with float32 queries, and for bf16MinRows query rows per
// key/value head or fewer.
func TestBF16Choice(t *testing.T) {
	if !kernels.PackedBF16Fast() {
		t.Skip("no hardware bfloat16 products here")
	}
	base := attntest.ToHalf(attntest.To32(attntest.Case{Heads: 2, N: 150, M: 200, D: 32, E: 16}.Generate(43)), attn.BFloat16)
	run := func(p *attn.Problem[float32], o32 bool) string {
		out := &attn.Output[float32]{O16: make([]uint16, p.Heads*p.N*p.E), LSE: make([]float64, p.Heads*p.N)}
		if p.Q16 == nil || o32 {
			out = attn.NewOutput(p)
		}
		st, err := attn.Forward(context.Background(), Method{}, p, out)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := st.Details["arithmetic"].(string)
		return a
	}
	with := func(f func(p *attn.Problem[float32])) *attn.Problem[float32] {
		p := *base
		p.Q16, p.K16, p.V16 = append([]uint16(nil), base.Q16...), append([]uint16(nil), base.K16...), append([]uint16(nil), base.V16...)
		f(&p)
		return &p
	}
	for _, c := range []struct {
		name string
		p    *attn.Problem[float32]
		want string
	}{
		{"default eps", with(func(p *attn.Problem[float32]) { p.Eps = 1e-3 }), bf16Split.String()},
		{"no target", with(func(p *attn.Problem[float32]) { p.Eps = 0 }), bf16Split.String()},
		{"loose eps", with(func(p *attn.Problem[float32]) { p.Eps = 0.05 }), bf16Rounded.String()},
		{"tight eps", with(func(p *attn.Problem[float32]) { p.Eps = 1e-5 }), promote.String()},
		{"subnormal value", with(func(p *attn.Problem[float32]) { p.V16[17] = 0x0001 }), plain.String()},
		{"subnormal key", with(func(p *attn.Problem[float32]) { p.K16[3] = 0x8040 }), plain.String()},
		{"values near the least normal", with(func(p *attn.Problem[float32]) {
			for i, x := range p.V16 {
				if x&0x7fff != 0 {
					p.V16[i] = x&0x807f | 0x0100 // exponent 2^-125: products with weights below 1/2 flush
				}
			}
			p.Eps = 0
		}), plain.String()},
		{"float32 queries", with(func(p *attn.Problem[float32]) { p.Q = attntest.Widened(base).Q; p.Q16 = nil }), plain.String()},
		{"float32 output", with(func(p *attn.Problem[float32]) { p.Eps = 1e-3 }), bf16Split.String()},
	} {
		if got := run(c.p, c.name == "float32 output"); got != c.want {
			t.Errorf("%s: ran %q, want %q", c.name, got, c.want)
		}
	}
	// Query rows per key/value head: heads of a group times N.
	for _, c := range []struct {
		heads, kvHeads, n int
		want              string
	}{
		{1, 1, 128, plain.String()},
		{1, 1, 129, bf16Split.String()},
		{4, 1, 40, bf16Split.String()},
		{8, 2, 1, plain.String()},
		{8, 2, 32, plain.String()},
	} {
		p := attntest.ToHalf(attntest.To32(attntest.Case{Heads: c.heads, KVHeads: c.kvHeads, N: c.n, M: 200, D: 32, E: 16}.Generate(44)), attn.BFloat16)
		if got := run(p, false); got != c.want {
			t.Errorf("%d heads on %d, n = %d: ran %q, want %q", c.heads, c.kvHeads, c.n, got, c.want)
		}
	}
}
