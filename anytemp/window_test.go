package anytemp

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fastattn/fastattn/attn"
)

// windowCase is a generated problem with a window and the options it
// combines with.
type windowCase struct {
	name        string
	g           gen
	left, right int
	topLeft     bool
	kvHeads     int
	sinks       []float64
}

func (c windowCase) make(seed uint64) *attn.Problem[float64] {
	p := c.g.make(seed)
	p.Window = &attn.Window{Left: c.left, Right: c.right}
	if c.topLeft {
		p.CausalAlign = attn.TopLeft
	}
	if c.kvHeads > 0 {
		p.KVHeads = c.kvHeads
		p.K = p.K[:c.kvHeads*p.M*p.D]
		p.V = p.V[:c.kvHeads*p.M*p.E]
	}
	p.Sinks = c.sinks
	return p
}

// shiftKeys adds a common offset to every key: softmax ignores it, a
// method that does not centre the keys loses the logits' digits to it.
func shiftKeys(off float64) func(r *rand.Rand, p *attn.Problem[float64]) {
	return func(_ *rand.Rand, p *attn.Problem[float64]) {
		for j := range p.K {
			p.K[j] += off
		}
	}
}

// windowCases cover windows wider and narrower than minTreeBlock (so rows
// of blocks plus edges, and rows of edges alone), bounded on one or both
// sides, both alignments with n < m and n > m, padding, grouped-query
// heads and sinks.
func windowCases() []windowCase {
	return []windowCase{
		{name: "causal-left-300", g: gen{heads: 1, n: 1200, m: 1200, causal: true}, left: 300, right: 0},
		{name: "both-sides-200", g: gen{heads: 1, n: 1000, m: 1000}, left: 200, right: 200},
		{name: "decode-n<m", g: gen{heads: 1, n: 300, m: 1500, causal: true}, left: 500, right: 0},
		{name: "top-left-n>m", g: gen{heads: 1, n: 1500, m: 400}, left: 150, right: 70, topLeft: true},
		{name: "bottom-right-n>m", g: gen{heads: 1, n: 900, m: 500}, left: 130, right: 3},
		{name: "top-left-n<m-causal", g: gen{heads: 1, n: 500, m: 1300, causal: true}, left: 260, right: 5, topLeft: true},
		{name: "narrow-20-5", g: gen{heads: 1, n: 600, m: 600}, left: 20, right: 5},
		{name: "narrow-causal-63", g: gen{heads: 1, n: 700, m: 700, causal: true}, left: 63, right: -1},
		{name: "zero-zero", g: gen{heads: 1, n: 300, m: 300}, left: 0, right: 0},
		{name: "wider-than-m", g: gen{heads: 1, n: 400, m: 700}, left: 5000, right: 5000},
		{name: "left-only", g: gen{heads: 1, n: 500, m: 900}, left: 400, right: -1},
		{name: "right-only-top-left", g: gen{heads: 1, n: 500, m: 900}, left: -1, right: 300, topLeft: true},
		{name: "gqa-padding-sinks", g: gen{heads: 4, n: 400, m: 900, causal: true, keyLens: []int{900, 700, 130, 0}},
			left: 333, right: 0, kvHeads: 2, sinks: []float64{0, 2, -1, 40}},
	}
}

// pathCounts tally the report's counts over a test: the inputs must
// exercise expansions, pruning, brute force and 1-D cells inside windows.
type pathCounts struct{ expanded, pruned, brute, cells int64 }

func (c *pathCounts) add(st attn.Stats) {
	c.expanded += st.Details["nodes_expanded"].(int64)
	c.pruned += st.Details["nodes_pruned"].(int64)
	c.brute += st.Details["keys_brute_forced"].(int64)
	c.cells += st.Details["cells"].(int64)
}

func (c *pathCounts) check(t *testing.T) {
	if c.expanded == 0 || c.pruned == 0 || c.brute == 0 || c.cells == 0 {
		t.Errorf("paths not exercised: %+v", *c)
	}
}

// TestWindowGuarantee checks every entry of windowed problems against the
// float64 reference, at entry scales from nearly uniform to nearly one-hot.
func TestWindowGuarantee(t *testing.T) {
	scales := []float64{0.3, 3, 30}
	if testing.Short() {
		scales = []float64{0.3, 30}
	}
	var paths pathCounts
	defer paths.check(t)
	for _, d := range []int{1, 2, 3} {
		for _, qk := range scales {
			for x, c := range windowCases() {
				c.g.d, c.g.e, c.g.qk, c.g.scale = d, 3, qk, 1
				t.Run(fmt.Sprintf("%s/d=%d/qk=%g", c.name, d, qk), func(t *testing.T) {
					paths.add(checkGuarantee(t, Method{}, c.make(uint64(100*d+x)), 1e-3))
				})
			}
		}
	}
}

// TestWindowAdversarial: large entries and low temperature (logits up to
// about 1e5), keys shifted far from the origin, clustered keys, several
// eps, on windows narrower and wider than minTreeBlock.
func TestWindowAdversarial(t *testing.T) {
	cluster := func(r *rand.Rand, p *attn.Problem[float64]) {
		c := make([]float64, 4*p.D)
		for i := range c {
			c[i] = 20 * r.NormFloat64()
		}
		for j := range p.K[:len(p.K)/p.D] {
			k := r.IntN(4)
			for t := range p.D {
				p.K[j*p.D+t] = c[k*p.D+t] + 1e-3*r.NormFloat64()
			}
		}
	}
	var paths pathCounts
	defer paths.check(t)
	for _, d := range []int{1, 2, 4} {
		for _, a := range []struct {
			name  string
			qk    float64
			scale float64
			shape func(r *rand.Rand, p *attn.Problem[float64])
		}{
			{"large-entries", 100, 1, nil},
			{"low-temperature", 3, 30, nil},
			{"shifted-keys", 3, 1, shiftKeys(50)},
			{"shifted-large", 30, 1, shiftKeys(1000)},
			{"clustered", 1, 1, cluster},
		} {
			for x, w := range []struct{ n, m, left, right int }{
				{700, 700, 40, 0},   // narrower than minTreeBlock
				{700, 700, 250, 0},  // blocks and edges
				{300, 1100, 600, 7}, // n < m
				{1100, 300, 90, 90}, // n > m
			} {
				for _, topLeft := range []bool{false, true} {
					c := windowCase{g: gen{heads: 1, n: w.n, m: w.m, d: d, e: 4, qk: a.qk, scale: a.scale, shape: a.shape},
						left: w.left, right: w.right, topLeft: topLeft}
					eps := []float64{1e-2, 1e-3, 1e-5}[x%3]
					t.Run(fmt.Sprintf("%s/d=%d/n=%d/m=%d/w=%d,%d/top-left=%v", a.name, d, w.n, w.m, w.left, w.right, topLeft), func(t *testing.T) {
						paths.add(checkGuarantee(t, Method{}, c.make(uint64(d*10+x)), eps))
					})
				}
			}
		}
	}
}

// TestWindowLarge exercises windows wide enough for blocks shared between
// chunks of rows (sharedBlockMin keys and more), on sampled rows.
func TestWindowLarge(t *testing.T) {
	n, left := 12000, 9000
	if testing.Short() {
		n, left = 5000, 4500
	}
	for _, d := range []int{1, 2, 3} {
		for _, qk := range []float64{0.5, 3} {
			p := windowCase{g: gen{heads: 1, n: n, m: n, d: d, e: 2, qk: qk, scale: 1, causal: true}, left: left, right: 0}.make(uint64(d))
			t.Run(fmt.Sprintf("d=%d/qk=%g", d, qk), func(t *testing.T) { checkRowsSampled(t, p, 97) })
		}
	}
}

// TestWindowCover checks the segment-tree cover: aligned blocks of at
// least minTreeBlock keys, each a power of two at a multiple of its size,
// tiling [a, b) exactly, O(log) of them.
func TestWindowCover(t *testing.T) {
	hd := &head{r: 1, l: 1 << 14, k: make([]float64, 1<<14)}
	pr := newParams(1, 1, 2, newMonomials(1, 2), &budget{epsT: 1e-3, rhoCap: 1})
	hr := &headRun[float64]{hd: hd, pr: pr, v: make([]float64, 1<<14)}
	ws := &windowSet[float64]{hr: hr, e: 1}
	built := map[[2]int]*tree[float64]{}
	for a := 0; a < 1<<14; a += 3 * minTreeBlock {
		for _, b := range []int{a, a + minTreeBlock, a + 5*minTreeBlock, a + 77*minTreeBlock, 1 << 14} {
			if b > 1<<14 || b < a {
				continue
			}
			ws.cover(a, b)
			pos := a
			for _, bl := range ws.blocks {
				if bl.start != pos || bl.size < minTreeBlock || bl.size&(bl.size-1) != 0 || bl.start%bl.size != 0 || bl.tr == nil || bl.tr.n != bl.size {
					t.Fatalf("cover of [%d, %d): bad block %d+%d at %d", a, b, bl.start, bl.size, pos)
				}
				if old, ok := built[[2]int{bl.start, bl.size}]; ok && bl.size >= sharedBlockMin && old != bl.tr {
					t.Errorf("shared block %d+%d built twice", bl.start, bl.size)
				}
				built[[2]int{bl.start, bl.size}] = bl.tr
				pos += bl.size
			}
			if end := max(a, b); pos != end {
				t.Fatalf("cover of [%d, %d) ends at %d", a, b, pos)
			}
			if lim := 2 * int(math.Log2(float64(1<<14/minTreeBlock))); len(ws.blocks) > lim {
				t.Errorf("cover of [%d, %d): %d blocks, more than %d", a, b, len(ws.blocks), lim)
			}
		}
	}
}

// TestWindowEstimate: the planner prices a window by its width: narrow
// windows cost a fraction of full causal attention, and the estimate grows
// with the width.
func TestWindowEstimate(t *testing.T) {
	n := 1 << 15
	g := gen{heads: 1, n: n, m: n, d: 2, e: 8, qk: 1, scale: 1, causal: true}
	est := func(left int) float64 {
		p := windowCase{g: g, left: left, right: 0}.make(1)
		if left < 0 {
			p.Window = nil
		}
		p.Eps = 1e-3
		e, err := Method{Workers: 1}.Estimate64(p)
		if err != nil {
			t.Fatal(err)
		}
		return e.Seconds
	}
	full, w100, w1000, w8000 := est(-1), est(100), est(1000), est(8000)
	t.Logf("estimates: full causal %.3g s, windows 100 %.3g s, 1000 %.3g s, 8000 %.3g s", full, w100, w1000, w8000)
	if !(w100 < w1000 && w1000 < w8000) {
		t.Errorf("estimates do not grow with the window: %.3g, %.3g, %.3g s", w100, w1000, w8000)
	}
	// Full causal attention costs anytemp polylogarithmically per row and
	// a window of 100 keys about 100 direct terms, so the margin is a
	// factor of a few (about 4 here), not an order of magnitude; half is
	// what load during the start-up calibration cannot blur. The race
	// detector distorts the measured rates further (see raceEnabled).
	if !(w100 < full/2) && !raceEnabled {
		t.Errorf("window of 100 keys estimated at %.3g s, full causal %.3g s", w100, full)
	}
	// A window of 100 keys is summed directly: at most about its keys per row.
	if brute := float64(n) * (measuredRates().row + measuredRates().brute*101); !(w100 <= 1.5*brute) {
		t.Errorf("window of 100 keys estimated at %.3g s, direct sums %.3g s", w100, brute)
	}
}

// TestGradWindow checks dQ, dK and dV of windowed problems against the
// float64 reference gradient: the cover's blocks (shared by every row of
// a head, with local expansions) and the edges summed directly.
func TestGradWindow(t *testing.T) {
	scales := []float64{0.3, 3, 30}
	if testing.Short() {
		scales = []float64{0.3, 30}
	}
	var expanded int64
	defer func() {
		if expanded == 0 {
			t.Error("no expansion in any windowed gradient")
		}
	}()
	for _, d := range []int{1, 2, 3} {
		for _, qk := range scales {
			for x, c := range windowCases() {
				c.g.d, c.g.e, c.g.qk, c.g.scale = d, 3, qk, 1
				t.Run(fmt.Sprintf("%s/d=%d/qk=%g", c.name, d, qk), func(t *testing.T) {
					r64, _ := checkGrad(t, Method{}, c.make(uint64(100*d+x)), 1e-3)
					expanded += r64.st.Details["nodes_expanded"].(int64)
				})
			}
		}
	}
}

// TestGradWindowLarge checks sampled rows of the gradient of a long
// windowed problem (covers of blocks up to 2048 keys and more).
func TestGradWindowLarge(t *testing.T) {
	n, left := 6000, 2500
	if testing.Short() {
		n, left = 2500, 700
	}
	for _, d := range []int{1, 2, 3} {
		for _, qk := range []float64{0.3, 3} {
			g := gen{heads: 1, n: n, m: n, d: d, e: 2, qk: qk, scale: 1, causal: true}
			t.Run(fmt.Sprintf("d=%d/qk=%g", d, qk), func(t *testing.T) {
				checkGradSampled(t, windowCase{g: g, left: left, right: 0}.make(uint64(d)))
			})
		}
	}
}

// TestWindowCancel cancels a long windowed run after it started.
func TestWindowCancel(t *testing.T) {
	g := gen{heads: 1, n: 30000, m: 30000, d: 3, e: 2, qk: 1, scale: 1, causal: true}
	cancelMidRun(t, windowCase{g: g, left: 5000, right: 0}.make(5))
}
