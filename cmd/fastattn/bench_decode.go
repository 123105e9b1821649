package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fastattn/fastattn"
	"github.com/fastattn/fastattn/internal/kernels"
)

// decodeBenchCase is one configuration of bench --decode.
type decodeBenchCase struct {
	method          string
	d, heads, kv    int
	scale           float64
	fromLog, toLog  int
	label           string
	uniformEntries  bool
	bytesPerContext float64 // bytes of keys and values per cached token
	kvFormat        fastattn.HalfFormat
}

// decodeBenchRow is one context length of one case.
type decodeBenchRow struct {
	target    int     // the context length 2^k
	context   int     // the context of the first timed step (a little more)
	median    float64 // seconds per token (one step of every head)
	bound     float64
	fallbacks int
	rebuilds  int
	degree    int
}

// benchDecodeCmd is bench --decode: time per decoding step against the
// context length, exact and poly in one run, with the memory bandwidth
// measured in the same run.
func benchDecodeCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench --decode", "bench --decode [--from 10] [--to 20] [--poly-to 22] [--heads 1,8] [--gqa 4] [--exact-d 128] [--poly-d 8] [--steps 15] [--eps 1e-3]", stdout)
	from := fs.Int("from", 10, "smallest context length, as a power of two")
	to := fs.Int("to", 20, "largest context length of exact decoding, as a power of two")
	polyTo := fs.Int("poly-to", 22, "largest context length of single-head poly decoding, as a power of two")
	multiTo := fs.Int("multi-to", 18, "largest context length of the runs with several heads, as a power of two")
	headList := fs.String("heads", "1,8", "query heads per run, comma-separated")
	gqa := fs.Int("gqa", 4, "also run the largest --heads as grouped-query attention with this many query heads per key/value head (1: no such run)")
	exactD := fs.Int("exact-d", 128, "head dimension of the exact bandwidth runs (d = e)")
	polyD := fs.Int("poly-d", 8, "head dimension of the poly runs and of the exact runs they are compared with (d = e)")
	steps := fs.Int("steps", 15, "decoding steps timed per context length; the median is reported")
	eps := fs.Float64("eps", fastattn.DefaultEps, "error target of poly")
	maxGB := fs.Float64("max-cache-gb", 4, "skip context lengths whose cache would exceed this many GB")
	bwMB := fs.Int("bandwidth-mb", 1024, "size of the array read to measure the memory bandwidth, in MiB (far larger than the CPU caches)")
	exactOnly := fs.Bool("exact-only", false, "run only the exact d=--exact-d cases (float32, float16 and bfloat16 caches), not the poly comparison")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	heads, err := parseInts("heads", *headList)
	if err != nil {
		return err
	}
	if *from < 1 || *to < *from || *polyTo < *from || *to > 30 || *polyTo > 30 || *multiTo < *from || *steps < 1 || *gqa < 1 || *exactD < 1 || *polyD < 1 || !(*eps > 0 && *eps < 1) || !(*maxGB > 0) || *bwMB < 1 {
		return usagef("bench --decode: need 1 <= --from <= --to, --poly-to <= 30, positive --steps, --gqa, dimensions, --max-cache-gb and eps in (0, 1)")
	}
	// Each group runs its cases in lockstep (one step of each in turn), so
	// the float32 and 16-bit caches of one shape see the same load.
	var groups [][]decodeBenchCase
	add := func(method string, d, h, kv, toLog int, scale float64, uniform bool, formats ...fastattn.HalfFormat) {
		label := fmt.Sprintf("%s d=%d heads=%d", method, d, h)
		if kv != h {
			label += fmt.Sprintf(" kv=%d", kv)
		}
		c := decodeBenchCase{method: method, d: d, heads: h, kv: kv, scale: scale, fromLog: *from, toLog: toLog,
			label: label, uniformEntries: uniform, bytesPerContext: float64(kv) * float64(2*d) * 4}
		g := []decodeBenchCase{c}
		// 16-bit caches: half the bytes per token.
		for _, f := range formats {
			c.kvFormat, c.bytesPerContext, c.label = f, float64(kv)*float64(2*d)*2, label+" "+f.String()
			g = append(g, c)
		}
		groups = append(groups, g)
	}
	half := []fastattn.HalfFormat{fastattn.Float16, fastattn.BFloat16}
	hmax := slices.Max(heads)
	// Filling the caches costs O(context) per key/value head (O(context r e)
	// for a polynomial state): runs with several heads stop at --multi-to.
	top := func(h, single int) int {
		if h > 1 {
			return min(single, *multiTo)
		}
		return single
	}
	for _, h := range heads {
		if h == 1 {
			add("exact", *exactD, h, h, top(h, *to), 1/math.Sqrt(float64(*exactD)), false, half...)
		} else {
			add("exact", *exactD, h, h, top(h, *to), 1/math.Sqrt(float64(*exactD)), false)
		}
	}
	if *gqa > 1 && hmax%*gqa == 0 {
		add("exact", *exactD, hmax, hmax / *gqa, top(hmax, *to), 1/math.Sqrt(float64(*exactD)), false, half...)
	}
	for _, h := range heads {
		if *exactOnly {
			break
		}
		add("exact", *polyD, h, h, top(h, *to), 1/float64(*polyD), true)
		add("poly", *polyD, h, h, top(h, *polyTo), 1/float64(*polyD), true)
	}
	if *gqa > 1 && hmax%*gqa == 0 && !*exactOnly {
		add("poly", *polyD, hmax, hmax / *gqa, top(hmax, *polyTo), 1/float64(*polyD), true)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()

	fmt.Fprintf(stdout, "fastattn bench --decode: float32 caches (and float16, bfloat16 ones, stepped in turn with them), one query token per step (B = 1), median of %d steps per context; kernels %s, %d CPUs, load average %s\n",
		*steps, kernels.Implementation(), runtime.GOMAXPROCS(0), loadAverage())
	bw := streamBandwidth(runtime.GOMAXPROCS(0), *bwMB)
	fmt.Fprintf(stdout, "memory bandwidth (streaming read of a %d MiB array, %d goroutines, best of 5): %.1f GB/s\n", *bwMB, runtime.GOMAXPROCS(0), bw/1e9)
	if !*exactOnly {
		fmt.Fprintf(stdout, "poly: Q and K entries uniform in [-1, 1], scale 1/d, eps %g; ", *eps)
	}
	fmt.Fprintf(stdout, "exact d=%d: entries uniform in [-1, 1], scale 1/sqrt(d)\n\n", *exactD)
	fmt.Fprintf(stdout, "%-34s %9s %12s %11s %9s %7s %9s %6s %9s\n", "case", "context", "us/token", "tokens/s", "GB/s", "% bw", "bound", "degree", "fallback")
	results := map[string][]decodeBenchRow{}
	for _, g := range groups {
		rows, err := runDecodeGroup(ctx, g, *steps, *eps, *maxGB*1e9, stdout, bw)
		if err != nil {
			return err
		}
		for i, c := range g {
			results[c.label] = rows[i]
		}
	}
	fmt.Fprintf(stdout, "\nload average at the end: %s; bandwidth again: %.1f GB/s\n", loadAverage(), streamBandwidth(runtime.GOMAXPROCS(0), *bwMB)/1e9)
	// 16-bit caches against float32, stepped in turn: time per token and
	// tokens per second at each context.
	for _, g := range groups {
		x32 := results[g[0].label]
		for _, c := range g[1:] {
			x16 := results[c.label]
			fmt.Fprintf(stdout, "%s cache: time per token against float32 (tokens/s ratio):", c.label)
			for i := range min(len(x32), len(x16)) {
				r := x16[i].median / x32[i].median
				fmt.Fprintf(stdout, " 2^%d %.2f (%.2fx)", bits.Len(uint(x32[i].target))-1, r, 1/r)
			}
			fmt.Fprintln(stdout)
		}
	}
	// The targets: poly flat in the context, and far faster than exact.
	for _, h := range heads {
		if *exactOnly {
			break
		}
		p := results[fmt.Sprintf("poly d=%d heads=%d", *polyD, h)]
		x := results[fmt.Sprintf("exact d=%d heads=%d", *polyD, h)]
		fmt.Fprintf(stdout, "poly d=%d heads=%d: log-log slope of time per token from 2^12 to 2^20: %s", *polyD, h, fitSlope(p, 1<<12, 1<<20))
		if len(x) > 0 && len(p) > 0 {
			// The longest context both reached.
			r := x[len(x)-1]
			if i := slices.IndexFunc(p, func(q decodeBenchRow) bool { return q.target == r.target }); i >= 0 {
				fmt.Fprintf(stdout, "; exact / poly at context 2^%d: %.0fx", bits.Len(uint(r.target))-1, r.median/p[i].median)
			}
		}
		fmt.Fprintln(stdout)
	}
	return nil
}

// decodeBenchRun is one case of a group being run: its cache, inputs
// and rows.
type decodeBenchRun struct {
	c       decodeBenchCase
	cache   *fastattn.Cache[float32]
	r       *rand.Rand
	q, k, v fastattn.Tensor[float32]
	out     []float32
	lse     []float64
	rows    []decodeBenchRow
	times   []float64
	done    bool // past its largest context
	row     decodeBenchRow
}

// runDecodeGroup fills the caches of a group's cases context by context
// and times decoding steps at each context length 2^k, one step of each
// case in turn, so they see the same load. It returns each case's rows.
func runDecodeGroup(ctx context.Context, g []decodeBenchCase, steps int, eps, maxBytes float64, stdout io.Writer, bw float64) ([][]decodeBenchRow, error) {
	runs := make([]*decodeBenchRun, len(g))
	for i, c := range g {
		cache, err := fastattn.NewCache[float32](1, c.kv, c.d, c.d, fastattn.CacheOptions{QueryHeads: c.heads, Method: c.method, Scale: c.scale, Eps: eps, KVFormat: c.kvFormat})
		if err != nil {
			return nil, err
		}
		// One seed per shape: the group's caches hold the same values.
		run := &decodeBenchRun{c: c, cache: cache, r: rand.New(rand.NewPCG(uint64(c.d), uint64(c.heads))),
			out: make([]float32, c.heads*c.d), lse: make([]float64, c.heads), times: make([]float64, 0, steps)}
		run.q = fastattn.Tensor[float32]{Data: make([]float32, c.heads*c.d), Shape: []int{1, c.heads, 1, c.d}}
		run.k = fastattn.Tensor[float32]{Data: make([]float32, c.kv*c.d), Shape: []int{1, c.kv, 1, c.d}}
		run.v = fastattn.Tensor[float32]{Data: make([]float32, c.kv*c.d), Shape: []int{1, c.kv, 1, c.d}}
		runs[i] = run
	}
	fill := func(r *rand.Rand, x []float32) {
		for i := range x {
			x[i] = float32(2*r.Float64() - 1)
		}
	}
	const chunk = 4096
	var kb, vb []float32
	for lg := g[0].fromLog; lg <= g[0].toLog; lg++ {
		target := 1 << lg
		live := 0
		for _, run := range runs {
			c := run.c
			if run.done || lg > c.toLog {
				run.done = true
				continue
			}
			if float64(target)*c.bytesPerContext > maxBytes {
				fmt.Fprintf(stdout, "%-34s %9d  skipped: the cache would take %.1f GB (--max-cache-gb)\n", c.label, target, float64(target)*c.bytesPerContext/1e9)
				run.done = true
				continue
			}
			live++
			// Grow the cache to target - 1 tokens (the steps of the
			// previous length stay: a few tokens more), so the timed
			// steps run at contexts from target on. Append keeps the
			// polynomial state.
			kb, vb = slices.Grow(kb[:0], c.kv*chunk*c.d)[:c.kv*chunk*c.d], slices.Grow(vb[:0], c.kv*chunk*c.d)[:c.kv*chunk*c.d]
			for run.cache.Len(0) < target-1 {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				n := min(chunk, target-1-run.cache.Len(0))
				fill(run.r, kb[:c.kv*n*c.d])
				fill(run.r, vb[:c.kv*n*c.d])
				k, _ := fastattn.NewTensor(kb[:c.kv*n*c.d], 1, c.kv, n, c.d)
				v, _ := fastattn.NewTensor(vb[:c.kv*n*c.d], 1, c.kv, n, c.d)
				if err := run.cache.Append(k, v, nil); err != nil {
					return nil, err
				}
			}
			run.row = decodeBenchRow{target: target, context: run.cache.Len(0) + 2}
			run.times = run.times[:0]
		}
		if live == 0 {
			break
		}
		// One untimed step absorbs a rebuild of the polynomial state.
		for s := range steps + 1 {
			for _, run := range runs {
				if run.done {
					continue
				}
				fill(run.r, run.q.Data)
				fill(run.r, run.k.Data)
				fill(run.r, run.v.Data)
				st, err := run.cache.Step(ctx, run.out, run.lse, run.q, run.k, run.v, nil)
				if err != nil {
					return nil, err
				}
				if s == 0 {
					continue
				}
				run.times = append(run.times, st.Seconds)
				run.row.bound = max(run.row.bound, st.ErrorBound)
				run.row.fallbacks += st.FallbackRows
				run.row.rebuilds += st.Rebuilds
				run.row.degree = max(run.row.degree, st.Degree)
			}
		}
		for _, run := range runs {
			if run.done {
				continue
			}
			c, row := run.c, run.row
			slices.Sort(run.times)
			row.median = run.times[len(run.times)/2]
			run.rows = append(run.rows, row)
			gbs := float64(row.context) * c.bytesPerContext / row.median
			// Bytes streamed per second mean something for exact decoding only.
			rate, frac := "-", "-"
			if c.method == "exact" {
				rate, frac = fmt.Sprintf("%.2f", gbs/1e9), fmt.Sprintf("%.0f%%", 100*gbs/bw)
			}
			fmt.Fprintf(stdout, "%-34s %9d %12.2f %11.0f %9s %7s %9.2g %6d %9d\n", c.label, row.context, row.median*1e6, 1/row.median, rate, frac, row.bound, row.degree, row.fallbacks)
		}
	}
	rows := make([][]decodeBenchRow, len(runs))
	for i, run := range runs {
		rows[i] = run.rows
	}
	return rows, nil
}

// fitSlope is bench's least-squares slope of log time against log context
// over the rows with lo <= 2^k <= hi.
func fitSlope(rows []decodeBenchRow, lo, hi int) string {
	var br []benchRow
	for _, r := range rows {
		if r.target >= lo && r.target <= hi {
			br = append(br, benchRow{n: r.context, seconds: map[string]float64{"step": r.median}})
		}
	}
	if len(br) < 2 {
		return "n/a"
	}
	return fmt.Sprintf("%.3f", slope(br, "step"))
}

// streamBandwidth measures the memory read bandwidth in bytes per second:
// workers goroutines each stream over their share of an array of mb MiB
// (far larger than the CPU caches) with the SIMD max kernel; best of 5.
func streamBandwidth(workers, mb int) float64 {
	x := make([]float32, mb<<18)
	for i := range x {
		x[i] = float32(i & 1023)
	}
	best := 0.0
	per := len(x) / workers
	for range 5 {
		start := time.Now()
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() { kernels.Max32(x[w*per : (w+1)*per]) })
		}
		wg.Wait()
		best = max(best, float64(len(x))*4/time.Since(start).Seconds())
	}
	return best
}

// loadAverage returns the 1, 5 and 15 minute load averages, or "unknown".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
