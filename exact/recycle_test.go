package exact

import (
	"context"
	"runtime"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
)

// TestBackwardKeepsBuffers checks that repeated forward and backward calls
// of one size allocate next to nothing after the first: the per-worker
// buffers (megabytes at this size) come back every time, whichever
// processor the call resumes on.
func TestBackwardKeepsBuffers(t *testing.T) {
	if raceEnabled {
		// Under the race detector sync.Pool drops a quarter of what is put
		// back, at random, and the TN products' scratch comes from one.
		t.Skip("allocation counts are not meaningful under the race detector")
	}
	p := attntest.To32(attntest.Case{Heads: 1, N: 2048, M: 2048, D: 64, E: 64}.Generate(5))
	out := attn.NewOutput(p)
	g := attn.NewGradients(p)
	dO := make([]float32, p.Heads*p.N*p.E)
	for i := range dO {
		dO[i] = float32(i%7) - 3
	}
	ctx := context.Background()
	step := func() {
		if _, err := attn.Forward(ctx, Method{}, p, out); err != nil {
			t.Fatal(err)
		}
		if _, err := attn.Backward(ctx, Method{}, p, out, dO, g); err != nil {
			t.Fatal(err)
		}
	}
	step()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const steps = 32
	for range steps {
		step()
	}
	runtime.ReadMemStats(&after)
	// One worker's dQ buffers alone are 1.5 MB here; with a sync.Pool
	// alone, 1 to 5 calls in 8 remade them.
	if total := after.TotalAlloc - before.TotalAlloc; total > 1<<20 {
		t.Errorf("%d bytes allocated in %d forward and backward steps after the first; want the buffers reused", total, steps)
	}
}
