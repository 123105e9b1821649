package exact

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
	"github.com/fastattn/fastattn/internal/parallel"
)

// The real-model benchmarks: a grouped-query decoding step against the
// kernel alone, GQA prefill against the same call with K and V repeated,
// and a sliding window against full causal attention. Compare the ratios
// within one run (go test -bench 'Decode|Prefill|Window' -benchmem).

var ops32 = opsFor[float32]()

// BenchmarkDecodeGQA times one decoding step, 8 query heads sharing 2
// key/value heads, 1 query each, d = 128, float32, against m keys:
//
//   - workspace: Workspace.Forward as AttendInto runs it (plan, split-K,
//     merge, sinks, NaN and Inf looked for among the keys read);
//   - assume-finite: the same without the scans;
//   - kernel: the kernel alone, attendRows on the same split of the keys
//     over the same workers, without planning, merging or checks;
//   - float16-kv: workspace with the keys and values stored in float16.
func BenchmarkDecodeGQA(b *testing.B) {
	for _, m := range []int{4096, 32768} {
		p := attntest.To32(attntest.Case{Heads: 8, KVHeads: 2, N: 1, M: m, D: 128, E: 128}.Generate(1))
		out := attn.NewOutput(p)
		ws := NewWorkspace[float32]()
		b.Run(fmt.Sprintf("m=%d/workspace", m), func(b *testing.B) {
			b.ReportAllocs()
			p.AssumeFinite = false
			for b.Loop() {
				if _, err := ws.Forward(context.Background(), p, out); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("m=%d/assume-finite", m), func(b *testing.B) {
			b.ReportAllocs()
			p.AssumeFinite = true
			for b.Loop() {
				if _, err := ws.Forward(context.Background(), p, out); err != nil {
					b.Fatal(err)
				}
			}
			p.AssumeFinite = false
		})
		b.Run(fmt.Sprintf("m=%d/kernel", m), func(b *testing.B) {
			b.ReportAllocs()
			benchKernelOnly(b, p, ws)
		})
		ph := attntest.ToHalfKV(p, attn.Float16)
		b.Run(fmt.Sprintf("m=%d/float16-kv", m), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ws.Forward(context.Background(), ph, out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchKernelOnly runs the tasks of the workspace's plan for p with
// attendRows alone, on as many workers, each with its own tile state.
func benchKernelOnly(b *testing.B, p *attn.Problem[float32], ws *Workspace[float32]) {
	run := kernelOnly(p)
	for b.Loop() {
		run()
	}
}

// kernelOnly returns a function running the tasks of p's plan with
// attendRows alone, on as many workers (a crew, as the workspace's), each
// with its own tile state: the kernels' share of a call.
func kernelOnly(p *attn.Problem[float32]) func() {
	pl := makePlan(p, 0)
	states := make([]*tileState[float32], pl.workers)
	for i := range states {
		states[i] = newTileState[float32](p.E)
	}
	ctx := context.Background()
	c := new(parallel.Crew)
	c.Work = func(w int) {
		for t := w; t < len(pl.tasks); t += pl.workers {
			tk := pl.tasks[t]
			attendRows(ctx, p, ops32, states[w], nil, nil, tk.r0, tk.rows, tk.ja, tk.jb, false)
		}
	}
	return func() { c.Run(pl.workers) }
}

// BenchmarkPrefillGQA times causal prefill, 8 query heads sharing 2
// key/value heads, n = m = 4096, d = 128, float32, against the same call
// with K and V repeated for every query head.
func BenchmarkPrefillGQA(b *testing.B) {
	p := attntest.To32(attntest.Case{Heads: 8, KVHeads: 2, N: 4096, M: 4096, D: 128, E: 128, Causal: true}.Generate(1))
	rep := *p
	rep.KVHeads = 0
	rep.K, rep.V = nil, nil
	for h := range p.Heads {
		kh := p.KVHead(h)
		rep.K = append(rep.K, p.K[kh*p.M*p.D:(kh+1)*p.M*p.D]...)
		rep.V = append(rep.V, p.V[kh*p.M*p.E:(kh+1)*p.M*p.E]...)
	}
	for _, c := range []struct {
		name string
		p    *attn.Problem[float32]
	}{{"gqa", p}, {"repeated-kv", &rep}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			benchForward(b, c.p)
		})
	}
}

// BenchmarkWindow times causal attention at n = m = 32768, d = 128,
// float32, one head, with a window of 1024 keys and without.
func BenchmarkWindow(b *testing.B) {
	p := attntest.To32(attntest.Case{Heads: 1, N: 32768, M: 32768, D: 128, E: 128, Causal: true}.Generate(1))
	for _, w := range []*attn.Window{{Left: 1024, Right: 0}, nil} {
		name := "full-causal"
		if w != nil {
			name = fmt.Sprintf("window=%d", w.Left)
		}
		b.Run(name, func(b *testing.B) {
			p.Window = w
			benchForward(b, p)
		})
	}
}

// TestKeyAlign checks that tiles may start at multiples of keyAlign: every
// packed layout's panel width divides it.
func TestKeyAlign(t *testing.T) {
	p32, p64 := newPacker[float32](), newPacker[float64]()
	p32.Reset(1000, 64, make([]float32, 64000), 64)
	p64.Reset(1000, 64, make([]float64, 64000), 64)
	for _, a := range []int{p32.(interface{ Align() int }).Align(), p64.(interface{ Align() int }).Align()} {
		if keyAlign%a != 0 || keyTile%keyAlign != 0 {
			t.Errorf("keyAlign %d, keyTile %d, panel width %d: tiles could start off a panel", keyAlign, keyTile, a)
		}
	}
}

// TestRealModelTimings measures the real-model benchmarks' variants
// interleaved, round after round, so that a loaded machine slows them
// alike, and logs the fastest and the median time of each with their
// ratios. It runs only with FASTATTN_REALMODEL_TIMES=1 (minutes).
func TestRealModelTimings(t *testing.T) {
	if os.Getenv("FASTATTN_REALMODEL_TIMES") != "1" {
		t.Skip("set FASTATTN_REALMODEL_TIMES=1 to measure")
	}
	ctx := context.Background()
	type variant struct {
		name string
		run  func()
	}
	// CPU time (user + system, all threads) is measured too: on a loaded
	// machine it varies less than the wall time.
	scaleRounds := 1
	if s, err := strconv.Atoi(os.Getenv("FASTATTN_REALMODEL_ROUNDS")); err == nil && s > 0 {
		scaleRounds = s
	}
	// warm has measure run each variant once, untimed, right before its
	// timed run, so that its inputs are as warm in the caches as those of
	// the variants before it: decoding variants read 16-128 MiB each,
	// which the variant before may have evicted (float32 decoding at
	// 32768 keys ran three times in a row, each 16-bit variant once).
	warm := false
	// With FASTATTN_REALMODEL_COLD=1 the decoding variants instead run
	// after an untimed pass over a buffer larger than the last-level cache
	// (1 GiB; this machine's L3 holds 480 MiB), so their keys and values
	// come from memory, as a server's caches of many sequences do.
	var evict []int64
	if os.Getenv("FASTATTN_REALMODEL_COLD") == "1" {
		evict = make([]int64, 1<<27)
	}
	measure := func(title string, rounds int, vs []variant) {
		times := make([][]float64, len(vs))
		cpus := make([][]float64, len(vs))
		for range rounds * scaleRounds {
			for i, v := range vs {
				switch {
				case warm && evict != nil:
					var sum int64
					for x := 0; x < len(evict); x += 8 { // one read per cache line
						sum += evict[x]
						evict[x] = sum
					}
				case warm:
					v.run()
				}
				start, c0 := time.Now(), cpu()
				v.run()
				times[i] = append(times[i], time.Since(start).Seconds())
				cpus[i] = append(cpus[i], cpu()-c0)
			}
		}
		base, cbase := slices.Min(times[0]), slices.Min(cpus[0])
		for i, v := range vs {
			slices.Sort(times[i])
			slices.Sort(cpus[i])
			t.Logf("%s %-14s wall: fastest %.4g s (%.3gx the first), median %.4g s; CPU: least %.4g s (%.3gx), median %.4g s", title, v.name,
				times[i][0], times[i][0]/base, times[i][len(times[i])/2], cpus[i][0], cpus[i][0]/cbase, cpus[i][len(cpus[i])/2])
		}
	}
	for _, m := range []int{4096, 32768} {
		p := attntest.To32(attntest.Case{Heads: 8, KVHeads: 2, N: 1, M: m, D: 128, E: 128}.Generate(1))
		pf := *p
		pf.AssumeFinite = true
		p16, pb16 := attntest.ToHalfKV(p, attn.Float16), attntest.ToHalfKV(p, attn.BFloat16)
		out := attn.NewOutput(p)
		ws := NewWorkspace[float32]()
		fwd := func(q *attn.Problem[float32]) func() {
			return func() {
				if _, err := ws.Forward(ctx, q, out); err != nil {
					t.Fatal(err)
				}
			}
		}
		kernel := kernelOnly(p)
		fwd(p)()
		allocs := testing.AllocsPerRun(5, fwd(p))
		warm = true
		measure(fmt.Sprintf("decode 8/2 heads m=%d (%v allocs per call):", m, allocs), 30, []variant{
			{"kernel", kernel}, {"workspace", fwd(p)}, {"assume-finite", fwd(&pf)}, {"float16-kv", fwd(p16)}, {"bfloat16-kv", fwd(pb16)},
		})
		warm = false
	}
	// Grouped-query decoding with g query heads per key/value head, the
	// scores' prefetch of the values (valuePrefetchRows) on and off.
	for _, g := range []int{1, 2, 4, 8, 16} {
		p := attntest.To32(attntest.Case{Heads: 2 * g, KVHeads: 2, N: 1, M: 32768, D: 128, E: 128}.Generate(1))
		out := attn.NewOutput(p)
		ws := NewWorkspace[float32]()
		withRows := func(rows int) func() {
			return func() {
				defer func(was int) { valuePrefetchRows = was }(valuePrefetchRows)
				valuePrefetchRows = rows
				if _, err := ws.Forward(ctx, p, out); err != nil {
					t.Fatal(err)
				}
			}
		}
		warm = true
		measure(fmt.Sprintf("decode %d/2 heads m=32768:", 2*g), 30, []variant{
			{"no-prefetch", withRows(math.MaxInt)}, {"value-prefetch", withRows(1)},
		})
		warm = false
	}
	if testing.Short() {
		return
	}
	pre := attntest.To32(attntest.Case{Heads: 8, KVHeads: 2, N: 4096, M: 4096, D: 128, E: 128, Causal: true}.Generate(1))
	rep := *pre
	rep.KVHeads, rep.K, rep.V = 0, nil, nil
	for h := range pre.Heads {
		kh := pre.KVHead(h)
		rep.K = append(rep.K, pre.K[kh*pre.M*pre.D:(kh+1)*pre.M*pre.D]...)
		rep.V = append(rep.V, pre.V[kh*pre.M*pre.E:(kh+1)*pre.M*pre.E]...)
	}
	ws := NewWorkspace[float32]()
	out := attn.NewOutput(pre)
	run := func(q *attn.Problem[float32]) func() {
		return func() {
			if _, err := ws.Forward(ctx, q, out); err != nil {
				t.Fatal(err)
			}
		}
	}
	measure("prefill GQA causal n=4096 8/2 heads:", 3, []variant{{"repeated-kv", run(&rep)}, {"gqa", run(pre)}})
	long := attntest.To32(attntest.Case{Heads: 1, N: 32768, M: 32768, D: 128, E: 128, Causal: true}.Generate(1))
	win := *long
	win.Window = &attn.Window{Left: 1024, Right: 0}
	outL := attn.NewOutput(long)
	runL := func(q *attn.Problem[float32]) func() {
		return func() {
			if _, err := ws.Forward(ctx, q, outL); err != nil {
				t.Fatal(err)
			}
		}
	}
	measure("causal n=32768 d=128:", 2, []variant{{"full-causal", runL(long)}, {"window-1024", runL(&win)}})
}

// BenchmarkHalfQO times Workspace.Forward on causal prefill, 8 query heads
// sharing 2 key/value heads, n = m = 1024, d = 128, with float16 keys and
// values: float32 queries and output (float16-kv) against float16 ones
// too (float16-qkvo), whose queries are widened a tile at a time and whose
// output rows are rounded as their tiles finish.
func BenchmarkHalfQO(b *testing.B) {
	p := attntest.To32(attntest.Case{Heads: 8, KVHeads: 2, N: 1024, M: 1024, D: 128, E: 128, Causal: true}.Generate(1))
	pkv, pall := attntest.ToHalfKV(p, attn.Float16), attntest.ToHalf(p, attn.Float16)
	ws := NewWorkspace[float32]()
	out := attn.NewOutput(p)
	out16 := &attn.Output[float32]{O16: make([]uint16, len(out.O)), LSE: out.LSE}
	for _, c := range []struct {
		name string
		p    *attn.Problem[float32]
		out  *attn.Output[float32]
	}{{"float16-kv", pkv, out}, {"float16-qkvo", pall, out16}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ws.Forward(context.Background(), c.p, c.out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
