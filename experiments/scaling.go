package experiments

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/fastattn/fastattn"
	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/fit"
)

// Family is a kind of input the scaling experiment runs every method on.
type Family struct {
	Name, Description string
	D, E              int
	// B bounds the entries of Q and K (uniform on [-B, B]); V is uniform
	// on [-1, 1]. The scale is 1/D (the papers').
	B   float64
	Eps float64
	// Expect says what the papers predict, for the report.
	Expect string
}

// Families are the scaling experiment's inputs: bounded entries (the
// polynomial method's regime, Theorem 1.4 of Alman & Song) and large
// entries in small dimension (the any-temperature regime of Gupta et al.).
func Families() []Family {
	return []Family{
		{Name: "bounded", Description: "d = 8, entries uniform in [-1, 1], scale 1/d, eps = 1e-3",
			D: 8, E: 8, B: 1, Eps: 1e-3,
			Expect: "exact: slope 2; poly: slope near 1 (fixed degree and rank once n is large)"},
		{Name: "large-entries", Description: "d = 2, entries uniform in [-10, 10], scale 1/d (logits up to 100), eps = 1e-2",
			D: 2, E: 2, B: 10, Eps: 1e-2,
			Expect: "exact: slope 2; poly: does not apply; any-temperature: slope at most 2 - 1/d = 1.5"},
	}
}

// ScalingConfig describes the scaling experiment.
type ScalingConfig struct {
	LogNs    []int
	Families []Family
	// Methods to run (exact is always run); nil means fastattn.Methods().
	Methods []string
	// MaxSeconds: a method stops at the first n whose run took longer than
	// MaxSeconds / 4 (the next size would likely exceed MaxSeconds).
	MaxSeconds float64
	// ExactRows: exact attention is timed on at most this many query rows,
	// scaled by n/rows; the other methods' errors are measured on them.
	ExactRows int
	// Reps: each timing is the fastest of Reps runs (at least 1).
	Reps     int
	Seed     uint64
	Progress Progress
}

// QuickScaling runs n up to 2^15: under a minute.
func QuickScaling() ScalingConfig {
	return ScalingConfig{LogNs: logRange(10, 15), Families: Families(), MaxSeconds: 10, ExactRows: 2048, Reps: 2, Seed: 1}
}

// FullScaling runs n up to 2^20.
func FullScaling() ScalingConfig {
	return ScalingConfig{LogNs: logRange(10, 20), Families: Families(), MaxSeconds: 60, ExactRows: 4096, Reps: 3, Seed: 1}
}

// ScalingRow is one (family, method, n) run.
type ScalingRow struct {
	Family, Method string
	N, D, E        int
	Seconds        float64
	Source         string
	Flops          float64
	ErrorBound     float64
	// ObservedError is max |T - Att| / max|V| on the exact rows.
	ObservedError float64
	Speedup       float64
	// Load is the machine's one-minute load average when the run ended:
	// runs on a loaded machine are slower.
	Load float64
	Note string
}

// Slope is a fitted log-log slope of time against n.
type Slope struct {
	Family, Method string
	Slope          float64
	Points         int
	NMin, NMax     int
	Expect         string
}

// ScalingResult holds the runs and the slopes.
type ScalingResult struct {
	Config  ScalingConfig
	Rows    []ScalingRow
	Slopes  []Slope
	Elapsed float64
}

// RunScaling runs the experiment.
func RunScaling(ctx context.Context, cfg ScalingConfig) (*ScalingResult, error) {
	start := time.Now()
	methods := cfg.Methods
	if methods == nil {
		methods = fastattn.Methods()
	}
	others := slices.DeleteFunc(slices.Clone(methods), func(m string) bool { return m == "exact" })
	res := &ScalingResult{Config: cfg}
	total := len(cfg.Families) * len(cfg.LogNs) * (1 + len(others))
	done := 0
	step := func(label string) {
		done++
		if cfg.Progress != nil {
			cfg.Progress(done, total, label)
		}
	}
	for fi, fam := range cfg.Families {
		stopped := map[string]bool{}
		var exFlops, exSecs []float64
		for _, k := range cfg.LogNs {
			n := 1 << k
			r := rand.New(rand.NewPCG(cfg.Seed, uint64(fi)<<8|uint64(k)))
			in := uniformInput(r, n, fam.D, fam.E, fam.B)
			scale := 1 / float64(fam.D)
			var exactSec float64
			var exactOut []float64
			if !stopped["exact"] {
				et, err := timeExact(ctx, in, scale, cfg.ExactRows, cfg.Reps)
				if err != nil {
					return nil, err
				}
				src := Measured
				if et.Sampled {
					src = Sampled
				}
				exactSec, exactOut = et.Seconds, et.Out
				exFlops, exSecs = append(exFlops, et.Flops), append(exSecs, et.Seconds)
				res.Rows = append(res.Rows, ScalingRow{Family: fam.Name, Method: "exact", N: n, D: fam.D, E: fam.E,
					Seconds: et.Seconds, Source: src, Flops: et.Flops, Speedup: 1, ObservedError: math.NaN(), Load: loadAverage()})
				stopped["exact"] = et.Raw > cfg.MaxSeconds/4
			} else {
				// Beyond the time limit: the cost model fitted on the
				// measured exact runs of this family.
				flops := exactModelFlops(n, fam.D, fam.E)
				exactSec = fitRate(exFlops, exSecs, defaultExactRate).seconds(flops)
				res.Rows = append(res.Rows, ScalingRow{Family: fam.Name, Method: "exact", N: n, D: fam.D, E: fam.E,
					Seconds: exactSec, Source: Model, Flops: flops, Speedup: 1, ObservedError: math.NaN()})
			}
			step(fmt.Sprintf("%s n=%s exact", fam.Name, log2Label(n)))
			for _, m := range others {
				if stopped[m] {
					step(fmt.Sprintf("%s n=%s %s (skipped)", fam.Name, log2Label(n), m))
					continue
				}
				row := ScalingRow{Family: fam.Name, Method: m, N: n, D: fam.D, E: fam.E, Source: Measured, ObservedError: math.NaN(), Speedup: math.NaN()}
				q := fastattn.Tensor[float64]{Data: in.q, Shape: []int{n, fam.D}}
				kk := fastattn.Tensor[float64]{Data: in.k, Shape: []int{n, fam.D}}
				v := fastattn.Tensor[float64]{Data: in.v, Shape: []int{n, fam.E}}
				var out *fastattn.Result[float64]
				var err error
				best := math.Inf(1)
				for rep := 0; rep < max(cfg.Reps, 1) && err == nil; rep++ {
					if out, err = fastattn.Attend(ctx, q, kk, v, fastattn.Options{Scale: scale, Method: m, Eps: fam.Eps}); err == nil {
						best = min(best, out.Report.Seconds)
						if best > longRun {
							break // long enough that one run measures it
						}
					}
				}
				switch {
				case err == nil:
					row.Seconds, row.Flops, row.ErrorBound = best, out.Report.Flops, out.Report.ErrorBound
					if exactOut != nil {
						row.ObservedError = maxError(out.Out.Data[:len(exactOut)], exactOut, in.v, fam.E)
					}
					if exactSec > 0 {
						row.Speedup = exactSec / row.Seconds
					}
					stopped[m] = row.Seconds > cfg.MaxSeconds/4
					row.Load = loadAverage()
					res.Rows = append(res.Rows, row)
				case errors.Is(err, attn.ErrUnsupported) || errors.Is(err, fastattn.ErrInvalidInput):
					row.Source, row.Note = "declined", err.Error()
					row.Seconds = math.NaN()
					res.Rows = append(res.Rows, row)
				default:
					return nil, err
				}
				step(fmt.Sprintf("%s n=%s %s", fam.Name, log2Label(n), m))
			}
		}
		for _, m := range methods {
			res.Slopes = append(res.Slopes, fitSlope(res.Rows, fam, m))
		}
	}
	res.Elapsed = time.Since(start).Seconds()
	return res, nil
}

// fitSlope fits log2(seconds) against log2(n) over the method's six
// largest measured runs that took at least 5 ms (smaller ones measure
// overhead), or its last three runs if fewer qualify: the asymptotic slope.
// The estimate is Theil-Sen's (the median of the slopes between pairs of
// points), so that one run slowed down by other load on the machine does
// not tilt it.
func fitSlope(rows []ScalingRow, fam Family, method string) Slope {
	var all []ScalingRow
	for _, r := range rows {
		if r.Family == fam.Name && r.Method == method && (r.Source == Measured || r.Source == Sampled) && r.Seconds > 0 {
			all = append(all, r)
		}
	}
	use := slices.DeleteFunc(slices.Clone(all), func(r ScalingRow) bool { return r.Seconds < 5e-3 })
	if len(use) < 3 {
		use = all[max(0, len(all)-3):]
	}
	use = use[max(0, len(use)-6):]
	s := Slope{Family: fam.Name, Method: method, Slope: math.NaN(), Points: len(use), Expect: fam.Expect}
	if len(use) < 2 {
		return s
	}
	ns, secs := make([]float64, len(use)), make([]float64, len(use))
	for i, r := range use {
		ns[i], secs[i] = float64(r.N), r.Seconds
	}
	s.Slope = fit.TheilSenLogLog(ns, secs)
	s.NMin, s.NMax = use[0].N, use[len(use)-1].N
	return s
}

// Write saves scaling.csv, slopes.csv and one log-log plot per family.
func (res *ScalingResult) Write(dir string) ([]string, error) {
	rows := [][]string{{"family", "method", "n", "d", "e", "seconds", "source", "flops", "error_bound", "observed_error", "speedup_over_exact", "load_average", "note"}}
	for _, r := range res.Rows {
		rows = append(rows, []string{r.Family, r.Method, itoa(r.N), itoa(r.D), itoa(r.E), ftoa(r.Seconds), r.Source, ftoa(r.Flops),
			ftoa(r.ErrorBound), ftoa(r.ObservedError), ftoa(r.Speedup), ftoa(r.Load), r.Note})
	}
	o := &outputs{dir: dir}
	o.csv("scaling.csv", rows)
	sl := [][]string{{"family", "method", "slope", "points", "n_min", "n_max", "expected"}}
	for _, s := range res.Slopes {
		sl = append(sl, []string{s.Family, s.Method, ftoa(s.Slope), itoa(s.Points), itoa(s.NMin), itoa(s.NMax), s.Expect})
	}
	o.csv("slopes.csv", sl)
	for _, fam := range res.Config.Families {
		fig := figure{title: "Time against n: " + fam.Description, xLabel: "n", yLabel: "seconds", logX: true, logY: true,
			note: "dashed: slopes 1 and 2 through exact's first point; exact beyond its time limit is modelled"}
		var x0, y0 float64
		ci := 0
		for _, s := range res.Slopes {
			if s.Family != fam.Name {
				continue
			}
			var xs, ys []float64
			for _, r := range res.Rows {
				if r.Family == fam.Name && r.Method == s.Method && r.Seconds > 0 {
					xs, ys = append(xs, float64(r.N)), append(ys, r.Seconds)
				}
			}
			if len(xs) == 0 {
				continue
			}
			if s.Method == "exact" {
				x0, y0 = xs[0], ys[0]
			}
			name := s.Method
			if !math.IsNaN(s.Slope) {
				name = fmt.Sprintf("%s (slope %.2f)", s.Method, s.Slope)
			}
			fig.series = append(fig.series, series{name: name, xs: xs, ys: ys, style: "linepoints", color: ci})
			ci++
		}
		if x0 > 0 {
			nMax := float64(int(1) << res.Config.LogNs[len(res.Config.LogNs)-1])
			for _, p := range []float64{1, 2} {
				fig.series = append(fig.series, series{name: fmt.Sprintf("n^%g", p), xs: []float64{x0, nMax}, ys: []float64{y0, y0 * math.Pow(nMax/x0, p)}, style: "dashed", color: 6})
			}
		}
		if err := fig.save(o, "scaling_"+fam.Name); err != nil {
			return nil, err
		}
	}
	return o.write()
}
