package exact

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
	"github.com/fastattn/fastattn/internal/reference"
)

func TestGradConformance(t *testing.T) {
	attntest.RunGrad(t, Method{}, attntest.GradConfig{})
}

// TestBackwardWorkers checks that the split over workers (one, two, many
// more than cores) changes nothing beyond the order of dQ's additions.
func TestBackwardWorkers(t *testing.T) {
	for _, c := range []attntest.Case{
		{Name: "heads", Heads: 5, N: 70, M: 300, D: 8, E: 5},
		{Name: "causal", Heads: 2, N: 200, M: 200, D: 4, E: 4, Causal: true},
		{Name: "padding", Heads: 3, N: 30, M: 400, D: 4, E: 4, KeyLens: []int{400, 129, 0}},
	} {
		p := c.Generate(5)
		dO := attntest.GradOutput(p, 6)
		out := attn.NewOutput(p)
		if _, err := (Method{}).Forward64(context.Background(), p, out); err != nil {
			t.Fatal(err)
		}
		var first *attn.Gradients[float64]
		for _, w := range []int{1, 2, 7} {
			g := attn.NewGradients(p)
			if _, err := (Method{Workers: w}).Backward64(context.Background(), p, out, dO, g); err != nil {
				t.Fatal(err)
			}
			if first == nil {
				first = g
				continue
			}
			// dK and dV are computed by one worker each: bit for bit equal.
			if !slices.Equal(g.DK, first.DK) || !slices.Equal(g.DV, first.DV) {
				t.Errorf("%s: dK or dV differ between 1 and %d workers", c.Name, w)
			}
			for i := range g.DQ {
				if d := g.DQ[i] - first.DQ[i]; d > 1e-12 || d < -1e-12 {
					t.Fatalf("%s: dQ[%d] = %g with %d workers, %g with one", c.Name, i, g.DQ[i], w, first.DQ[i])
				}
			}
		}
	}
}

// TestBackwardNarrowKeyTiles runs wide float64 heads, whose key tiles are
// bwdKeyTile/2 wide, over several key tiles and a ragged last one, against
// the reference.
func TestBackwardNarrowKeyTiles(t *testing.T) {
	if kt := bwdKeyTileFor(8, 136, 136, 96, 0); kt != bwdKeyTile/2 {
		t.Fatalf("float64 key tile at d = e = 136: %d, want %d", kt, bwdKeyTile/2)
	}
	for _, c := range []attntest.Case{
		{Name: "plain", Heads: 2, N: 150, M: 333, D: 136, E: 136},
		{Name: "causal-gqa", Heads: 4, KVHeads: 2, N: 290, M: 290, D: 136, E: 136, Causal: true},
	} {
		p := c.Generate(11)
		if _, err := attntest.CheckGrad(Method{}, p, attntest.GradOutput(p, 12), 1e-9, false); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
	}
}

// TestBackwardKeyTileForL2 checks bwdKeyTileFor's choice by L2 size on
// the shapes it was measured on: a 2 MiB L2 takes 128 keys for float64
// at d = 128 and float32 at d = 256 and keeps 256 for float32 at
// d = 128; a 1 MiB L2, or an unknown one, keeps 256 for all three.
func TestBackwardKeyTileForL2(t *testing.T) {
	for _, c := range []struct {
		size, d, l2, want int
	}{
		{8, 128, 2 << 20, 128}, {4, 256, 2 << 20, 128}, {4, 128, 2 << 20, 256},
		{8, 128, 1 << 20, 256}, {4, 256, 1 << 20, 256}, {4, 128, 1 << 20, 256},
		{8, 128, 0, 256}, {4, 64, 2 << 20, 256}, {8, 64, 2 << 20, 256},
	} {
		if kt := bwdKeyTileFor(c.size, c.d, c.d, bwdQueryTileFor(c.size), c.l2); kt != c.want {
			t.Errorf("%d-byte elements, d = %d, L2 %d bytes: %d keys, want %d", c.size, c.d, c.l2, kt, c.want)
		}
	}
}

// TestBackwardRejectsBadSizes checks the size checks of Backward.
func TestBackwardRejectsBadSizes(t *testing.T) {
	p := attntest.Case{Heads: 2, N: 3, M: 4, D: 2, E: 2}.Generate(1)
	out := attn.NewOutput(p)
	if _, err := (Method{}).Forward64(context.Background(), p, out); err != nil {
		t.Fatal(err)
	}
	g := attn.NewGradients(p)
	if _, err := (Method{}).Backward64(context.Background(), p, out, make([]float64, 5), g); err == nil {
		t.Error("short dO accepted")
	}
	g.DK = g.DK[:3]
	if _, err := (Method{}).Backward64(context.Background(), p, out, make([]float64, 12), g); err == nil {
		t.Error("short DK accepted")
	}
}

// TestBackwardMemoryIsLinear checks that no n x m matrix is formed: the
// bytes a backward call allocates are per-worker tiles plus O(n d).
func TestBackwardMemoryIsLinear(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	n := 6000
	if testing.Short() {
		n = 3000 // n*m/8 well above the per-worker tiles (96 x 256)
	}
	p := attntest.To32(attntest.Case{Heads: 1, N: n, M: n, D: 2, E: 2}.Generate(2))
	out := attn.NewOutput(p)
	if _, err := (Method{}).Forward32(context.Background(), p, out); err != nil {
		t.Fatal(err)
	}
	dO := make([]float32, n*2)
	for i := range dO {
		dO[i] = 1
	}
	g := attn.NewGradients(p)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := (Method{}).Backward32(context.Background(), p, out, dO, g); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	workers := uint64(runtime.GOMAXPROCS(0))
	tiles := 4 * bwdQueryTile * bwdKeyTile * 8
	limit := (workers+1)*uint64(tiles) + (workers+2)*uint64(n)*2*12 + 8*uint64(n)
	if allocated > limit || allocated > uint64(n)*uint64(n)/8 {
		t.Fatalf("allocated %d bytes for n = m = %d (limit %d; n*m*4 = %d)", allocated, n, limit, 4*n*n)
	}
	t.Logf("n = m = %d: %d bytes allocated", n, allocated)
}

// BenchmarkBackward times the forward pass alone and forward plus backward
// at the sizes of BenchmarkForward, in the same run, reporting the ratio
// (forward+backward)/forward as "x_fwd" on the fwd+bwd rows. With -short
// it keeps to n <= 4096.
func BenchmarkBackward(b *testing.B) {
	for _, d := range []int{16, 64, 128} {
		for _, n := range []int{1024, 4096, 16384} {
			if testing.Short() && n > 4096 {
				continue
			}
			p64 := attntest.Case{Heads: 1, N: n, M: n, D: d, E: d}.Generate(1)
			p32 := attntest.To32(p64)
			var fwd32, fwd64 float64
			b.Run(fmt.Sprintf("float32/d=%d/n=%d/fwd", d, n), func(b *testing.B) { fwd32 = benchFwdBwd(b, p32, false, 0) })
			b.Run(fmt.Sprintf("float32/d=%d/n=%d/fwd+bwd", d, n), func(b *testing.B) { benchFwdBwd(b, p32, true, fwd32) })
			b.Run(fmt.Sprintf("float64/d=%d/n=%d/fwd", d, n), func(b *testing.B) { fwd64 = benchFwdBwd(b, p64, false, 0) })
			b.Run(fmt.Sprintf("float64/d=%d/n=%d/fwd+bwd", d, n), func(b *testing.B) { benchFwdBwd(b, p64, true, fwd64) })
		}
	}
}

// benchFwdBwd returns seconds per iteration; with fwdSecs > 0 it reports
// the ratio to it.
func benchFwdBwd[T attn.Float](b *testing.B, p *attn.Problem[T], withBackward bool, fwdSecs float64) float64 {
	ctx := context.Background()
	out := attn.NewOutput(p)
	g := attn.NewGradients(p)
	dO := make([]T, p.Heads*p.N*p.E)
	for i := range dO {
		dO[i] = T(float64(i%7) - 3)
	}
	var flops float64
	for b.Loop() {
		st, err := attn.Forward(ctx, Method{}, p, out)
		if err != nil {
			b.Fatal(err)
		}
		flops = st.Flops
		if withBackward {
			st, err := attn.Backward(ctx, Method{}, p, out, dO, g)
			if err != nil {
				b.Fatal(err)
			}
			flops += st.Flops
		}
	}
	secs := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(flops/secs/1e9, "GFLOP/s")
	if fwdSecs > 0 {
		b.ReportMetric(secs/fwdSecs, "x_fwd")
	}
	return secs
}

// wrongGrad is exact attention with a slightly wrong backward pass: the
// suite must notice.
type wrongGrad struct {
	Method
	tensor int     // 0, 1, 2: dQ, dK, dV
	rel    float64 // error added to one entry, relative to the largest
}

func (w wrongGrad) Backward64(ctx context.Context, p *attn.Problem[float64], out *attn.Output[float64], dO []float64, g *attn.Gradients[float64]) (attn.Stats, error) {
	st, err := w.Method.Backward64(ctx, p, out, dO, g)
	x := [][]float64{g.DQ, g.DK, g.DV}[w.tensor]
	var big float64
	for _, v := range x {
		big = max(big, math.Abs(v))
	}
	x[len(x)/2] += w.rel * big
	return st, err
}

// TestGradSuiteCatchesErrors checks that the reference comparison and the
// finite differences each catch an error of 1e-5 of the gradient's largest
// entry in one entry.
func TestGradSuiteCatchesErrors(t *testing.T) {
	c := attntest.GradCases()[4] // fd-batched
	p := c.Generate(1)
	dO := attntest.GradOutput(p, 2)
	for x := range 3 {
		m := wrongGrad{tensor: x, rel: 1e-5}
		if _, err := attntest.CheckGrad(m, p, dO, 1e-9, false); err == nil {
			t.Errorf("the reference comparison missed an error in %s", []string{"dQ", "dK", "dV"}[x])
		}
		if _, err := attntest.CheckGradFD(m, p, dO, 1e-6, false, false); err == nil {
			t.Errorf("finite differences missed an error in %s", []string{"dQ", "dK", "dV"}[x])
		}
	}
}

// TestReferenceGradient checks the oracle itself: exact's backward against
// finite differences of the float64 reference attention (not of exact's
// forward), on every small case.
func TestReferenceGradient(t *testing.T) {
	for _, c := range attntest.GradCases() {
		if c.N*c.M > 1000 {
			continue // the naive forward is slow under 5 x entries evaluations
		}
		p := c.Generate(1)
		if _, err := attntest.CheckGradFD(Method{}, p, attntest.GradOutput(p, 2), 1e-6, true, false); err != nil {
			t.Errorf("%s: %v", c.Name, err)
		}
	}
}

// TestBackwardLargeSampled checks a problem large enough for every flush
// and many tiles against the reference on sampled rows, in both types,
// with one worker (which takes every key tile, so its float32 dQ sums
// pass bwdFlush keys and are flushed to float64) and, without -short,
// with the default.
func TestBackwardLargeSampled(t *testing.T) {
	n := bwdFlush + 400
	methods := []Method{{Workers: 1}, {}}
	if testing.Short() {
		methods = methods[:1] // the other tests run the default
	}
	for _, c := range []attntest.Case{
		{Heads: 2, N: n, M: n + 37, D: 16, E: 8},
		{Heads: 2, N: n, M: n + 37, D: 16, E: 8, Causal: true},
		// A window moves the rows that see a key tile down with the tile:
		// rows a flushing tile no longer sees keep their float32 dQ sums.
		{Heads: 2, N: n, M: n, D: 16, E: 8, Causal: true, Window: &attn.Window{Left: 300}},
	} {
		p64 := c.Generate(9)
		dO := attntest.GradOutput(p64, 10)
		dO32 := make([]float32, len(dO))
		for i, v := range dO {
			dO32[i] = float32(v)
		}
		p32 := attntest.To32(p64)
		want64, want32 := sampledGradients(p64, dO), sampledGradients(p32, dO32)
		for _, m := range methods {
			checkSampled(t, m, p64, dO, want64, 1e-12)
			checkSampled(t, m, p32, dO32, want32, 1e-5)
		}
	}
}

// sampled holds reference gradients of a few rows of dQ and of dK and dV,
// per head.
type sampled struct {
	rows, keys []int
	dq, dk, dv [][]float64
}

// sampledGradients returns the float64 reference's gradients of p's
// sampled rows.
func sampledGradients[T attn.Float](p *attn.Problem[T], dO []T) sampled {
	s := sampled{rows: []int{0, 1, 63, 64, 255, 256, 257, 700 - 1, p.N / 2, p.N - 1},
		keys: []int{0, 127, 128, 511, 512, 640, p.M / 2, p.M - 1}}
	for h := range p.Heads {
		lse, o := make([]float64, p.N), make([]float64, p.N*p.E)
		for i := range p.N {
			reference.Row(p, h, i, o[i*p.E:(i+1)*p.E], &lse[i])
		}
		dk, dv := reference.GradientKeyRows(p, dO, h, lse, o, s.keys)
		s.dq = append(s.dq, reference.GradientQueryRows(p, dO, h, s.rows))
		s.dk, s.dv = append(s.dk, dk), append(s.dv, dv)
	}
	return s
}

func checkSampled[T attn.Float](t *testing.T, m Method, p *attn.Problem[T], dO []T, want sampled, tol float64) {
	t.Helper()
	out := attn.NewOutput(p)
	if _, err := attn.Forward(context.Background(), m, p, out); err != nil {
		t.Fatal(err)
	}
	g := attn.NewGradients(p)
	if _, err := attn.Backward(context.Background(), m, p, out, dO, g); err != nil {
		t.Fatal(err)
	}
	for h := range p.Heads {
		for _, c := range []struct {
			name  string
			got   []T
			cols  int
			rows  []int
			want  []float64
			first int
		}{
			{"dQ", g.DQ, p.D, want.rows, want.dq[h], h * p.N},
			{"dK", g.DK, p.D, want.keys, want.dk[h], h * p.M},
			{"dV", g.DV, p.E, want.keys, want.dv[h], h * p.M},
		} {
			var errMax, big float64
			for r, i := range c.rows {
				for x := range c.cols {
					w := c.want[r*c.cols+x]
					errMax = max(errMax, math.Abs(float64(c.got[(c.first+i)*c.cols+x])-w))
					big = max(big, math.Abs(w))
				}
			}
			if errMax > tol*big {
				t.Errorf("%T workers=%d causal=%v head %d: %s error %g, largest entry %g", T(0), m.Workers, p.Causal, h, c.name, errMax, big)
			}
		}
	}
}

// TestBackwardReusesBuffers checks that the buffers a call leaves for the
// next (bwdRecycler) carry nothing over: a float32 call repeated after calls of
// other sizes gives the same gradients bit for bit (one worker, so the
// order of dQ's additions is fixed).
func TestBackwardReusesBuffers(t *testing.T) {
	big := attntest.To32(attntest.Case{Heads: 2, N: 300, M: 1100, D: 8, E: 8}.Generate(3))
	small := attntest.To32(attntest.Case{Heads: 1, N: 50, M: 70, D: 16, E: 4, Causal: true}.Generate(4))
	m := Method{Workers: 1}
	run := func(p *attn.Problem[float32]) *attn.Gradients[float32] {
		out, dO := forwardForGrad(t, m, p, 5)
		g := attn.NewGradients(p)
		if _, err := m.Backward32(context.Background(), p, out, dO, g); err != nil {
			t.Fatal(err)
		}
		return g
	}
	first := run(big)
	run(small)
	again := run(big)
	for x, pair := range [][2][]float32{{first.DQ, again.DQ}, {first.DK, again.DK}, {first.DV, again.DV}} {
		if !slices.Equal(pair[0], pair[1]) {
			t.Errorf("%s differs when the call is repeated after another", []string{"dQ", "dK", "dV"}[x])
		}
	}
}

// cancelAfter is a context whose Err reports context.Canceled from its
// nth call on.
type cancelAfter struct {
	context.Context
	n, calls int
}

func (c *cancelAfter) Err() error {
	if c.calls++; c.calls >= c.n {
		return context.Canceled
	}
	return nil
}

// TestBackwardAfterCancel checks that a call cancelled at any of its
// checks, among them one inside each key tile (its query rows are
// checked every cancelCheckTiles tiles), leaves nothing in the buffers
// the next call reuses: the next call gives the gradients of an
// uninterrupted one, bit for bit.
func TestBackwardAfterCancel(t *testing.T) {
	p := attntest.To32(attntest.Case{Heads: 1, N: (cancelCheckTiles + 2) * bwdQueryTile, M: 300, D: 8, E: 8}.Generate(5))
	m := Method{Workers: 1}
	out, dO := forwardForGrad(t, m, p, 7)
	run := func(ctx context.Context) (*attn.Gradients[float32], error) {
		g := attn.NewGradients(p)
		_, err := m.Backward32(ctx, p, out, dO, g)
		return g, err
	}
	count := &cancelAfter{Context: context.Background(), n: math.MaxInt}
	want, err := run(count)
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= count.calls; n++ {
		if _, err := run(&cancelAfter{Context: context.Background(), n: n}); err != context.Canceled {
			t.Fatalf("cancelled at check %d of %d: got %v, want context.Canceled", n, count.calls, err)
		}
		got, err := run(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for x, pair := range [][2][]float32{{want.DQ, got.DQ}, {want.DK, got.DK}, {want.DV, got.DV}} {
			if !slices.Equal(pair[0], pair[1]) {
				t.Errorf("%s differs after a call cancelled at check %d of %d", []string{"dQ", "dK", "dV"}[x], n, count.calls)
			}
		}
	}
}

// forwardForGrad runs m's forward pass on p and returns its output and an
// output gradient of integers cycling through period values around 0.
func forwardForGrad(t *testing.T, m Method, p *attn.Problem[float32], period int) (*attn.Output[float32], []float32) {
	t.Helper()
	out := attn.NewOutput(p)
	if _, err := m.Forward32(context.Background(), p, out); err != nil {
		t.Fatal(err)
	}
	dO := make([]float32, p.Heads*p.N*p.E)
	for i := range dO {
		dO[i] = float32(i%period - period/2)
	}
	return out, dO
}

// TestBackwardScoresAsForward checks float32 gradients at large logits
// (about 1e4) for groups of few rows, whose forward scores read the keys
// in place: the backward must round every score as the forward did
// (scoresInPlace), or a weight recomputed from the forward's log-sum-exp
// moves by the difference times the logits' size (dV was 0.2-0.4% off,
// a hundred times the conformance tolerance). Rows of one head, GQA
// groups gathered into one tile (up to kernels.NTInPlaceRows rows), and
// 16-bit keys and values.
func TestBackwardScoresAsForward(t *testing.T) {
	for _, c := range []attntest.Case{
		{Name: "rows-4", Heads: 1, N: 4, M: 300, D: 16, E: 8, QScale: 1e2, KScale: 1e2},
		{Name: "rows-12", Heads: 1, N: 12, M: 300, D: 16, E: 8, QScale: 1e2, KScale: 1e2},
		{Name: "rows-16-sinks", Heads: 1, N: 16, M: 300, D: 16, E: 8, QScale: 1e2, KScale: 1e2, Sinks: []float64{50}},
		{Name: "rows-20", Heads: 1, N: 20, M: 300, D: 16, E: 8, QScale: 1e2, KScale: 1e2},
		{Name: "gqa-4x4", Heads: 4, KVHeads: 1, N: 4, M: 300, D: 16, E: 8, QScale: 1e2, KScale: 1e2},
		{Name: "gqa-4x6", Heads: 4, KVHeads: 1, N: 6, M: 300, D: 16, E: 8, QScale: 1e2, KScale: 1e2},
	} {
		p64 := c.Generate(1)
		p, dO := attntest.To32(p64), make([]float32, c.Heads*c.N*c.E)
		for i, x := range attntest.GradOutput(p64, 2) {
			dO[i] = float32(x)
		}
		for _, q := range []*attn.Problem[float32]{p, attntest.ToHalfKV(p, attn.Float16)} {
			if _, err := attntest.CheckGrad[float32](Method{}, q, dO, 2e-5, false); err != nil {
				t.Errorf("%s, keys and values %v: %v", c.Name, q.KVFormat, err)
			}
		}
	}
}
