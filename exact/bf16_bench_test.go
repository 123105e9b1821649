package exact

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
	"github.com/fastattn/fastattn/internal/kernels"
)

// BenchmarkBF16Prefill times, in one run, exact prefill (one head, n = m,
// d = e in {64, 128}, n in {4096, 16384}) on bfloat16 queries, keys and
// values on AMX tiles against the float32 prefill on the same (widened)
// values: the calls alternate, and each path's best time over the b.N
// rounds gives its GFLOP/s (4nmd). It reports float32, bf16 (P split, the
// default) and bf16r (P rounded once, eps 0.05) GFLOP/s and the ratios
// bf16/float32 and bf16r/float32.
func BenchmarkBF16Prefill(b *testing.B) {
	if !kernels.AMX() {
		b.Skip("no AMX here")
	}
	for _, d := range []int{64, 128} {
		for _, n := range []int{4096, 16384} {
			b.Run(fmt.Sprintf("d=%d/n=%d", d, n), func(b *testing.B) {
				ph := attntest.ToHalf(attntest.To32(attntest.Case{Heads: 1, N: n, M: n, D: d, E: d}.Generate(1)), attn.BFloat16)
				ph.Eps = 1e-3
				loose := *ph
				loose.Eps = 0.05
				p32 := attntest.Widened(ph)
				o16 := &attn.Output[float32]{O16: make([]uint16, n*d), LSE: make([]float64, n)}
				o32 := attn.NewOutput(p32)
				flops := Flops(p32)
				best := map[string]time.Duration{}
				time1 := func(name string, f func() (attn.Stats, error), arith string) {
					start := time.Now()
					st, err := f()
					el := time.Since(start)
					if err != nil {
						b.Fatal(err)
					}
					if a, _ := st.Details["arithmetic"].(string); arith != "" && a != arith {
						b.Fatalf("%s ran %q, want %q", name, a, arith)
					}
					if t, ok := best[name]; !ok || el < t {
						best[name] = el
					}
				}
				ctx := context.Background()
				for b.Loop() {
					time1("float32", func() (attn.Stats, error) { return Method{}.Forward32(ctx, p32, o32) }, "")
					time1("bf16", func() (attn.Stats, error) { return Method{}.Forward32(ctx, ph, o16) }, bf16Split.String())
					time1("bf16r", func() (attn.Stats, error) { return Method{}.Forward32(ctx, &loose, o16) }, bf16Rounded.String())
				}
				rate := func(name string) float64 { return flops / best[name].Seconds() / 1e9 }
				b.ReportMetric(rate("float32"), "float32-GFLOP/s")
				b.ReportMetric(rate("bf16"), "bf16-GFLOP/s")
				b.ReportMetric(rate("bf16r"), "bf16r-GFLOP/s")
				b.ReportMetric(math.Round(100*rate("bf16")/rate("float32"))/100, "bf16/float32")
				b.ReportMetric(math.Round(100*rate("bf16r")/rate("float32"))/100, "bf16r/float32")
			})
		}
	}
}
