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
// whose values in column 0 are tiny (subnormal in float32 and float64;
// the least normal bfloat16 numbers on AMX, where products flush to zero),
// while head 0 also sees values of 1, by which the group is measured and
// scaled. Its products then underflow, and its outputs are subnormal,
// by a few percent of its own unit: the bound must say so. A decoding
// step (one pass) and a prefill (planned), against the float64 reference.
func TestShorterHeadBound(t *testing.T) {
	for _, n := range []int{1, 80} {
		tiny := func(p64 *attn.Problem[float64], unit float64) {
			for j := range p64.M {
				p64.V[j*p64.E] = 1
				if j < 10 {
					p64.V[j*p64.E] = float64(10+j) * unit
				}
			}
		}
		c := attntest.Case{Heads: 2, KVHeads: 1, N: n, M: 100, D: 8, E: 4, KeyLens: []int{100, 10}}
		p64 := c.Generate(7)
		tiny(p64, 0x1p-1070)
		checkOwnUnit(t, fmt.Sprintf("float64/n=%d", n), p64, p64, nil)
		p64 = c.Generate(7)
		tiny(p64, 0x1p-145)
		checkOwnUnit(t, fmt.Sprintf("float32/n=%d", n), attntest.To32(p64), p64, nil)
		if kernels.AMX() {
			p64 = c.Generate(7)
			tiny(p64, 0x1p-126)
			ph := attntest.ToHalf(attntest.To32(p64), attn.BFloat16)
			bf16MinRows = 0
			checkOwnUnit(t, fmt.Sprintf("bfloat16/n=%d", n), ph, nil, ph)
			bf16MinRows = 128
		}
	}
}

// checkOwnUnit runs p (p64 its float64 values, or ph its bfloat16 ones)
// and checks every output entry against the reference within the bound
// times its head's own column maximum.
func checkOwnUnit[T attn.Float](t *testing.T, name string, p *attn.Problem[T], p64 *attn.Problem[float64], ph *attn.Problem[float32]) {
	t.Helper()
	var want []float64
	var colMax func(h int) []float64
	if ph != nil {
		pr := attntest.Widened(ph)
		want, _ = reference.Attention(pr)
		colMax = func(h int) []float64 { return attn.ColumnMaxAbs(pr, h, pr.KeyLen(h)) }
	} else {
		want, _ = reference.Attention(p64)
		colMax = func(h int) []float64 { return attn.ColumnMaxAbs(p64, h, p64.KeyLen(h)) }
	}
	out := attn.NewOutput(p)
	st, err := attn.Forward(context.Background(), Method{}, p, out)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var worst float64
	for h := range p.Heads {
		cm := colMax(h)
		for i := range p.N {
			for c := range p.E {
				x := (h*p.N+i)*p.E + c
				rel := math.Abs(float64(out.O[x])-want[x]) / cm[c]
				worst = max(worst, rel)
				if !(rel <= st.ErrorBound) {
					t.Fatalf("%s (%v): head %d row %d col %d: error %.3g of its own max|V|, bound %.3g", name, st.Details["arithmetic"], h, i, c, rel, st.ErrorBound)
				}
			}
		}
	}
	t.Logf("%s (%v): worst error %.3g of the head's own max|V|, bound %.3g", name, st.Details["arithmetic"], worst, st.ErrorBound)
}
