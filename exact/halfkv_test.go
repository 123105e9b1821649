package exact

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
	"github.com/fastattn/fastattn/internal/kernels"
	"github.com/fastattn/fastattn/internal/reference"
)

// TestHalfConversions checks attn.HalfToFloat32 against the kernels'
// conversions on every 16-bit pattern, and attntest.RoundHalf: it inverts
// them on every finite value and agrees with the kernels' bfloat16
// rounding.
func TestHalfConversions(t *testing.T) {
	all := make([]uint16, 1<<16)
	for i := range all {
		all[i] = uint16(i)
	}
	for _, f := range []attn.HalfFormat{attn.Float16, attn.BFloat16} {
		got := make([]float32, len(all))
		if f == attn.Float16 {
			kernels.F16ToFloat32(got, all)
		} else {
			kernels.BF16ToFloat32(got, all)
		}
		for i, h := range all {
			want := attn.HalfToFloat32(f, h)
			if math.Float32bits(want) != math.Float32bits(got[i]) && !(want != want && got[i] != got[i]) {
				t.Fatalf("%v %#04x: HalfToFloat32 %g, kernels %g", f, h, want, got[i])
			}
			if want == want && !math.IsInf(float64(want), 0) {
				if back := attntest.RoundHalf(f, want); back != h {
					t.Fatalf("%v %#04x = %g rounds back to %#04x", f, h, want, back)
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 16))
	x := make([]float32, 10000)
	for i := range x {
		x[i] = float32(r.NormFloat64() * math.Exp(8*r.NormFloat64()))
	}
	bf := make([]uint16, len(x))
	kernels.Float32ToBF16(bf, x)
	for i, v := range x {
		if got := attntest.RoundHalf(attn.BFloat16, v); got != bf[i] && math.Abs(float64(v)) > 1e-37 {
			t.Fatalf("RoundHalf(bfloat16, %g) = %#04x, kernels %#04x", v, got, bf[i])
		}
		// Nearest: no other float16 is closer.
		h := attntest.RoundHalf(attn.Float16, v)
		if a := math.Abs(float64(v)); a < 65504 && a > 1e-3 {
			err := math.Abs(float64(attn.HalfToFloat32(attn.Float16, h)) - float64(v))
			if err > a*0x1p-11*(1+1e-9) {
				t.Fatalf("RoundHalf(float16, %g) = %g: error %g above half an ulp", v, attn.HalfToFloat32(attn.Float16, h), err)
			}
		}
	}
}

// TestHalfKVAgainstFloat64 compares 16-bit keys and values with the
// float64 reference on the unrounded inputs, within what rounding K and V
// to the storage precision u can change: each logit moves by at most
// s |q| |k| u, each value by |v| u, so an output entry by at most
// (2 s max|q| max|k| u + u + float32 rounding) max|V_col|.
func TestHalfKVAgainstFloat64(t *testing.T) {
	for _, c := range []attntest.Case{
		{Name: "decode-gqa", Heads: 8, KVHeads: 2, N: 1, M: 3000, D: 64, E: 64},
		{Name: "prefill-causal-packed", Heads: 2, KVHeads: 1, N: 200, M: 200, D: 32, E: 16, Causal: true},
		{Name: "window-sinks", Heads: 2, N: 100, M: 900, D: 16, E: 16, Window: &attn.Window{Left: 300, Right: 10}, Sinks: []float64{1, 0}},
	} {
		p64 := c.Generate(3)
		want, _ := reference.Attention(p64)
		for _, f := range []attn.HalfFormat{attn.Float16, attn.BFloat16} {
			u := 0x1p-11
			if f == attn.BFloat16 {
				u = 0x1p-8
			}
			ph := attntest.ToHalfKV(attntest.To32(p64), f)
			for _, m := range []attn.Method{Method{}, workspaceMethod{}} {
				out := attn.NewOutput(ph)
				if _, err := attn.Forward(context.Background(), m, ph, out); err != nil {
					t.Fatalf("%s %v: %v", c.Name, f, err)
				}
				var qMax, kMax float64
				for i := range p64.Heads * p64.N {
					qMax = max(qMax, norm(p64.Q[i*p64.D:(i+1)*p64.D]))
				}
				for j := range p64.KVHeadCount() * p64.M {
					kMax = max(kMax, norm(p64.K[j*p64.D:(j+1)*p64.D]))
				}
				tol := 2*p64.Scale*qMax*kMax*u + u + 3e-5
				for h := range p64.Heads {
					colMax := attn.ColumnMaxAbs(p64, h, p64.KeyLen(h))
					for i := range p64.N {
						for x := range p64.E {
							got, ref := float64(out.O[(h*p64.N+i)*p64.E+x]), want[(h*p64.N+i)*p64.E+x]
							if math.Abs(got-ref) > tol*colMax[x] {
								t.Fatalf("%s %v %T: head %d row %d col %d: %g, float64 reference %g (tolerance %.3g)", c.Name, f, m, h, i, x, got, ref, tol*colMax[x])
							}
						}
					}
				}
			}
		}
	}
}

func norm(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v * v
	}
	return math.Sqrt(s)
}

// workspaceMethod runs Workspace.Forward, the serving path, as a Method,
// so the conformance suite checks it too (16-bit keys and values read in
// place or widened a tile at a time included).
type workspaceMethod struct{ Method }

func (workspaceMethod) Forward32(ctx context.Context, p *attn.Problem[float32], out *attn.Output[float32]) (attn.Stats, error) {
	return NewWorkspace[float32]().Forward(ctx, p, out)
}

func (workspaceMethod) Forward64(ctx context.Context, p *attn.Problem[float64], out *attn.Output[float64]) (attn.Stats, error) {
	return NewWorkspace[float64]().Forward(ctx, p, out)
}

func TestWorkspaceConformance(t *testing.T) {
	attntest.Run(t, workspaceMethod{}, attntest.Config{})
}

// TestHalfQOExact checks 16-bit queries and output against float32 on the
// rounded inputs: exact attention's arithmetic is the same, so the 16-bit
// output must be the float32 output rounded to nearest, bit for bit, on
// both the certified path (Method) and the tiled one (Workspace.Forward).
// (Reading 16-bit keys in place sums the dot products in another order:
// TestHalfInPlace checks that path.)
func TestHalfQOExact(t *testing.T) {
	testNoBF16Tiles = true // bfloat16 products (bf16.go) compute differently
	defer func() { testNoBF16Tiles = false }()
	defer func(r int) { halfInPlaceRows = r }(halfInPlaceRows)
	halfInPlaceRows = 0
	for _, c := range []attntest.Case{
		{Name: "decode-gqa-split", Heads: 8, KVHeads: 2, N: 1, M: 3000, D: 64, E: 64},
		{Name: "prefill-causal-packed", Heads: 2, KVHeads: 1, N: 200, M: 200, D: 32, E: 16, Causal: true, Sinks: []float64{0, 1}},
	} {
		for _, f := range []attn.HalfFormat{attn.Float16, attn.BFloat16} {
			ph := attntest.ToHalf(attntest.To32(c.Generate(5)), f)
			pr := attntest.Widened(ph)
			for _, m := range []attn.Method{Method{}, workspaceMethod{}} {
				want := attn.NewOutput(pr)
				if _, err := attn.Forward(context.Background(), m, pr, want); err != nil {
					t.Fatal(err)
				}
				out := &attn.Output[float32]{O16: make([]uint16, len(want.O)), LSE: make([]float64, len(want.LSE))}
				if _, err := attn.Forward(context.Background(), m, ph, out); err != nil {
					t.Fatal(err)
				}
				for i, x := range want.O {
					if w := attn.Float32ToHalf(f, x); out.O16[i] != w {
						t.Fatalf("%s %v %T: entry %d is %#04x, float32 %g rounds to %#04x", c.Name, f, m, i, out.O16[i], x, w)
					}
				}
				for i, l := range want.LSE {
					if out.LSE[i] != l {
						t.Fatalf("%s %v %T: LSE %d is %g, float32 gives %g", c.Name, f, m, i, out.LSE[i], l)
					}
				}
				// 16-bit queries with a float32 output: the float32 result.
				out32 := attn.NewOutput(pr)
				if _, err := attn.Forward(context.Background(), m, ph, out32); err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(out32.O, want.O) {
					t.Fatalf("%s %v %T: 16-bit queries with a float32 output differ from float32 queries", c.Name, f, m)
				}
			}
		}
	}
}

// TestHalfQOErrors checks that a NaN or Inf among 16-bit queries is an
// error naming Q on both paths, and that the backward pass declines
// 16-bit queries by name.
func TestHalfQOErrors(t *testing.T) {
	p := attntest.ToHalf(attntest.To32(attntest.Case{Heads: 2, N: 100, M: 50, D: 8, E: 8}.Generate(1)), attn.Float16)
	p.Q16[8*150+3] = 0x7c00 // +Inf
	for _, m := range []attn.Method{Method{}, workspaceMethod{}} {
		out := &attn.Output[float32]{O16: make([]uint16, 2*100*8), LSE: make([]float64, 200)}
		_, err := attn.Forward(context.Background(), m, p, out)
		if !errors.Is(err, attn.ErrBadProblem) || !strings.Contains(err.Error(), "Q has a non-finite") || !strings.Contains(err.Error(), "+Inf at flat index 1203") {
			t.Errorf("%T: an Inf in Q16 gave %v", m, err)
		}
	}
	p.Q16[8*150+3] = 0
	_, err := attn.Backward(context.Background(), Method{}, p, attn.NewOutput(p), make([]float32, 2*100*8), attn.NewGradients(p))
	if !errors.Is(err, attn.ErrUnsupported) || !strings.Contains(err.Error(), attn.HalfQO.String()) {
		t.Errorf("backward with 16-bit queries gave %v, want it declined by name", err)
	}
}

// TestHalfInPlace checks Workspace.Forward reading decoding-shaped 16-bit
// keys and values in place against the same calls widening them a tile at
// a time (halfInPlaceRows = 0): the same float32 arithmetic but for the
// order of the dot products' sums, so they agree to float32 rounding, over
// GQA groups, MHA, several queries, split keys, causal masks, windows,
// sinks, padding, a mask tensor, odd D and E and key counts off the
// kernels' blocks.
func TestHalfInPlace(t *testing.T) {
	if !kernels.HalfNTVector(false) || !kernels.HalfNTVector(true) {
		t.Skip("no vector kernels for 16-bit scores at this level: the in-place path is off")
	}
	defer func(r int) { halfInPlaceRows = r }(halfInPlaceRows)
	for _, c := range []attntest.Case{
		{Name: "decode-gqa-split", Heads: 8, KVHeads: 2, N: 1, M: 3000, D: 128, E: 128},
		{Name: "decode-mha", Heads: 3, N: 1, M: 1027, D: 64, E: 40},
		{Name: "few-queries-causal-sinks", Heads: 4, KVHeads: 1, N: 4, M: 700, D: 37, E: 19, Causal: true, Sinks: []float64{0, 1, -3, 2}},
		{Name: "window-padding", Heads: 6, Batch: 2, KVHeads: 2, N: 2, M: 900, D: 48, E: 64, Causal: true, Window: &attn.Window{Left: 300, Right: 0}, KeyLens: []int{900, 900, 900, 511, 511, 511}},
		{Name: "mask", Heads: 2, N: 3, M: 333, D: 16, E: 16, Mask: &attntest.MaskSpec{Heads: true, Rows: true, Keys: true, FullyMaskedRows: true}},
		{Name: "additive-mask", Heads: 4, KVHeads: 2, N: 1, M: 258, D: 20, E: 8, Mask: &attntest.MaskSpec{Additive: true, Keys: true}},
	} {
		for _, f := range []attn.HalfFormat{attn.Float16, attn.BFloat16} {
			p := attntest.ToHalfKV(attntest.To32(c.Generate(9)), f)
			got, want := attn.NewOutput(p), attn.NewOutput(p)
			halfInPlaceRows = 16
			if !readsHalfInPlace(p, nil) {
				t.Fatalf("%s: not read in place", c.Name)
			}
			if _, err := NewWorkspace[float32]().Forward(context.Background(), p, got); err != nil {
				t.Fatal(err)
			}
			halfInPlaceRows = 0
			if _, err := NewWorkspace[float32]().Forward(context.Background(), p, want); err != nil {
				t.Fatal(err)
			}
			for i, x := range want.O {
				if d := math.Abs(float64(got.O[i] - x)); d > 1e-5*(1+math.Abs(float64(x))) {
					t.Fatalf("%s %v: entry %d is %g in place, %g widened", c.Name, f, i, got.O[i], x)
				}
			}
			for i, l := range want.LSE {
				if d := math.Abs(got.LSE[i] - l); !(d <= 1e-5*(1+math.Abs(l))) && got.LSE[i] != l {
					t.Fatalf("%s %v: LSE %d is %g in place, %g widened", c.Name, f, i, got.LSE[i], l)
				}
			}
		}
	}
}
