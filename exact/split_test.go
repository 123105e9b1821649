package exact

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
)

// splitCases have too few query tiles for the workers, so their keys are
// split into chunks: decoding (few rows, many keys), causal decoding,
// padding (including a head with no keys and chunks past a head's keys),
// and two query tiles with packed keys as well as split ones.
func splitCases() []attntest.Case {
	return []attntest.Case{
		{Name: "one-row", Heads: 1, N: 1, M: 5000, D: 16, E: 8},
		{Name: "few-rows", Heads: 1, N: 7, M: 3001, D: 32, E: 24},
		{Name: "full-tile", Heads: 2, N: queryTile, M: 2600, D: 8, E: 8},
		{Name: "two-tiles-packed", Heads: 1, N: queryTile + 5, M: 4100, D: 16, E: 16},
		{Name: "causal-decode", Heads: 2, N: 8, M: 4000, D: 8, E: 6, Causal: true},
		{Name: "causal-long-prefill", Heads: 1, N: 150, M: 3000, D: 8, E: 8, Causal: true},
		{Name: "padding", Heads: 3, N: 5, M: 3000, D: 8, E: 4, KeyLens: []int{3000, 1100, 0}},
		{Name: "padding-causal", Heads: 2, N: 30, M: 2900, D: 5, E: 4, Causal: true, KeyLens: []int{2900, 20}},
		{Name: "large-logits", Heads: 1, N: 3, M: 3000, D: 16, E: 8, QScale: 1e3, KScale: 1e3},
		{Name: "gqa-decode-sinks", Heads: 8, KVHeads: 2, N: 1, M: 3000, D: 16, E: 8, Sinks: []float64{0, 1, 2, 3, -1, -2, 5, 0}},
		{Name: "gqa-window-decode", Heads: 4, KVHeads: 1, N: 2, M: 4000, D: 8, E: 8, Causal: true, Window: &attn.Window{Left: 2500, Right: 0}},
	}
}

func TestSplitKPlan(t *testing.T) {
	for _, c := range splitCases() {
		p := c.Generate(1)
		if pl := makePlan(p, 4); pl.chunks < 2 {
			t.Errorf("%s: %d chunks with 4 workers, want a split", c.Name, pl.chunks)
		}
		if pl := makePlan(p, 1); pl.chunks != 1 {
			t.Errorf("%s: %d chunks with 1 worker", c.Name, pl.chunks)
		}
	}
	// Enough query tiles for every worker: no split.
	if pl := makePlan(attntest.Case{Heads: 8, N: 4096, M: 4096, D: 8, E: 8}.Generate(1), 2); pl.chunks != 1 || !pl.pack {
		t.Errorf("8 heads x 4096 rows: %+v, want no split and packed keys", pl)
	}
	// Decoding with a long cache on 2 workers.
	if pl := makePlan(attntest.Case{Heads: 1, N: 1, M: 100000, D: 8, E: 8}.Generate(1), 2); pl.chunks != 2*splitTarget || pl.pack {
		t.Errorf("one row x 100000 keys: %+v, want %d chunks, unpacked keys", pl, 2*splitTarget)
	}
}

// TestSplitK runs the split cases against the float64 reference with
// several worker counts (1: no split).
func TestSplitK(t *testing.T) {
	for _, c := range splitCases() {
		for _, w := range []int{1, 2, 3, 8} {
			t.Run(fmt.Sprintf("%s/workers=%d", c.Name, w), func(t *testing.T) {
				attntest.RunCase(t, Method{Workers: w}, attntest.Config{}, c, 5)
			})
		}
	}
}

// TestSplitKSmallChunks forces one-tile chunks on the standard conformance
// cases, so causal rows, padding and ragged tiles meet chunks that are
// empty or cut through a row's valid keys.
func TestSplitKSmallChunks(t *testing.T) {
	old := splitMinKeys
	splitMinKeys = 1
	defer func() { splitMinKeys = old }()
	for _, c := range append(append(attntest.Cases(), attntest.OptionCases()...), splitCases()...) {
		t.Run(c.Name, func(t *testing.T) {
			attntest.RunCase(t, Method{Workers: 6}, attntest.Config{}, c, 2)
		})
	}
}

// TestSplitKMatchesUnsplit checks that splitting changes the result by
// rounding only.
func TestSplitKMatchesUnsplit(t *testing.T) {
	for _, c := range splitCases() {
		p64 := c.Generate(9)
		p32 := attntest.To32(p64)
		compare(t, c.Name+"/float64", p64, 1e-13)
		compare(t, c.Name+"/float32", p32, 2e-6)
	}
}

func compare[T attn.Float](t *testing.T, name string, p *attn.Problem[T], tol float64) {
	t.Helper()
	one, many := attn.NewOutput(p), attn.NewOutput(p)
	if _, err := attn.Forward(context.Background(), Method{Workers: 1}, p, one); err != nil {
		t.Fatal(err)
	}
	if _, err := attn.Forward(context.Background(), Method{Workers: 4}, p, many); err != nil {
		t.Fatal(err)
	}
	for h := range p.Heads {
		colMax := attn.ColumnMaxAbs(p, h, p.KeyLen(h))
		for i := range p.N {
			row := h*p.N + i
			for c := range p.E {
				a, b := float64(one.O[row*p.E+c]), float64(many.O[row*p.E+c])
				if !(math.Abs(a-b) <= tol*colMax[c]) {
					t.Fatalf("%s: head %d row %d col %d: %g unsplit, %g split", name, h, i, c, a, b)
				}
			}
			a, b := one.LSE[row], many.LSE[row]
			if a != b && !(math.Abs(a-b) <= tol*(1+math.Abs(a))) {
				t.Fatalf("%s: head %d row %d: log-sum-exp %g unsplit, %g split", name, h, i, a, b)
			}
		}
	}
}

// TestSplitKCancelled checks that a cancelled split-K call reports it.
func TestSplitKCancelled(t *testing.T) {
	p := attntest.Case{Heads: 1, N: 2, M: 5000, D: 8, E: 8}.Generate(3)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := (Method{Workers: 4}).Forward64(ctx, p, attn.NewOutput(p)); err != context.Canceled {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

// BenchmarkDecode times decoding-shaped problems (n query rows against
// m = 100000 keys, d = e = 64, float32) with split-K and without it (one
// worker per query tile, as before split-K).
func BenchmarkDecode(b *testing.B) {
	for _, n := range []int{1, 16, 64} {
		p := attntest.To32(attntest.Case{Heads: 1, N: n, M: 100000, D: 64, E: 64}.Generate(1))
		for _, split := range []bool{true, false} {
			b.Run(fmt.Sprintf("n=%d/split=%v", n, split), func(b *testing.B) {
				if !split {
					old := splitMinKeys
					splitMinKeys = math.MaxInt
					defer func() { splitMinKeys = old }()
				}
				out := attn.NewOutput(p)
				for b.Loop() {
					if _, err := (Method{}).Forward32(context.Background(), p, out); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(Flops(p)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// TestHeadGroups lowers the packed-key budget so heads are packed and
// computed a few at a time, with and without split-K.
func TestHeadGroups(t *testing.T) {
	old := packBudget
	defer func() { packBudget = old }()
	cases := []attntest.Case{
		{Name: "heads", Heads: 5, N: 2*queryTile + 3, M: 300, D: 8, E: 8},
		{Name: "heads-causal-padding", Heads: 3, N: 2*queryTile + 1, M: 400, D: 8, E: 4, Causal: true, KeyLens: []int{400, 150, 0}},
		{Name: "heads-split", Heads: 3, N: queryTile + 1, M: 3000, D: 8, E: 8},
	}
	for _, budget := range []int{1, 300 * 8 * 8 * 2} { // one head per group; two float64 heads per group
		packBudget = budget
		for _, c := range cases {
			t.Run(fmt.Sprintf("%s/budget=%d", c.Name, budget), func(t *testing.T) {
				attntest.RunCase(t, Method{Workers: 3}, attntest.Config{}, c, 4)
			})
		}
	}
}
