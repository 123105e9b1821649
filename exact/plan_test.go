package exact

import (
	"testing"

	"github.com/fastattn/fastattn/attn/attntest"
)

// TestEstimate checks the cost model's shape: the three terms, the
// per-score term dominating at small d, decoding bounded by the pass over
// K and V, and memory linear in the keys.
func TestEstimate(t *testing.T) {
	p := attntest.To32(attntest.Case{Heads: 2, N: 4096, M: 4096, D: 64, E: 64}.Generate(1))
	est, err := Method{}.Estimate32(p)
	if err != nil {
		t.Fatal(err)
	}
	r := ratesFor32()
	pairs := 2 * 4096 * 4096.0
	want := pairs*r.pair + Flops(p)/r.flops + 2*4096*128*4/streamBytesPerSecond
	if d := est.Seconds/want - 1; d > 1e-9 || d < -1e-9 {
		t.Errorf("estimate %g s, want %g s", est.Seconds, want)
	}
	if est.Bytes < 2*4096*64*4 || est.Bytes > 8*float64(len(p.K))*4 {
		t.Errorf("memory estimate %g bytes for %d bytes of keys", est.Bytes, 4*len(p.K))
	}

	small := attntest.To32(attntest.Case{Heads: 1, N: 4096, M: 4096, D: 4, E: 4}.Generate(1))
	es, _ := Method{}.Estimate32(small)
	if perPair := es.Seconds / (4096 * 4096); perPair < r.pair {
		t.Errorf("d = 4: %g s per score, below the per-score cost %g", perPair, r.pair)
	}

	decode := attntest.Case{Heads: 1, N: 1, M: 100000, D: 64, E: 64}.Generate(1)
	ed, _ := Method{}.Estimate64(decode)
	if stream := 100000 * 128 * 8 / streamBytesPerSecond; ed.Seconds < stream || ed.Seconds > 2*stream {
		t.Errorf("decode estimate %g s, want about the pass over K and V, %g s", ed.Seconds, stream)
	}
}
