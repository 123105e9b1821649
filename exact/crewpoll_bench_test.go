package exact

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
	"github.com/fastattn/fastattn/internal/parallel"
	"github.com/fastattn/fastattn/internal/parallel/polltest"
)

// BenchmarkCrewPoll times calls through a Workspace and a Decoder with
// the pooled helpers polling between calls (parallel.Poll as set) and
// with them asleep (parallel.SetPoll(0)), taking turns in one process so
// that both see the same machine (runs of 20 calls with one setting, the
// first 4 untimed), and reports the median of each and their ratio
// (poll/sleep). The shapes are short calls, where waking a
// helper weighs: decoding steps (8 query heads sharing 2 key/value heads,
// one query each, d = 128), float32 and float16 keys and values, a
// Decoder step (one head, d = 128), a small prefill (8 heads,
// n = m = 256, d = 64) and a small causal backward (one head, n = m = 256,
// d = 64).
func BenchmarkCrewPoll(b *testing.B) {
	poll := parallel.Poll()
	defer parallel.SetPoll(poll)
	ctx := context.Background()
	type shape struct {
		name string
		call func() error
	}
	var shapes []shape
	for _, m := range []int{4096, 32768} {
		p := attntest.To32(attntest.Case{Heads: 8, KVHeads: 2, N: 1, M: m, D: 128, E: 128}.Generate(1))
		ph := attntest.ToHalfKV(p, attn.Float16)
		out := attn.NewOutput(p)
		ws := NewWorkspace[float32]()
		shapes = append(shapes,
			shape{fmt.Sprintf("decode-gqa/m=%d", m), func() error { _, err := ws.Forward(ctx, p, out); return err }},
			shape{fmt.Sprintf("decode-gqa-float16-kv/m=%d", m), func() error { _, err := ws.Forward(ctx, ph, out); return err }})
	}
	rng := rand.New(rand.NewPCG(1, 4096))
	units := randomUnits[float32](rng, 1, 4096, 1, 128, 128, false)
	units[0].Lo[0], units[0].Hi[0] = 0, units[0].Keys.Len()
	dec := NewDecoder[float32](0)
	shapes = append(shapes, shape{"decoder/m=4096", func() error { return dec.Attend(ctx, units, 0.088) }})
	pre := attntest.To32(attntest.Case{Heads: 8, N: 256, M: 256, D: 64, E: 64}.Generate(2))
	preOut := attn.NewOutput(pre)
	preWS := NewWorkspace[float32]()
	shapes = append(shapes, shape{"prefill/n=256", func() error { _, err := preWS.Forward(ctx, pre, preOut); return err }})
	// A short backward: its few parallel regions each hand tasks to the
	// pooled helpers.
	bwd := attntest.To32(attntest.Case{Heads: 1, N: 256, M: 256, D: 64, E: 64, Causal: true}.Generate(3))
	bwdOut := attn.NewOutput(bwd)
	if _, err := (Method{}).Forward32(ctx, bwd, bwdOut); err != nil {
		b.Fatal(err)
	}
	dO := attntest.To32(attntest.Case{Heads: 1, N: 256, M: 256, D: 64, E: 64}.Generate(4)).Q
	grads := attn.NewGradients(bwd)
	shapes = append(shapes, shape{"backward/n=256", func() error { _, err := (Method{}).Backward32(ctx, bwd, bwdOut, dO, grads); return err }})

	// Calls back to back (a server running several sequences' steps in a
	// row, say) and calls after 300 us of other work on the calling
	// goroutine (a model's own products between its attention calls),
	// longer than a helper polls.
	for _, gap := range []time.Duration{0, 300 * time.Microsecond} {
		for _, s := range shapes {
			name := s.name + "/back-to-back"
			if gap > 0 {
				name = fmt.Sprintf("%s/after-%v-of-work", s.name, gap)
			}
			b.Run(name, func(b *testing.B) {
				med := polltest.Medians(b, []time.Duration{poll, 0}, gap, 20, 4, func() {
					if err := s.call(); err != nil {
						b.Fatal(err)
					}
				})
				mp, ms := med[0], med[1]
				b.ReportMetric(mp*1e6, "us-poll")
				b.ReportMetric(ms*1e6, "us-sleep")
				b.ReportMetric(mp/ms, "poll/sleep")
			})
		}
	}
}
