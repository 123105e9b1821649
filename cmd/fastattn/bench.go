package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"

	"github.com/fastattn/fastattn"
	"github.com/fastattn/fastattn/internal/fit"
)

func init() {
	register(command{"bench", "time methods against exact attention over a grid of sizes: seconds, GFLOP/s, ratios, log-log slopes", benchCmd})
}

// benchConfig is one parsed bench invocation.
type benchConfig struct {
	methods   []string
	ns, ds    []int
	e         int // value dimension; 0 means d
	types     []string
	dist      string
	entry     float64
	scale     string
	eps       float64
	causal    bool
	heads     int
	reps      int
	exactRows int
	grad      bool
}

func benchCmd(args []string, stdout, stderr io.Writer) error {
	if i := decodeFlagIndex(args); i >= 0 {
		return benchDecodeCmd(slices.Delete(slices.Clone(args), i, i+1), stdout, stderr)
	}
	fs := newFlagSet("bench", "bench [--methods exact,poly] [--n 1024,4096] [--d 64] [--e E] [--dtype float32,float64] [--entries normal:1] [--scale 1/sqrt(d)] [--eps 1e-3] [--exact-rows R] [--grad]\n       fastattn bench --decode [flags]   (bench --decode -h lists them)", stdout)
	methods := fs.String("methods", "exact", "methods to time, comma-separated; exact (the baseline of the ratios) is always timed")
	nList := fs.String("n", "1024,4096", "sequence lengths (n = m), comma-separated")
	dList := fs.String("d", "64", "head dimensions, comma-separated")
	eDim := fs.Int("e", 0, "value dimension (default d)")
	dtypes := fs.String("dtype", "float32,float64", "element types, comma-separated")
	entries := fs.String("entries", "normal:1", "distribution of Q and K entries: normal:SIGMA or uniform:B (uniform on [-B, B]); V is standard normal")
	scale := fs.String("scale", "1/sqrt(d)", "logit scale (PyTorch's scale): a positive number, 1/sqrt(d) (PyTorch's default) or 1/d (the papers')")
	eps := fs.Float64("eps", fastattn.DefaultEps, "entrywise error target, relative to max |V| per column")
	causal := fs.Bool("causal", false, "causal mask (n = m, so PyTorch's is_causal=True and flash_attn_func(causal=True) agree)")
	fs.Bool("decode", false, "time one decoding step against the context length instead, exact and poly, next to the memory bandwidth (bench --decode -h lists its flags)")
	heads := fs.Int("heads", 1, "heads per run (query and key/value heads alike)")
	reps := fs.Int("reps", 3, "runs per size; the fastest is reported")
	grad := fs.Bool("grad", false, "time forward plus backward (gradients for a random dO) instead of forward alone")
	exactRows := fs.Int("exact-rows", 8192, "above this n, exact attention is timed on this many query rows and scaled by n/rows (its cost is linear in rows); 0 times every row")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg := benchConfig{scale: *scale, eps: *eps, causal: *causal, heads: *heads, reps: *reps, exactRows: *exactRows, grad: *grad, e: *eDim}
	var err error
	if cfg.ns, err = parseInts("n", *nList); err != nil {
		return err
	}
	if cfg.ds, err = parseInts("d", *dList); err != nil {
		return err
	}
	cfg.methods = []string{"exact"}
	for _, m := range strings.Split(*methods, ",") {
		m = strings.TrimSpace(m)
		if m == "exact" || m == "" {
			continue
		}
		if !slices.Contains(fastattn.Methods(), m) && m != fastattn.Auto {
			return usagef("--methods: unknown method %q; choose from %v", m, fastattn.Methods())
		}
		cfg.methods = append(cfg.methods, m)
	}
	cfg.types = strings.Split(*dtypes, ",")
	for _, t := range cfg.types {
		if t != "float32" && t != "float64" {
			return usagef("--dtype takes float32 and/or float64, got %q", t)
		}
	}
	dist, val, ok := strings.Cut(*entries, ":")
	cfg.entry, err = strconv.ParseFloat(val, 64)
	if !ok || (dist != "normal" && dist != "uniform") || err != nil || !(cfg.entry > 0) {
		return usagef("--entries must be normal:SIGMA or uniform:B with a positive number, got %q", *entries)
	}
	cfg.dist = dist
	if cfg.heads < 1 || cfg.reps < 1 || cfg.exactRows < 0 || cfg.e < 0 {
		return usagef("--heads and --reps must be positive, --exact-rows and --e non-negative")
	}
	// Every flag is checked before the first line of the table.
	if !(cfg.eps > 0 && cfg.eps < 1) {
		return usagef("--eps must be in (0, 1) (an error of max|V| says nothing), got %g", cfg.eps)
	}
	for _, d := range cfg.ds {
		af := attnFlags{scale: cfg.scale, causal: cfg.causal, eps: cfg.eps}
		if _, err := af.options(d); err != nil {
			return err
		}
		for _, n := range cfg.ns {
			if err := checkWorkloadSize(cfg.heads, n, n, d, cfg.valueDim(d)); err != nil {
				return err
			}
		}
	}
	if cfg.causal && cfg.exactRows > 0 {
		cfg.exactRows = 0 // causal rows differ in cost: time them all
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	return runBench(ctx, cfg, stdout)
}

// valueDim is the value dimension e for head dimension d.
func (c benchConfig) valueDim(d int) int {
	if c.e > 0 {
		return c.e
	}
	return d
}

// decodeFlagIndex returns the position of bench's --decode switch in args
// (in any spelling package flag accepts: -decode, --decode, =true), or -1.
// bench --decode has flags of its own, so it is dispatched before parsing.
func decodeFlagIndex(args []string) int {
	for i, a := range args {
		switch a {
		case "--":
			return -1
		case "-decode", "--decode", "-decode=true", "--decode=true":
			return i
		}
	}
	return -1
}

// benchRow is one size's measurements.
type benchRow struct {
	n       int
	seconds map[string]float64
	note    map[string]string
}

func runBench(ctx context.Context, cfg benchConfig, stdout io.Writer) error {
	what := "forward"
	if cfg.grad {
		what = "forward + backward (the backward's sampled error check not timed)"
	}
	fmt.Fprintf(stdout, "fastattn bench: %s, %s, Q and K entries %s:%g, scale %s, eps %g, causal %v; fastest of %d runs of the library call\n",
		what, plural(cfg.heads, "head"), cfg.dist, cfg.entry, cfg.scale, cfg.eps, cfg.causal, cfg.reps)
	flops := "exact attention's 2nm(d+e) flops"
	if cfg.grad {
		flops = "exact attention's forward flops 2nm(d+e) over the forward + backward time"
	}
	fmt.Fprintf(stdout, "GFLOP/s counts %s; x = exact's time / the method's; * = exact timed on sampled rows and scaled\n", flops)
	for _, d := range cfg.ds {
		for _, t := range cfg.types {
			header := fmt.Sprintf("%8s %5s %8s %12s %9s", "n", "d", "dtype", "exact (s)", "GFLOP/s")
			for _, m := range cfg.methods[1:] {
				header += fmt.Sprintf(" %12s %8s %10s", m+" (s)", "x", "bound")
			}
			fmt.Fprintln(stdout, header)
			var rows []benchRow
			for _, n := range cfg.ns {
				row, line, err := benchSize(ctx, cfg, n, d, t)
				if err != nil {
					return err
				}
				rows = append(rows, row)
				fmt.Fprintln(stdout, line)
			}
			for _, r := range rows {
				for _, m := range cfg.methods[1:] {
					if _, ran := r.seconds[m]; !ran {
						fmt.Fprintf(stdout, "  n/a: %s at n = %d: %s\n", m, r.n, oneLine(strings.TrimPrefix(r.note[m], "fastattn: ")))
					}
				}
			}
			if len(rows) >= 2 {
				fmt.Fprintf(stdout, "%s log-log slope of time in n (least squares over the sizes above):", strings.Repeat(" ", 2))
				for _, m := range cfg.methods {
					fmt.Fprintf(stdout, "  %s %.2f", m, slope(rows, m))
				}
				fmt.Fprintln(stdout)
			}
		}
	}
	return nil
}

func benchSize(ctx context.Context, cfg benchConfig, n, d int, dtype string) (benchRow, string, error) {
	w := workload{heads: cfg.heads, n: n, m: n, d: d, e: cfg.valueDim(d), qkScale: cfg.entry, uniform: cfg.dist == "uniform", seed: uint64(n + d)}
	af := attnFlags{scale: cfg.scale, causal: cfg.causal, eps: cfg.eps}
	opts, err := af.options(d)
	if err != nil {
		return benchRow{}, "", err
	}
	if dtype == "float32" {
		q, k, v := w.tensors32()
		return benchMethods(ctx, cfg, q, k, v, opts, n, d, dtype)
	}
	q, k, v := w.tensors64()
	return benchMethods(ctx, cfg, q, k, v, opts, n, d, dtype)
}

func benchMethods[T fastattn.Float](ctx context.Context, cfg benchConfig, q, k, v fastattn.Tensor[T], opts fastattn.Options, n, d int, dtype string) (benchRow, string, error) {
	row := benchRow{n: n, seconds: map[string]float64{}, note: map[string]string{}}
	// Exact, on sampled rows when n is large.
	eq, factor := q, 1.0
	if cfg.exactRows > 0 && n > cfg.exactRows {
		eq = firstRows(q, cfg.exactRows)
		factor = float64(n) / float64(cfg.exactRows)
		row.note["exact"] = "*"
	}
	opts.Method = "exact"
	secs, res, err := timeMethod(ctx, cfg, eq, k, v, opts)
	if err != nil {
		return row, "", err
	}
	row.seconds["exact"] = secs * factor
	line := fmt.Sprintf("%8d %5d %8s %11.4g%1s %9.1f", n, d, dtype, row.seconds["exact"], row.note["exact"], exactFlops(res.Report)/secs/1e9)
	for _, m := range cfg.methods[1:] {
		opts.Method = m
		secs, res, err := timeMethod(ctx, cfg, q, k, v, opts)
		if err != nil {
			if ctx.Err() != nil {
				return row, "", ctx.Err()
			}
			line += fmt.Sprintf(" %12s %8s %10s", "n/a", "", "")
			row.note[m] = err.Error()
			continue
		}
		row.seconds[m] = secs
		line += fmt.Sprintf(" %12.4g %7.1fx %10.2g", secs, row.seconds["exact"]/secs, res.Report.ErrorBound)
	}
	return row, line, nil
}

// timeMethod returns the fastest of cfg.reps runs: the forward's seconds,
// or with cfg.grad forward plus backward for a fixed random dO.
func timeMethod[T fastattn.Float](ctx context.Context, cfg benchConfig, q, k, v fastattn.Tensor[T], opts fastattn.Options) (float64, *fastattn.Result[T], error) {
	if !cfg.grad {
		res, err := attendTimed(ctx, q, k, v, opts, cfg.reps)
		if err != nil {
			return 0, nil, err
		}
		return res.Report.Seconds, res, nil
	}
	dOut := fastattn.Tensor[T]{Data: make([]T, len(q.Data)/q.Shape[len(q.Shape)-1]*v.Shape[len(v.Shape)-1]), Shape: slices.Clone(q.Shape)}
	dOut.Shape[len(dOut.Shape)-1] = v.Shape[len(v.Shape)-1]
	for i := range dOut.Data {
		dOut.Data[i] = T(math.Sin(float64(i)))
	}
	best := math.Inf(1)
	var bestRes *fastattn.Result[T]
	for range cfg.reps {
		res, g, err := fastattn.ForwardBackward(ctx, q, k, v, dOut, opts)
		if err != nil {
			return 0, nil, err
		}
		if s := res.Report.Seconds + g.Report.Seconds; s < best {
			best, bestRes = s, res
		}
	}
	return best, bestRes, nil
}

// firstRows keeps the first rows query rows of every head.
func firstRows[T fastattn.Float](q fastattn.Tensor[T], rows int) fastattn.Tensor[T] {
	s := q.Shape
	n, d := s[len(s)-2], s[len(s)-1]
	heads := len(q.Data) / (n * d)
	data := make([]T, 0, heads*rows*d)
	for h := range heads {
		data = append(data, q.Data[h*n*d:h*n*d+rows*d]...)
	}
	shape := slices.Clone(s)
	shape[len(s)-2] = rows
	return fastattn.Tensor[T]{Data: data, Shape: shape}
}

// slope fits log(seconds) = a + slope log(n) by least squares.
func slope(rows []benchRow, method string) float64 {
	var ns, secs []float64
	for _, r := range rows {
		if s, ok := r.seconds[method]; ok && s > 0 {
			ns, secs = append(ns, float64(r.n)), append(secs, s)
		}
	}
	return fit.LogLogSlope(ns, secs)
}
