package exact

import (
	"context"
	"fmt"
	"math"
	"os"
	"runtime"
	"slices"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
)

// TestLoopRates measures, on one core and in the calling thread's CPU time
// (so other jobs on the machine count less), where the float32 forward
// loop's time goes at d = 64 and 128 against 16384 keys:
//
//   - loop: attendRows as a prefill runs it (packed keys, scans, prefetch),
//     on chunks of 4096 keys;
//   - loop without prefetch: the same with the L2 prefetch off;
//   - loop, 48-row blocks: the same with each key tile's Q K^T, softmax
//     and P V run on 48 rows of the query tile at a time (blockRows32);
//   - products: its Q K^T and P V alone, over the same keys, with and
//     without the prefetch;
//   - products, L2: the same on 1024 keys reused (they stay in L2).
//
// The samples are interleaved and each figure is the best (and the 10th
// percentile) of 300, in GFLOP/s per core. loop / products is the share of
// the softmax steps; products / products-L2 the cost of streaming the
// keys and values from L3. It runs only with FASTATTN_LOOP_RATES=1.
func TestLoopRates(t *testing.T) {
	needThreadCPU(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer func(old bool) { prefetch = old }(prefetch)
	for _, d := range []int{64, 128} {
		const m, chunk, l2Keys = 16384, 4096, 1024
		p := attntest.To32(attntest.Case{Heads: 1, N: 16 * queryTile, M: m, D: d, E: d}.Generate(1))
		pk := newPacker[float32]()
		pk.Reset(m, d, p.K, d)
		pk.Pack(0, m)
		st := newTileState[float32](d)
		k := opsFor[float32]()
		// products runs the two products of the tiles of keys ja..ja+chunk
		// (wrapped into span keys), prefetching as attendRows does.
		products := func(q []float32, ja, span int) {
			pv := st.pv[:queryTile*d]
			for j := 0; j < chunk; j += keyTile {
				j0 := ja + j%span
				var nextK, nextV []float32
				if prefetch && j+keyTile < chunk && j%span+keyTile < span {
					nextK = pk.Rows(j0+keyTile, j0+2*keyTile)
				}
				if prefetch {
					nextV = p.V[j0*d : (j0+keyTile)*d]
				}
				pk.GemmNTNext(queryTile, j0, keyTile, q, d, st.scores, scoreStride, nextV)
				clear(pv)
				k.gemmNNNext(queryTile, d, keyTile, st.scores, scoreStride, p.V[j0*d:], d, pv, d, nextK)
			}
		}
		names := []string{"loop", "loop without prefetch", "products", "products, L2", "loop, 48-row blocks", "products without prefetch"}
		times := make([][]float64, len(names))
		for rep := range 300 {
			r0 := (rep % 16) * queryTile
			ja := (rep * 7 % (m / chunk)) * chunk
			q := p.Q[r0*d : (r0+queryTile)*d]
			for i := range names {
				// Each variant takes each place in the order in turn: the
				// first after a change of keys finds them colder.
				v := (rep + i) % len(names)
				c0, _ := threadCPU()
				switch v {
				case 0, 1:
					prefetch = v == 0
					attendRows(context.Background(), p, k, st, pk, nil, r0, queryTile, ja, ja+chunk, true)
					prefetch = true
				case 2:
					products(q, ja, chunk)
				case 3:
					products(q, ja, l2Keys)
				case 4:
					old := blockRows32
					blockRows32 = 48
					attendRows(context.Background(), p, k, st, pk, nil, r0, queryTile, ja, ja+chunk, true)
					blockRows32 = old
				case 5:
					prefetch = false
					products(q, ja, chunk)
					prefetch = true
				}
				c1, _ := threadCPU()
				times[v] = append(times[v], c1-c0)
			}
		}
		flops := 4.0 * queryTile * chunk * float64(d)
		line := fmt.Sprintf("d = %d, %d x %d tiles, GFLOP/s per core (best, 10th percentile):", d, queryTile, keyTile)
		for v, ts := range times {
			slices.Sort(ts)
			line += fmt.Sprintf("  %s %.0f, %.0f;", names[v], flops/ts[0]/1e9, flops/ts[len(ts)/10]/1e9)
		}
		t.Log(line)
	}
}

// TestPassRates measures whole float32 forward passes at n = m = 16384 on
// one worker, causal and not, in the thread's CPU time (one worker runs on
// the calling goroutine; fastest of 5, interleaved): the loop of
// TestLoopRates plus everything around it (the key statistics of the
// bound, packing, the output), per core. A pass takes a quarter of a
// second, so on a loaded machine other jobs' time slices in it cost cache
// refills that the loop's short samples avoid. It runs only with
// FASTATTN_LOOP_RATES=1.
func TestPassRates(t *testing.T) {
	needThreadCPU(t)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cpu := func() float64 { c, _ := threadCPU(); return c }
	for _, d := range []int{64, 128} {
		base := attntest.To32(attntest.Case{Heads: 1, N: 16384, M: 16384, D: d, E: d}.Generate(1))
		base.Workers = 1
		causal := *base
		causal.Causal = true
		probs := []*attn.Problem[float32]{base, &causal}
		best := []float64{math.Inf(1), math.Inf(1)}
		for range 5 {
			for i, p := range probs {
				out := attn.NewOutput(p)
				c0 := cpu()
				if _, err := (Method{}).Forward32(context.Background(), p, out); err != nil {
					t.Fatal(err)
				}
				best[i] = min(best[i], cpu()-c0)
			}
		}
		t.Logf("d = %d, n = 16384, one worker: %.0f GFLOP/s, causal %.0f GFLOP/s (%.0f%%)", d,
			Flops(base)/best[0]/1e9, Flops(&causal)/best[1]/1e9, 100*Flops(&causal)/best[1]/(Flops(base)/best[0]))
	}
}

// needThreadCPU skips a measurement unless FASTATTN_LOOP_RATES=1 asks for
// it and the thread's CPU clock is there to time it.
func needThreadCPU(t *testing.T) {
	t.Helper()
	if os.Getenv("FASTATTN_LOOP_RATES") != "1" {
		t.Skip("set FASTATTN_LOOP_RATES=1 to measure")
	}
	if _, ok := threadCPU(); !ok {
		t.Skip("no per-thread CPU clock here")
	}
}
