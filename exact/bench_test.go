package exact

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
)

// BenchmarkForward times exact attention at n = m in {1024, 4096, 16384} and
// d = e in {16, 64, 128}, float32 and float64, reporting GFLOP/s (4nmd).
func BenchmarkForward(b *testing.B) {
	for _, d := range []int{16, 64, 128} {
		for _, n := range []int{1024, 4096, 16384} {
			p64 := attntest.Case{Heads: 1, N: n, M: n, D: d, E: d}.Generate(1)
			b.Run(fmt.Sprintf("float32/d=%d/n=%d", d, n), func(b *testing.B) { benchForward(b, attntest.To32(p64)) })
			b.Run(fmt.Sprintf("float64/d=%d/n=%d", d, n), func(b *testing.B) { benchForward(b, p64) })
		}
	}
}

func benchForward[T attn.Float](b *testing.B, p *attn.Problem[T]) {
	out := attn.NewOutput(p)
	var flops float64
	for b.Loop() {
		st, err := attn.Forward(context.Background(), Method{}, p, out)
		if err != nil {
			b.Fatal(err)
		}
		flops = st.Flops
	}
	b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// TestMemoryIsLinear checks that the n x m score matrix is never formed:
// the bytes allocated by a call are a small multiple of the inputs, far
// below n*m.
func TestMemoryIsLinear(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	n := 12000
	if testing.Short() {
		n = 5000
	}
	p := attntest.To32(attntest.Case{Heads: 1, N: n, M: n, D: 2, E: 2}.Generate(2))
	out := attn.NewOutput(p)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	if _, err := (Method{}).Forward32(context.Background(), p, out); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	// Per-worker tiles are about queryTile*keyTile values; n*m float32 would be 4n^2 bytes.
	limit := uint64(runtime.GOMAXPROCS(0)+1) * 4 * queryTile * keyTile * 8
	if allocated > limit || allocated > uint64(n)*uint64(n)/16 {
		t.Fatalf("allocated %d bytes for n = m = %d (limit %d; n*m*4 = %d)", allocated, n, limit, 4*n*n)
	}
	t.Logf("n = m = %d: %d bytes allocated", n, allocated)
}
