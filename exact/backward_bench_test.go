package exact

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
)

// BenchmarkBackwardRatio times the backward pass alone against the forward
// pass alone on the same problem, alternating them in every iteration so
// that both see the same load, and reports the ratio of their best times
// as "bwd/fwd" (FlashAttention-2's is about 2.5: five products against
// two). It also reports the ratio of their best CPU times (all threads)
// as "bwd/fwd-cpu", which a loaded machine disturbs less: a pass that
// loses a core for a while waits longer but burns no more CPU, and the
// median over iterations of each backward's time over the forward's just
// before it as "bwd/fwd-pair", which compares calls that ran in the same
// phase of a shared machine (a ratio of bests can pair a forward from a
// fast phase with a backward from a slower one). The shapes are one head
// at d = 64 and 128, n = 4096 and 16384 (issue 16's), then causal heads
// and a sliding window. With -short it keeps to n <= 4096.
func BenchmarkBackwardRatio(b *testing.B) {
	for _, d := range []int{64, 128} {
		for _, n := range []int{4096, 16384} {
			if testing.Short() && n > 4096 {
				continue
			}
			p64 := attntest.Case{Heads: 1, N: n, M: n, D: d, E: d}.Generate(1)
			dO := attntest.GradOutput(p64, 3)
			b.Run(fmt.Sprintf("float32/d=%d/n=%d", d, n), func(b *testing.B) { benchRatio(b, attntest.To32(p64), dO) })
			b.Run(fmt.Sprintf("float64/d=%d/n=%d", d, n), func(b *testing.B) { benchRatio(b, p64, dO) })
		}
	}
	// Training's shapes: several heads, causal, and a sliding window,
	// whose tiles on the diagonal and at the window's edges see only some
	// of their keys.
	for _, c := range []struct {
		name string
		c    attntest.Case
	}{
		{"causal/heads=8/d=64/n=2048", attntest.Case{Heads: 8, N: 2048, M: 2048, D: 64, E: 64, Causal: true}},
		{"causal/heads=8/d=128/n=2048", attntest.Case{Heads: 8, N: 2048, M: 2048, D: 128, E: 128, Causal: true}},
		{"window=1024/heads=4/d=128/n=4096", attntest.Case{Heads: 4, N: 4096, M: 4096, D: 128, E: 128, Causal: true, Window: &attn.Window{Left: 1024, Right: -1}}},
	} {
		p64 := c.c.Generate(1)
		dO := attntest.GradOutput(p64, 3)
		b.Run("float32/"+c.name, func(b *testing.B) { benchRatio(b, attntest.To32(p64), dO) })
		b.Run("float64/"+c.name, func(b *testing.B) { benchRatio(b, p64, dO) })
	}
}

func benchRatio[T attn.Float](b *testing.B, p *attn.Problem[T], dO64 []float64) {
	ctx := context.Background()
	out := attn.NewOutput(p)
	g := attn.NewGradients(p)
	dO := make([]T, len(dO64))
	for i, v := range dO64 {
		dO[i] = T(v)
	}
	bestF, bestB := time.Duration(1<<62), time.Duration(1<<62)
	cpuF, cpuB := math.Inf(1), math.Inf(1)
	var flops float64
	var pairs []float64
	for b.Loop() {
		c0, t0 := cpu(), time.Now()
		if _, err := attn.Forward(ctx, Method{}, p, out); err != nil {
			b.Fatal(err)
		}
		c1, t1 := cpu(), time.Now()
		st, err := attn.Backward(ctx, Method{}, p, out, dO, g)
		if err != nil {
			b.Fatal(err)
		}
		c2, t2 := cpu(), time.Now()
		bestF, bestB = min(bestF, t1.Sub(t0)), min(bestB, t2.Sub(t1))
		cpuF, cpuB = min(cpuF, c1-c0), min(cpuB, c2-c1)
		pairs = append(pairs, t2.Sub(t1).Seconds()/t1.Sub(t0).Seconds())
		flops = st.Flops
	}
	b.ReportMetric(bestB.Seconds()/bestF.Seconds(), "bwd/fwd")
	slices.Sort(pairs)
	b.ReportMetric((pairs[(len(pairs)-1)/2]+pairs[len(pairs)/2])/2, "bwd/fwd-pair")
	if cpuF > 0 {
		b.ReportMetric(cpuB/cpuF, "bwd/fwd-cpu")
	}
	b.ReportMetric(float64(bestF.Microseconds())/1e3, "fwd-ms")
	b.ReportMetric(float64(bestB.Microseconds())/1e3, "bwd-ms")
	b.ReportMetric(flops/bestB.Seconds()/1e9, "bwd-GFLOP/s")
}
