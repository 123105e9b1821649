package exact

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/fastattn/fastattn/attn/attntest"
	"github.com/fastattn/fastattn/internal/kernels"
)

// TestForwardPhases splits the float32 forward pass at n = m = 16384 (one
// head) into its steps and times each alone, on one core in the calling
// thread's CPU time, interleaved, best of many samples:
//
//   - loop: attendRows on one query tile against 4096 keys, as a prefill
//     runs it (packed keys, scans, prefetch);
//   - QK^T and PV: the two products of those tiles alone, prefetching as
//     the loop does; PV adds into the float64 accumulator in the
//     microkernels (kernels.GemmNNAccumulate32, as when no row's maximum
//     moved), as the loop does;
//   - max (with the NaN/Inf scan) and exp (base 2, with the row sums), on
//     all the tile's rows in one call each as the loop runs them: the
//     softmax steps alone on a tile of scores;
//   - other: loop minus the steps (per-row bookkeeping in Go, calls,
//     cache misses the steps alone do not see);
//   - pack, stats: packing one head's keys for Q K^T, and the key
//     statistics of the rounding bound (a pass over K, V and Q), per
//     forward pass, scaled to the loop's share of a pass.
//
// Each line gives a step's share of the loop's time (pack and stats: of
// the pass) and its GFLOP/s-equivalent: the pass's 4 n m d flops divided by
// the step's time, the speed the pass would run at if that step were all
// it did. It runs only with FASTATTN_LOOP_RATES=1.
func TestForwardPhases(t *testing.T) {
	needThreadCPU(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	for _, d := range []int{64, 128} {
		t.Log(forwardPhases(t, d))
	}
}

func forwardPhases(t *testing.T, d int) string {
	const m, chunk, tiles = 16384, 4096, 16
	kt := tileWidth[float32](d, d) // the loop's key tile
	ss := kt + scoreStride - wideTile
	p := attntest.To32(attntest.Case{Heads: 1, N: tiles * queryTile, M: m, D: d, E: d}.Generate(1))
	pk := newPacker[float32]()
	pk.Reset(m, d, p.K, d)
	pk.Pack(0, m)
	st := newTileState[float32](d)
	k := opsFor[float32]()
	scale := float32(p.Scale)
	// A tile of scores to run the softmax steps on.
	pk.GemmNT(queryTile, 0, kt, p.Q, d, st.scores, ss)
	fresh := slices.Clone(st.scores)
	pv := make([]float32, queryTile*d)
	acc := make([]float64, queryTile*d)
	ones := make([]float64, queryTile)
	for i := range ones {
		ones[i] = 1
	}
	kts := chunk / kt
	steps := []struct {
		name string
		run  func(q []float32, r0, ja int)
	}{
		{"loop", func(_ []float32, r0, ja int) {
			attendRows(context.Background(), p, k, st, pk, nil, r0, queryTile, ja, ja+chunk, true)
		}},
		{"QK^T", func(q []float32, _, ja int) {
			for j0 := ja; j0 < ja+chunk; j0 += kt {
				pk.GemmNTNext(queryTile, j0, kt, q, d, st.scores, ss, p.V[j0*d:(j0+kt)*d])
			}
			copy(st.scores, fresh)
		}},
		{"max", func(_ []float32, _, _ int) {
			for range kts {
				kernels.MaxRows32(st.scores, ss, queryTile, kt, st.blockMax) // as the loop runs it
			}
		}},
		{"exp", func(_ []float32, _, _ int) {
			for range kts {
				kernels.Exp2Rows32(st.scores, ss, queryTile, kt, scale, st.shifts, st.sums)
			}
			copy(st.scores, fresh)
		}},
		{"PV", func(_ []float32, _, ja int) {
			for j0 := ja; j0 < ja+chunk; j0 += kt {
				var next []float32
				if j0+2*kt <= m {
					next = pk.Rows(j0+kt, j0+2*kt)
				}
				kernels.GemmNNAccumulate32(queryTile, d, kt, st.scores, ss, p.V[j0*d:], d, pv, d, acc, d, ones, next)
			}
		}},
	}
	best := make([]float64, len(steps))
	for i := range best {
		best[i] = math.Inf(1)
	}
	for rep := range 200 {
		r0 := (rep % tiles) * queryTile
		ja := (rep * 7 % (m / chunk)) * chunk
		q := p.Q[r0*d : (r0+queryTile)*d]
		for i := range steps {
			v := (rep + i) % len(steps)
			c0, _ := threadCPU()
			steps[v].run(q, r0, ja)
			c1, _ := threadCPU()
			best[v] = min(best[v], c1-c0)
		}
	}
	// Per-pass steps: packing the keys and the key statistics, best of 5.
	pack, stats := math.Inf(1), math.Inf(1)
	for range 5 {
		c0, _ := threadCPU()
		pk.Reset(m, d, p.K, d)
		pk.Pack(0, m)
		c1, _ := threadCPU()
		pl := *p
		pl.N, pl.Q = m, make([]float32, m*d) // the statistics read all n queries
		c2, _ := threadCPU()
		headKeyStats(context.Background(), &pl, 1)
		c3, _ := threadCPU()
		pack, stats = min(pack, c1-c0), min(stats, c3-c2)
	}
	// Scaled to one loop's worth: a pass is (n/queryTile)(m/chunk) loops.
	perPass := float64(m) / queryTile * float64(m/chunk)
	loop := best[0]
	flops := 4.0 * queryTile * chunk * float64(d)
	var b strings.Builder
	fmt.Fprintf(&b, "d = %d, %d x %d tiles, n = m = %d, one core (thread CPU time, best of 200):\n", d, queryTile, kt, m)
	row := func(name string, sec float64) {
		fmt.Fprintf(&b, "  %-11s %6.1f us  %5.1f%%  %6.0f GFLOP/s-equivalent\n", name, sec*1e6, 100*sec/loop, flops/sec/1e9)
	}
	var sum float64
	for i, s := range steps {
		row(s.name, best[i])
		switch s.name {
		case "QK^T", "max", "exp", "PV":
			sum += best[i]
		}
	}
	row("other", loop-sum)
	row("pack", pack/perPass)
	row("stats", stats/perPass)
	fmt.Fprintf(&b, "  products alone %.0f GFLOP/s; loop %.0f GFLOP/s; loop with pack and stats %.0f GFLOP/s",
		flops/(best[1]+best[4])/1e9, flops/loop/1e9, flops/(loop+(pack+stats)/perPass)/1e9)
	return b.String()
}
