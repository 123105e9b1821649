package exact

import (
	"testing"

	"github.com/fastattn/fastattn/attn/attntest"
)

// TestEstimate checks the cost model's shape: the three terms, the
// per-score term dominating at small d, decoding's pass over K and V, and
// memory linear in the keys.
func TestEstimate(t *testing.T) {
	p := attntest.To32(attntest.Case{Heads: 2, N: 4096, M: 4096, D: 64, E: 64}.Generate(1))
	est, err := Method{}.Estimate32(p)
	if err != nil {
		t.Fatal(err)
	}
	r := ratesFor32()
	pairs := 2 * 4096 * 4096.0
	busy := float64(makePlan(p, 0).workers)
	want := (pairs*r.pair+Flops(p)/r.flops)/busy + 2*4096*128*4/streamBytesPerSecond
	if d := est.Seconds/want - 1; d > 1e-9 || d < -1e-9 {
		t.Errorf("estimate %g s, want %g s", est.Seconds, want)
	}
	if est.Bytes < 2*4096*64*4 || est.Bytes > 8*float64(len(p.K))*4 {
		t.Errorf("memory estimate %g bytes for %d bytes of keys", est.Bytes, 4*len(p.K))
	}

	small := attntest.To32(attntest.Case{Heads: 1, N: 4096, M: 4096, D: 4, E: 4}.Generate(1))
	es, _ := Method{}.Estimate32(small)
	if perPair := es.Seconds / (4096 * 4096); perPair < r.pair/busy {
		t.Errorf("d = 4: %g s per score, below the per-score cost %g", perPair, r.pair)
	}

	// Decoding: the pass over K and V plus the scores' work, which the
	// plan splits over the workers by keys.
	decode := attntest.Case{Heads: 1, N: 1, M: 100000, D: 64, E: 64}.Generate(1)
	ed, _ := Method{}.Estimate64(decode)
	r64 := ratesFor64()
	pl := makePlan(decode, 0)
	busyDecode := float64(min(pl.workers, max(len(pl.tasks), 1)))
	stream := 100000 * 128 * 8 / streamBytesPerSecond
	wantDecode := (100000*r64.pair+Flops(decode)/r64.flops)/busyDecode + stream
	if d := ed.Seconds/wantDecode - 1; d > 1e-9 || d < -1e-9 || ed.Seconds < stream {
		t.Errorf("decode estimate %g s, want %g s (the pass over K and V: %g s)", ed.Seconds, wantDecode, stream)
	}
}

// TestCalibratedRates checks the measured per-core rates against what any
// core running these kernels can do: a flop rate between 0.1 and 1000
// GFLOP/s (the portable loops, a loaded machine, the widest AVX-512 core),
// a per-score time under a microsecond, and more seconds predicted for
// eight times the head dimension.
func TestCalibratedRates(t *testing.T) {
	for name, r := range map[string]rates{"float32": ratesFor32(), "float64": ratesFor64()} {
		if r.flops < 1e8 || r.flops > 1e12 {
			t.Errorf("%s: %.3g flop/s per core", name, r.flops)
		}
		if r.pair < 0 || r.pair > 1e-6 {
			t.Errorf("%s: %.3g s per score", name, r.pair)
		}
		t.Logf("%s: %.3g GFLOP/s per core, %.3g ns per score", name, r.flops/1e9, r.pair*1e9)
	}
	small := attntest.To32(attntest.Case{Heads: 1, N: 2048, M: 2048, D: 8, E: 8}.Generate(1))
	large := attntest.To32(attntest.Case{Heads: 1, N: 2048, M: 2048, D: 64, E: 64}.Generate(1))
	es, _ := Method{}.Estimate32(small)
	el, _ := Method{}.Estimate32(large)
	if !(el.Seconds > es.Seconds) {
		t.Errorf("d = 64 predicted %g s, not more than d = 8's %g s", el.Seconds, es.Seconds)
	}
}
