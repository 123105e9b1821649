package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"time"

	"github.com/fastattn/fastattn/experiments"
)

func init() {
	register(command{"transition", "experiment: where the polynomial method stops paying, B*(n) against sqrt(log n)", transitionCmd})
	register(command{"scaling", "experiment: time against n for every method, log-log slopes and speed-up over exact", scalingCmd})
}

// progressBar draws a one-line progress bar on w: redrawn in place on a
// terminal, one line per tenth of the work otherwise (logs, CI).
type progressBar struct {
	w        io.Writer
	tty      bool
	start    time.Time
	lastTick int
}

func newProgressBar(w io.Writer) *progressBar {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progressBar{w: w, tty: tty, start: time.Now(), lastTick: -1}
}

func (p *progressBar) update(done, total int, label string) {
	if total <= 0 {
		return
	}
	frac := float64(done) / float64(total)
	const width = 30
	fill := int(frac * width)
	elapsed := time.Since(p.start).Seconds()
	eta := ""
	if done > 0 && done < total {
		eta = fmt.Sprintf(" eta %s", fmtSeconds(elapsed/frac-elapsed))
	}
	line := fmt.Sprintf("[%s%s] %3d%% %d/%d %s %s%s", strings.Repeat("#", fill), strings.Repeat(".", width-fill),
		int(frac*100), done, total, fmtSeconds(elapsed), label, eta)
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		if done == total {
			fmt.Fprintln(p.w)
		}
		return
	}
	if tick := int(frac * 10); tick != p.lastTick || done == total {
		p.lastTick = tick
		fmt.Fprintln(p.w, line)
	}
}

func fmtSeconds(s float64) string {
	if s < 60 {
		return fmt.Sprintf("%.0fs", s)
	}
	return fmt.Sprintf("%dm%02ds", int(s)/60, int(s)%60)
}

// parseFloats parses a comma-separated list of positive numbers.
func parseFloats(flagName, s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || !(v > 0) || math.IsInf(v, 0) {
			return nil, usagef("--%s must be comma-separated positive numbers, got %q", flagName, s)
		}
		out = append(out, v)
	}
	return out, nil
}

// parseLogRange parses "LO-HI" (powers of two) into exponents.
func parseLogRange(flagName, s string) ([]int, error) {
	lo, hi, ok := strings.Cut(s, "-")
	a, err1 := strconv.Atoi(strings.TrimSpace(lo))
	b, err2 := strconv.Atoi(strings.TrimSpace(hi))
	if !ok || err1 != nil || err2 != nil || a < 1 || b < a || b > 40 {
		return nil, usagef("--%s must be LO-HI with 1 <= LO <= HI <= 40 (n = 2^LO .. 2^HI), got %q", flagName, s)
	}
	var ks []int
	for k := a; k <= b; k++ {
		ks = append(ks, k)
	}
	return ks, nil
}

func transitionCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("transition", "transition [--quick] --out DIR [flags]", stdout)
	var ef experimentFlags
	ef.register(fs, "small sizes: measured up to n = 2^14, modelled up to 2^26 (under a minute)",
		"transition.csv, crossover.csv and the plots", "default 8-30, quick 8-26", "longest predicted single run (default 60, quick 5)")
	cs := fs.String("c", "", "d = ceil(c log2 n); comma-separated values of c (default 0.5,1)")
	measured := fs.Int("measure-up-to", 0, "run sizes up to 2^K, model beyond (default 17, quick 14)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg := experiments.FullTransition()
	if ef.quick {
		cfg = experiments.QuickTransition()
	}
	if err := ef.apply(&cfg.LogNs, &cfg.MaxSeconds, &cfg.Seed, &cfg.Progress, stderr); err != nil {
		return err
	}
	var err error
	if *cs != "" {
		if cfg.Cs, err = parseFloats("c", *cs); err != nil {
			return err
		}
	}
	if *measured < 0 || *measured > 40 {
		return usagef("--measure-up-to must be a power of two's exponent in [1, 40] (0: the default), got %d", *measured)
	}
	if *measured != 0 {
		cfg.MaxMeasuredLogN = *measured
	}
	res, files, err := runExperiment(ef.out, func(ctx context.Context) (*experiments.TransitionResult, error) {
		return experiments.RunTransition(ctx, cfg)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "transition: %d points (%d measured) in %s; cost model: poly %.3g flop/s + %.3g s setup (%d runs), exact %.3g flop/s (%d runs)\n",
		len(res.Rows), countMeasured(res), fmtSeconds(res.Elapsed), res.PolyRate.PerSecond, res.PolyRate.Setup, res.PolyRate.Points, res.ExactRate.PerSecond, res.ExactRate.Points)
	fmt.Fprintf(stdout, "%-5s %-6s %4s %9s %9s %8s %9s\n", "c", "n", "d", "B*", "B*/√ln n", "degree", "measured")
	for _, c := range res.Crossovers {
		m := "-"
		if !math.IsNaN(c.XMeasured) {
			m = fmt.Sprintf("%.3f", c.XMeasured)
		}
		fmt.Fprintf(stdout, "%-5g 2^%-4d %4d %9.3f %9.3f %8d %9s\n", c.C, int(math.Round(math.Log2(float64(c.N)))), c.D, c.BStar, c.XStar, c.DegreeStar, m)
	}
	fmt.Fprintf(stdout, "wrote %s\n", strings.Join(files, ", "))
	return nil
}

// experimentFlags are the flags transition and scaling share.
type experimentFlags struct {
	quick, noProgress bool
	out, logn         string
	maxSeconds        float64
	seed              uint64
}

func (e *experimentFlags) register(fs *flag.FlagSet, quickHelp, files, lognDefaults, maxSecHelp string) {
	fs.BoolVar(&e.quick, "quick", false, quickHelp)
	fs.StringVar(&e.out, "out", "", "output directory for "+files+" (required)")
	fs.StringVar(&e.logn, "logn", "", "n = 2^LO .. 2^HI, as LO-HI ("+lognDefaults+")")
	fs.Float64Var(&e.maxSeconds, "max-seconds", 0, maxSecHelp)
	fs.Uint64Var(&e.seed, "seed", 1, "random seed")
	fs.BoolVar(&e.noProgress, "no-progress", false, "no progress bar on stderr")
}

// apply checks the flags and sets the configuration fields they override.
func (e *experimentFlags) apply(logNs *[]int, maxSeconds *float64, seed *uint64, progress *experiments.Progress, stderr io.Writer) error {
	if e.out == "" {
		return usagef("--out is required")
	}
	*seed = e.seed
	if e.logn != "" {
		ks, err := parseLogRange("logn", e.logn)
		if err != nil {
			return err
		}
		*logNs = ks
	}
	if e.maxSeconds != 0 {
		if !(e.maxSeconds > 0) {
			return usagef("--max-seconds must be positive")
		}
		*maxSeconds = e.maxSeconds
	}
	if !e.noProgress {
		*progress = newProgressBar(stderr).update
	}
	return nil
}

// runExperiment checks the output directory, runs an experiment that Ctrl-C
// cancels (writing nothing then), and writes its files.
func runExperiment[R interface {
	Write(string) ([]string, error)
}](out string, run func(context.Context) (R, error)) (R, []string, error) {
	var zero R
	// The directory is checked now and created only with the files, all
	// or none, once the experiment has finished.
	if err := checkOutDir(out); err != nil {
		return zero, nil, err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := run(ctx)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return zero, nil, fmt.Errorf("interrupted; nothing written")
		}
		return zero, nil, err
	}
	files, err := res.Write(out)
	return res, files, err
}

func countMeasured(res *experiments.TransitionResult) int {
	k := 0
	for _, r := range res.Rows {
		if r.PolySource == experiments.Measured {
			k++
		}
	}
	return k
}
