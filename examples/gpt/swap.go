package main

// Swapping the attention: the trained model evaluated and sampled with each
// method, and training runs compared.

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// swapRow is one method's result on the validation set.
type swapRow struct {
	Method       string
	Eps          float64
	ValLoss      float64
	Diff         float64 // ValLoss - exact's
	EvalSeconds  float64
	GenBytesPerS float64
	Calls        int
	Declined     int
	Ran          string // per layer: the methods that ran
	GenIdentical bool   // the generated text equals exact's
	PolyNote     string // poly: share of rows computed exactly, largest degree
	// EvalCPU and GenCPU are the CPU seconds of the evaluation and of the
	// generation: the work done, less sensitive to a shared machine's load
	// than the wall times.
	EvalCPU, GenCPU float64
}

func swapCmd(args []string) error {
	fs := flag.NewFlagSet("swap", flag.ContinueOnError)
	dir := fs.String("out", "gpt-run", "training run directory holding model.safetensors")
	dataDir := fs.String("data", defaultDataDir(), "directory of .go files (for validation windows)")
	batches := fs.Int("batches", 4, "validation batches")
	batch := fs.Int("batch", 8, "sequences per batch")
	genBytes := fs.Int("gen", 64, "bytes generated per method to time generation")
	methods := fs.String("methods", "exact,poly,anytemp,auto", "methods to compare")
	epsList := fs.String("eps", "1e-2,1e-3,1e-4", "error targets")
	slowdown := fs.Float64("max-slowdown", 30, "run exact instead where a method is predicted this many times slower than exact")
	var seed int64
	fs.Int64Var(&seed, "seed", 1, "seed of the data split (as in training)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	m, ds, err := loadTrained(*dir, *dataDir, seed)
	if err != nil {
		return err
	}
	var epss []float64
	for _, s := range strings.Split(*epsList, ",") {
		v := num(strings.TrimSpace(s))
		if !(v > 0 && v < 1) {
			return fmt.Errorf("swap: bad eps %q", s)
		}
		epss = append(epss, v)
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x5a9))
	var xs, ys [][]byte
	for range *batches {
		x, y := Batch(ds.Val, *batch, m.Cfg.Ctx, rng)
		xs, ys = append(xs, x), append(ys, y)
	}
	ctx := context.Background()
	prompt := ds.Val[:m.Cfg.Ctx/2]
	run := func(method string, eps float64) (swapRow, []byte, error) {
		m.Attn = Attention{Method: method, Eps: eps, Fallback: true, MaxSlowdown: *slowdown}
		m.Declined, m.Calls, m.Ran = 0, 0, map[string]int{}
		m.PolyRows, m.PolyExactRows, m.PolyMaxDegree = 0, 0, 0
		r := swapRow{Method: method, Eps: eps}
		start, cpu := time.Now(), cpuSeconds()
		for i := range xs {
			_, l, err := m.Forward(ctx, xs[i], ys[i], *batch)
			if err != nil {
				return r, nil, err
			}
			r.ValLoss += l / float64(len(xs))
		}
		r.EvalSeconds, r.EvalCPU = time.Since(start).Seconds(), cpuSeconds()-cpu
		r.Calls, r.Declined = m.Calls, m.Declined
		r.Ran = ranSummary(m.Ran, m.Cfg.Layers)
		if m.PolyRows > 0 {
			r.PolyNote = fmt.Sprintf("poly: %.1f%% of rows exact, degree <= %d", 100*float64(m.PolyExactRows)/float64(m.PolyRows), m.PolyMaxDegree)
		}
		start, cpu = time.Now(), cpuSeconds()
		gen, err := Generate(ctx, m, prompt, GenerateOptions{Tokens: *genBytes, Temperature: 0}, nil)
		if err != nil {
			return r, nil, err
		}
		r.GenBytesPerS, r.GenCPU = float64(*genBytes)/time.Since(start).Seconds(), cpuSeconds()-cpu
		return r, gen, nil
	}
	// Decoding with the key/value cache: generation speed only.
	runCache := func(method string, eps float64) (swapRow, []byte, error) {
		m.Attn = Attention{Method: "exact"}
		m.Declined, m.Calls, m.Ran = 0, 0, map[string]int{}
		r := swapRow{Method: "cache:" + method, Eps: eps, ValLoss: math.NaN(), Diff: math.NaN(), EvalSeconds: math.NaN(), EvalCPU: math.NaN()}
		start, cpu := time.Now(), cpuSeconds()
		gen, err := generateRecovering(ctx, m, prompt, GenerateOptions{Tokens: *genBytes, Cache: method, Eps: eps})
		if err != nil {
			// Report and go on: one method's failure is a result too.
			r.GenBytesPerS, r.Ran = math.NaN(), "failed: "+err.Error()
			return r, nil, nil
		}
		r.GenBytesPerS, r.GenCPU = float64(*genBytes)/time.Since(start).Seconds(), cpuSeconds()-cpu
		r.Calls, r.Ran = m.Calls, ranSummary(m.Ran, m.Cfg.Layers)
		return r, gen, nil
	}
	base, baseGen, err := run("exact", 0)
	if err != nil {
		return err
	}
	base.GenIdentical = true
	rows := []swapRow{base}
	for _, method := range strings.Split(*methods, ",") {
		method = strings.TrimSpace(method)
		if method == "exact" {
			continue
		}
		for _, eps := range epss {
			r, gen, err := run(method, eps)
			if err != nil {
				return fmt.Errorf("%s at eps %g: %w", method, eps, err)
			}
			r.Diff = r.ValLoss - base.ValLoss
			r.GenIdentical = slices.Equal(gen, baseGen)
			rows = append(rows, r)
		}
	}
	for _, method := range []string{"exact", "poly", "auto"} {
		list := epss
		if method == "exact" {
			list = []float64{0}
		}
		for _, eps := range list {
			r, gen, err := runCache(method, eps)
			if err != nil {
				return fmt.Errorf("cache %s at eps %g: %w", method, eps, err)
			}
			r.GenIdentical = slices.Equal(gen, baseGen)
			rows = append(rows, r)
		}
	}
	f, err := openCSV(filepath.Join(*dir, "swap.csv"), false, []string{"method", "eps", "val_loss", "diff_vs_exact", "eval_seconds",
		"gen_bytes_per_s", "eval_cpu_s", "gen_cpu_s", "attention_calls", "declined_to_exact", "greedy_text_equal", "ran_per_layer", "poly_note"})
	if err != nil {
		return err
	}
	defer f.close()
	fmt.Printf("%-13s %7s %10s %11s %8s %9s %9s %9s %9s %6s  %s\n", "method", "eps", "val loss", "vs exact", "eval s", "eval cpu", "gen B/s", "gen cpu", "declined", "greedy=", "ran (per layer)")
	for _, r := range rows {
		fmt.Printf("%-13s %7.0e %10.5f %+11.2e %8.2f %9.2f %9.1f %9.2f %5d/%-3d %6v  %s %s\n", r.Method, r.Eps, r.ValLoss, r.Diff, r.EvalSeconds, r.EvalCPU, r.GenBytesPerS, r.GenCPU, r.Declined, r.Calls, r.GenIdentical, r.Ran, r.PolyNote)
		if err := f.write(r.Method, r.Eps, r.ValLoss, r.Diff, r.EvalSeconds, r.GenBytesPerS, r.EvalCPU, r.GenCPU, r.Calls, r.Declined, r.GenIdentical, r.Ran, r.PolyNote); err != nil {
			return err
		}
	}
	return nil
}

// generateRecovering runs Generate and turns a panic inside the library
// into an error, so that the table records it and the other methods still
// run.
func generateRecovering(ctx context.Context, m *Model, prompt []byte, o GenerateOptions) (gen []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in fastattn: %v", p)
		}
	}()
	return Generate(ctx, m, prompt, o, nil)
}

// ranSummary lists, per layer, which methods ran and how often.
func ranSummary(ran map[string]int, layers int) string {
	var parts []string
	for l := range layers {
		var ms []string
		for k, n := range ran {
			if strings.HasPrefix(k, fmt.Sprintf("%d:", l)) {
				ms = append(ms, fmt.Sprintf("%s x%d", strings.TrimPrefix(k, fmt.Sprintf("%d:", l)), n))
			}
		}
		slices.Sort(ms)
		parts = append(parts, fmt.Sprintf("L%d %s", l, strings.Join(ms, "+")))
	}
	return strings.Join(parts, "; ")
}

// compareCmd plots the validation loss of several training runs against
// steps and against wall time, and prints them at equal steps and time.
func compareCmd(args []string) error {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	out := fs.String("o", "compare", "output file prefix (PREFIX_steps.png, PREFIX_time.png, PREFIX_cpu.png)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("compare: give training run directories")
	}
	var bySteps, byTime, byCPU []line
	type run struct {
		name                    string
		steps, secs, cpus, vals []float64
	}
	var runs []run
	for _, d := range fs.Args() {
		rows, err := readCSV(filepath.Join(d, "log.csv"))
		if err != nil {
			return err
		}
		r := run{name: filepath.Base(d)}
		for _, row := range rows {
			if v := num(row["val_loss"]); !math.IsNaN(v) {
				r.steps, r.secs, r.vals = append(r.steps, num(row["step"])), append(r.secs, num(row["seconds"])), append(r.vals, v)
				r.cpus = append(r.cpus, num(row["cpu_seconds"])) // NaN in logs without the column
			}
		}
		if len(r.vals) == 0 {
			return fmt.Errorf("%s has no validation losses", d)
		}
		runs = append(runs, r)
		bySteps = append(bySteps, line{r.name, r.steps, r.vals})
		byTime = append(byTime, line{r.name, r.secs, r.vals})
		byCPU = append(byCPU, line{r.name, r.cpus, r.vals})
	}
	if err := savePlot(*out+"_cpu.png", "validation loss at equal CPU time (work done, whatever the machine's load)", "CPU seconds", "validation loss (nats/byte)", byCPU); err != nil {
		return err
	}
	if err := savePlot(*out+"_steps.png", "validation loss at equal steps", "step", "validation loss (nats/byte)", bySteps); err != nil {
		return err
	}
	if err := savePlot(*out+"_time.png", "validation loss at equal wall time", "seconds", "validation loss (nats/byte)", byTime); err != nil {
		return err
	}
	// Equal steps: the last step every run reached; equal time likewise.
	lastStep, lastSec := math.Inf(1), math.Inf(1)
	for _, r := range runs {
		lastStep, lastSec = min(lastStep, r.steps[len(r.steps)-1]), min(lastSec, r.secs[len(r.secs)-1])
	}
	fmt.Printf("%-20s %10s %14s %14s %12s\n", "run", "steps", "val@step "+fmt.Sprint(lastStep), fmt.Sprintf("val@%.0fs", lastSec), "s/step")
	for _, r := range runs {
		fmt.Printf("%-20s %10.0f %14.4f %14.4f %12.3f\n", r.name, r.steps[len(r.steps)-1], interp(r.steps, r.vals, lastStep), interp(r.secs, r.vals, lastSec),
			r.secs[len(r.secs)-1]/r.steps[len(r.steps)-1])
	}
	fmt.Printf("wrote %s_steps.png, %s_time.png, %s_cpu.png\n", *out, *out, *out)
	return nil
}

// interp evaluates the piecewise-linear curve (xs, ys) at x.
func interp(xs, ys []float64, x float64) float64 {
	for i := range xs {
		if xs[i] >= x {
			if i == 0 {
				return ys[0]
			}
			t := (x - xs[i-1]) / (xs[i] - xs[i-1])
			return ys[i-1] + t*(ys[i]-ys[i-1])
		}
	}
	return ys[len(ys)-1]
}

// loadTrained loads a training run's model from dir and the data split it
// was trained on (the .go files under dataDir, split with seed), for the
// commands that evaluate a trained model.
func loadTrained(dir, dataDir string, seed int64) (*Model, *Dataset, error) {
	ck, err := LoadCheckpoint(filepath.Join(dir, "model.safetensors"))
	if err != nil {
		return nil, nil, err
	}
	ds, err := LoadDataset(dataDir, 0.05, uint64(seed))
	if err != nil {
		return nil, nil, err
	}
	return ck.Model, ds, nil
}
