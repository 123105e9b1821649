package exact

import (
	"context"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
)

// TestEdgeTiles checks the key tiles some rows see only in part (causal
// diagonals, sliding windows, padding), which go through in blocks of
// edgeRows rows, each computing only from its rows' first key (rounded
// down to keyAlign) to their last: windows wider and narrower than a key
// tile, on both sides, with either causal alignment, n != m, grouped query
// heads sharing short tiles (the unpacked path), padding, masks and sinks,
// at the default block size and at others.
func TestEdgeTiles(t *testing.T) {
	w := func(l, r int) *attn.Window { return &attn.Window{Left: l, Right: r} }
	cases := []attntest.Case{
		{Name: "window-300-causal", Heads: 1, N: 700, M: 700, D: 16, E: 8, Causal: true, Window: w(300, 0)},
		{Name: "window-70-both-sides", Heads: 2, N: 400, M: 650, D: 8, E: 12, Window: w(70, 90)},
		{Name: "window-top-left", Heads: 1, N: 600, M: 450, D: 8, E: 8, Causal: true, CausalAlign: attn.TopLeft, Window: w(130, 0)},
		{Name: "gqa-short-window", Heads: 4, KVHeads: 1, N: 100, M: 900, D: 8, E: 8, Causal: true, Window: w(200, 0)},
		{Name: "decode-window-gqa", Heads: 8, KVHeads: 2, N: 3, M: 900, D: 16, E: 16, Causal: true, Window: w(200, 0)},
		{Name: "causal-padding", Heads: 2, N: 500, M: 500, D: 8, E: 8, Causal: true, KeyLens: []int{500, 333}},
		{Name: "window-mask-sinks", Heads: 2, N: 320, M: 320, D: 8, E: 8, Causal: true, Window: w(100, 0),
			Mask: &attntest.MaskSpec{Rows: true, Keys: true, FullyMaskedRows: true}, Sinks: []float64{0.5, -1}},
	}
	defer func(old int) { edgeRows = old }(edgeRows)
	for _, rows := range []int{edgeRows, 6, queryTile} {
		edgeRows = rows
		for _, c := range cases {
			attntest.RunCase(t, Method{}, attntest.Config{}, c, 3)
		}
	}
}

// TestEdgeTilesWorkspace checks Workspace.Forward (keys neither centred nor
// scaled) on a sliding window against Method's result.
func TestEdgeTilesWorkspace(t *testing.T) {
	p := attntest.To32(attntest.Case{Heads: 2, N: 800, M: 800, D: 32, E: 32, Causal: true, Window: &attn.Window{Left: 257, Right: 0}}.Generate(5))
	want, got := attn.NewOutput(p), attn.NewOutput(p)
	if _, err := (Method{}).Forward32(context.Background(), p, want); err != nil {
		t.Fatal(err)
	}
	if _, err := NewWorkspace[float32]().Forward(context.Background(), p, got); err != nil {
		t.Fatal(err)
	}
	for i := range want.O {
		if d := want.O[i] - got.O[i]; d > 1e-5 || d < -1e-5 {
			t.Fatalf("output %d: workspace %g, method %g", i, got.O[i], want.O[i])
		}
	}
}

// TestTileRows checks that the query tiles of every key/value head cover
// each row once, in tiles of at most queryTile rows (windowTile with a
// sliding window), with half tiles at the end of a long head, for causal
// and not.
func TestTileRows(t *testing.T) {
	for _, n := range []int{1, 100, 143, 144, 200, 288, 300, 576, 577, 865, 4096, 16384} {
		for x, causal := range []bool{false, true, false, true} {
			p := &attn.Problem[float32]{Heads: 4, KVHeads: 2, N: n, M: n, D: 4, E: 4, Causal: causal}
			most := queryTile
			if x >= 2 {
				p.Window, most = &attn.Window{Left: 100, Right: -1}, windowTile
				if n < queryTile/2 {
					most = queryTile // short heads share tiles as without a window
				}
			}
			cover := make([]int, p.Heads*n)
			last := 0
			for kh := range 2 {
				tileRows(p, kh, func(r0, rows int) {
					if rows < 1 || rows > most {
						t.Fatalf("n=%d: a tile of %d rows", n, rows)
					}
					for r := r0; r < r0+rows; r++ {
						cover[r]++
					}
					if !causal && r0%n+rows == n {
						last = rows
					}
				})
			}
			for r, c := range cover {
				if c != 1 {
					t.Fatalf("n=%d causal=%v: row %d in %d tiles", n, causal, r, c)
				}
			}
			if n > 2*queryTile && p.Window == nil && last > queryTile/2 {
				t.Errorf("n=%d: the last tile has %d rows, want at most %d", n, last, queryTile/2)
			}
		}
	}
}
