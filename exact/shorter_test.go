package exact

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
	"github.com/fastattn/fastattn/internal/kernels"
	"github.com/fastattn/fastattn/internal/reference"
)

// TestShorterHeadBound checks the reported bound, relative to each query
// head's own max|V| over its own keys, for query heads of one group that
// see different numbers of keys: head 1 sees only the first 10 keys,
// whose values in column 0 are tiny, while head 0 also sees values of 1,
// by which the group is measured (and scaled). Head 1's products then
// underflow, or its outputs round, by a few percent of its own unit, and
// the bound must say so: values subnormal in float64 and float32, float16
// subnormals rounded into a float16 output, and the least normal bfloat16
// numbers offered to the bfloat16 path (where products flush to zero; a
// bfloat16 output). A decoding step (one pass) and a prefill (planned) of
// each, against the float64 reference.
func TestShorterHeadBound(t *testing.T) {
	for _, n := range []int{1, 150} {
		c := attntest.Case{Heads: 2, KVHeads: 1, N: n, M: 100, D: 8, E: 4, KeyLens: []int{100, 10}}
		gen := func(unit float64) *attn.Problem[float64] {
			p64 := c.Generate(7)
			for j := range p64.M {
				p64.V[j*p64.E] = 1
				if j < 10 {
					p64.V[j*p64.E] = float64(10+j) * unit
				}
			}
			return p64
		}
		p64 := gen(0x1p-1070)
		checkOwnUnit(t, fmt.Sprintf("float64/n=%d", n), p64, p64)
		p64 = gen(0x1p-145)
		checkOwnUnit(t, fmt.Sprintf("float32/n=%d", n), attntest.To32(p64), p64)
		ph := attntest.ToHalf(attntest.To32(gen(0x1p-24)), attn.Float16)
		checkOwnUnit(t, fmt.Sprintf("float16 output/n=%d", n), ph, attntest.Widened(ph))
		if kernels.PackedBF16Fast() {
			ph := attntest.ToHalf(attntest.To32(gen(0x1p-126)), attn.BFloat16)
			old := bf16MinRows
			bf16MinRows = 0 // offered to the bfloat16 path, which must decline or bound it
			checkOwnUnit(t, fmt.Sprintf("bfloat16/n=%d", n), ph, attntest.Widened(ph))
			bf16MinRows = old
		}
	}
}

// checkOwnUnit runs p, into a 16-bit output when its queries are 16-bit,
// and checks every output entry against the reference on ref (the same
// values in float64 or float32) within the bound times its head's own
// column maximum.
func checkOwnUnit[T, R attn.Float](t *testing.T, name string, p *attn.Problem[T], ref *attn.Problem[R]) {
	t.Helper()
	want, _ := reference.Attention(ref)
	out := attn.NewOutput(p)
	p32, half := any(p).(*attn.Problem[float32])
	half = half && p32.Q16 != nil
	if half {
		out.O, out.O16 = nil, make([]uint16, p.Heads*p.N*p.E)
	}
	st, err := attn.Forward(context.Background(), Method{}, p, out)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var worst float64
	for h := range p.Heads {
		colMax := attn.ColumnMaxAbs(ref, h, ref.KeyLen(h))
		for i := range p.N {
			for c := range p.E {
				x := (h*p.N+i)*p.E + c
				got := 0.0
				if half {
					got = float64(attn.HalfToFloat32(p32.KVFormat, out.O16[x]))
				} else {
					got = float64(out.O[x])
				}
				rel := math.Abs(got-want[x]) / colMax[c]
				worst = max(worst, rel)
				if !(rel <= st.ErrorBound) {
					t.Fatalf("%s (%v): head %d row %d col %d: error %.3g of its own max|V|, bound %.3g", name, st.Details["arithmetic"], h, i, c, rel, st.ErrorBound)
				}
			}
		}
	}
	t.Logf("%s (%v): worst error %.3g of the head's own max|V|, bound %.3g", name, st.Details["arithmetic"], worst, st.ErrorBound)
}
