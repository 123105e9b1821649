package experiments

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/poly"
	"github.com/fastattn/fastattn/polyexp"
)

// polyMaxDegree is the highest degree package poly runs.
const polyMaxDegree = 40

// Default cost-model rates before calibration: package poly's and exact's
// planner constants (float64, 2 cores).
var (
	defaultPolyRate  = rate{Setup: 3e-3, PerSecond: 8e9}
	defaultExactRate = rate{PerSecond: 20e9}
)

// TransitionConfig describes the transition experiment: for each c and
// each n = 2^k, d = ceil(c log2 n) = e, eps = 1/n, scale 1/d, and Q, K with
// entries +-B for B = x sqrt(ln n) over the grid Xs (so the logits reach
// B^2 = x^2 ln n); V uniform on [-1, 1].
type TransitionConfig struct {
	Cs    []float64
	LogNs []int
	// MaxMeasuredLogN: sizes up to 2^MaxMeasuredLogN are run, larger ones
	// only modelled.
	MaxMeasuredLogN int
	Xs              []float64
	// SlowFactor: the polynomial method is run only where the model
	// predicts at most SlowFactor times exact attention's time (beyond, it
	// is modelled); MaxSeconds caps any single predicted run.
	SlowFactor, MaxSeconds float64
	// ExactRows: exact attention is timed on at most this many query rows
	// and scaled by n/rows (0: all rows).
	ExactRows int
	// Reps: each timing is the fastest of Reps runs (at least 1).
	Reps     int
	Seed     uint64
	Progress Progress
}

func grid(lo, hi, step float64) []float64 {
	var xs []float64
	for i := 0; ; i++ {
		x := lo + float64(i)*step
		if x > hi+1e-9 {
			return xs
		}
		xs = append(xs, math.Round(x*1000)/1000)
	}
}

func logRange(lo, hi int) []int {
	var ks []int
	for k := lo; k <= hi; k++ {
		ks = append(ks, k)
	}
	return ks
}

// QuickTransition measures up to n = 2^14 and models up to 2^26: under a
// minute on two cores.
func QuickTransition() TransitionConfig {
	return TransitionConfig{Cs: []float64{0.5, 1}, LogNs: logRange(8, 26), MaxMeasuredLogN: 14,
		Xs: grid(0.05, 1.2, 0.05), SlowFactor: 3, MaxSeconds: 5, ExactRows: 4096, Reps: 2, Seed: 1}
}

// FullTransition measures up to n = 2^17 and models up to 2^30.
func FullTransition() TransitionConfig {
	return TransitionConfig{Cs: []float64{0.5, 1}, LogNs: logRange(8, 30), MaxMeasuredLogN: 17,
		Xs: grid(0.05, 1.2, 0.05), SlowFactor: 3, MaxSeconds: 60, ExactRows: 8192, Reps: 3, Seed: 1}
}

// TransitionRow is one (c, n, B) point.
type TransitionRow struct {
	C       float64
	N, D, E int
	Eps     float64
	// B is the entry bound, X = B / sqrt(ln n), Beta the logit range the
	// polynomial must cover (poly's own when measured, B^2 when modelled).
	B, X, Beta float64
	Degree     int
	// DegreeSource: "poly" (the run's), "certified" (polyexp's certificate)
	// or "lagrange" (the interpolation bound alone, beyond polyexp's range).
	DegreeSource string
	Rank         float64
	PolySeconds  float64
	PolySource   string
	PolyFlops    float64
	// ObservedError is the largest error on poly's sampled rows, relative to
	// max|V|; ErrorBound the certified bound. NaN when modelled.
	ObservedError, ErrorBound float64
	ExactSeconds              float64
	ExactSource               string
	ExactFlops                float64
	// Load is the one-minute load average after the polynomial run (NaN
	// when modelled).
	Load float64
	Note string
}

// Speedup is exact's time over the polynomial method's.
func (r TransitionRow) Speedup() float64 { return r.ExactSeconds / r.PolySeconds }

// Crossover is where the polynomial method stops paying for one (c, n).
type Crossover struct {
	C    float64
	N, D int
	// BStar is the largest B at which the modelled polynomial method beats
	// modelled exact attention; XStar = BStar / sqrt(ln n). DegreeStar and
	// RankStar are the degree and rank there.
	BStar, XStar float64
	DegreeStar   int
	RankStar     float64
	// BMeasured is the crossover interpolated between grid points from the
	// measured times (NaN where n was not measured or poly never paid).
	BMeasured, XMeasured float64
}

// TransitionResult holds every row, the crossovers and the fitted rates.
type TransitionResult struct {
	Config     TransitionConfig
	Rows       []TransitionRow
	Crossovers []Crossover
	PolyRate   rate
	ExactRate  rate
	Elapsed    float64
}

// modelDegree is the degree poly would choose for logits in [-beta, beta]
// at error eps, and where it comes from.
func modelDegree(beta, eps float64) (int, string) {
	epsA := poly.PolyShare * eps
	if g, err := polyexp.DegreeFor(beta, epsA); err == nil {
		return g, "certified"
	}
	// Beyond float64's reach: the interpolation bound alone,
	// beta^(g+1) e^beta / (2^g (g+1)!) relative to e^-beta.
	for g := 0; g < 10000; g++ {
		lg, _ := math.Lgamma(float64(g + 2))
		l := float64(g+1)*math.Log(beta) + 2*beta - float64(g)*math.Ln2 - lg
		if l <= math.Log(epsA) {
			return g, "lagrange"
		}
	}
	return 10000, "lagrange"
}

// polyModelFlops is poly.Cost for n rows and n keys all at rank r.
func polyModelFlops(n, e int, r float64) float64 {
	return float64(n) * r * float64(2*(e+1)+1+2*(e+1)+3)
}

func exactModelFlops(n, d, e int) float64 { return 2 * float64(n) * float64(n) * float64(d+e) }

// maxBetaForDegree is the largest beta whose model degree at eps is <= g.
func maxBetaForDegree(g int, eps float64) float64 {
	ok := func(b float64) bool { d, _ := modelDegree(b, eps); return d <= g }
	if !ok(0) {
		return 0
	}
	lo, hi := 0.0, 1.0
	for ok(hi) && hi < 1e4 {
		lo, hi = hi, 2*hi
	}
	for range 60 {
		mid := (lo + hi) / 2
		if ok(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

func dimFor(c float64, logN int) int { return max(1, int(math.Ceil(c*float64(logN)))) }

// RunTransition runs the experiment.
func RunTransition(ctx context.Context, cfg TransitionConfig) (*TransitionResult, error) {
	start := time.Now()
	res := &TransitionResult{Config: cfg}
	type key struct {
		c float64
		n int
	}
	// Plan the measured steps for the progress bar.
	total := 0
	for range cfg.Cs {
		for _, k := range cfg.LogNs {
			if k <= cfg.MaxMeasuredLogN {
				total += 1 + len(cfg.Xs)
			}
		}
	}
	done := 0
	step := func(label string) {
		done++
		if cfg.Progress != nil {
			cfg.Progress(done, total, label)
		}
	}
	exactSec := map[key]float64{}
	exactSrc := map[key]string{}
	var exFlops, exSecs, polyFlops, polySecs, polyExact []float64
	for _, c := range cfg.Cs {
		for _, k := range cfg.LogNs {
			n := 1 << k
			d := dimFor(c, k)
			e, eps, scale := d, 1/float64(n), 1/float64(d)
			measured := k <= cfg.MaxMeasuredLogN
			ex := exactModelFlops(n, d, e)
			if measured {
				r := rand.New(rand.NewPCG(cfg.Seed, uint64(k)<<8|uint64(c*16)))
				in := signInput(r, n, d, e, 1)
				et, err := timeExact(ctx, in, scale, cfg.ExactRows, cfg.Reps)
				if err != nil {
					return nil, err
				}
				exactSec[key{c, n}] = et.Seconds
				exactSrc[key{c, n}] = Measured
				if et.Sampled {
					exactSrc[key{c, n}] = Sampled
				}
				exFlops, exSecs = append(exFlops, et.Flops), append(exSecs, et.Seconds)
				step(fmt.Sprintf("c=%g n=%s exact", c, log2Label(n)))
			}
			for _, x := range cfg.Xs {
				b := x * math.Sqrt(math.Log(float64(n)))
				beta := b * b
				g, src := modelDegree(beta, eps)
				rank := poly.RankFloat(d, g)
				row := TransitionRow{C: c, N: n, D: d, E: e, Eps: eps, B: b, X: x, Beta: beta,
					Degree: g, DegreeSource: src, Rank: rank, PolyFlops: polyModelFlops(n, e, rank),
					PolySource: Model, ObservedError: math.NaN(), ErrorBound: math.NaN(), ExactFlops: ex, Load: math.NaN()}
				if measured {
					pred := defaultPolyRate.seconds(row.PolyFlops)
					es := exactSec[key{c, n}]
					switch {
					case g > polyMaxDegree:
						row.Note = fmt.Sprintf("degree %d exceeds poly's cap %d", g, polyMaxDegree)
					case pred > cfg.SlowFactor*es || pred > cfg.MaxSeconds:
						row.Note = fmt.Sprintf("not run: predicted %.3g s", pred)
					default:
						if err := runPoly(ctx, cfg.Seed, k, c, b, eps, cfg.Reps, &row); err != nil {
							return nil, err
						}
						row.Load = loadAverage()
						if row.PolySource == Measured {
							polyFlops, polySecs = append(polyFlops, row.PolyFlops), append(polySecs, row.PolySeconds)
							polyExact = append(polyExact, es)
						}
					}
					step(fmt.Sprintf("c=%g n=%s B=%.3g poly", c, log2Label(n), b))
				}
				res.Rows = append(res.Rows, row)
			}
		}
	}
	// Calibrate the cost models on the measured runs and fill in the rest.
	res.ExactRate = fitRate(exFlops, exSecs, defaultExactRate)
	// The polynomial method's throughput grows with the rank (small ranks
	// are memory-bound), and what matters for the crossover is its speed
	// where it costs about as much as exact attention: calibrate on the runs
	// that took at least a fifth of exact's time, if there are three.
	var nf, ns []float64
	for i, s := range polySecs {
		if s >= 0.2*polyExact[i] {
			nf, ns = append(nf, polyFlops[i]), append(ns, s)
		}
	}
	if len(nf) >= 3 {
		polyFlops, polySecs = nf, ns
	}
	res.PolyRate = fitRate(polyFlops, polySecs, defaultPolyRate)
	for i := range res.Rows {
		r := &res.Rows[i]
		kk := key{r.C, r.N}
		if s, ok := exactSec[kk]; ok {
			r.ExactSeconds, r.ExactSource = s, exactSrc[kk]
		} else {
			r.ExactSeconds, r.ExactSource = res.ExactRate.seconds(r.ExactFlops), Model
		}
		if r.PolySource == Model {
			r.PolySeconds = res.PolyRate.seconds(r.PolyFlops)
		}
	}
	res.Crossovers = crossovers(res)
	res.Elapsed = time.Since(start).Seconds()
	return res, nil
}

// runPoly runs the polynomial method on the (seeded) input of row and
// records what it did. A refusal (memory, rounding) leaves the row
// modelled with a note.
func runPoly(ctx context.Context, seed uint64, k int, c, b, eps float64, reps int, row *TransitionRow) error {
	r := rand.New(rand.NewPCG(seed, uint64(k)<<8|uint64(c*16)))
	in := signInput(r, row.N, row.D, row.E, b)
	p := in.problem(1/float64(row.D), eps, 0)
	out := attn.NewOutput(p)
	m := poly.Method{SampleRows: 32}
	var st attn.Stats
	sec := math.Inf(1)
	for range max(reps, 1) {
		t0 := time.Now()
		var err error
		st, err = m.Forward64(ctx, p, out)
		if errors.Is(err, attn.ErrUnsupported) {
			row.Note = "poly declined: " + err.Error()
			return nil
		}
		if err != nil {
			return err
		}
		sec = min(sec, time.Since(t0).Seconds())
		if sec > longRun {
			break
		}
	}
	// poly's report details are typed by poly (int counts, float64
	// figures); a missing or retyped one is an error here, not a silent 0.
	exactRows, ok := st.Details["exact_rows"].(int)
	deg, okDeg := st.Details["degree_max"].(int)
	if !ok || !okDeg {
		return fmt.Errorf("poly's report lacks the int details exact_rows and degree_max: %v", st.Details)
	}
	row.ErrorBound = st.ErrorBound
	row.ObservedError = st.ObservedError
	if exactRows > 0 {
		// poly computed these rows directly because that was cheaper: the
		// polynomial's own cost is the model's.
		row.Note = fmt.Sprintf("poly computed %d rows exactly (cheaper) in %.3g s; polynomial cost modelled", exactRows, sec)
		return nil
	}
	row.Degree, row.DegreeSource = deg, "poly"
	row.Rank = poly.RankFloat(row.D, deg)
	if bm, ok := st.Details["beta_max"].(float64); ok {
		row.Beta = bm
	}
	row.PolySeconds, row.PolySource, row.PolyFlops = sec, Measured, st.Flops
	return nil
}

// crossovers finds, for each (c, n), the modelled crossover from the
// degree thresholds, and the measured one from the grid.
func crossovers(res *TransitionResult) []Crossover {
	type key struct {
		c float64
		n int
	}
	byKey := map[key][]TransitionRow{}
	var keys []key
	for _, r := range res.Rows {
		kk := key{r.C, r.N}
		if _, ok := byKey[kk]; !ok {
			keys = append(keys, kk)
		}
		byKey[kk] = append(byKey[kk], r)
	}
	var out []Crossover
	for _, kk := range keys {
		rows := byKey[kk]
		n, d, e := kk.n, rows[0].D, rows[0].E
		eps := 1 / float64(n)
		lnN := math.Log(float64(n))
		exactS := rows[0].ExactSeconds
		cr := Crossover{C: kk.c, N: n, D: d, DegreeStar: -1, BMeasured: math.NaN(), XMeasured: math.NaN()}
		for g := 0; g <= 60; g++ {
			r := poly.RankFloat(d, g)
			if res.PolyRate.seconds(polyModelFlops(n, e, r)) >= exactS {
				break
			}
			cr.DegreeStar, cr.RankStar = g, r
		}
		if cr.DegreeStar >= 0 {
			beta := maxBetaForDegree(cr.DegreeStar, eps)
			cr.BStar = math.Sqrt(beta)
			cr.XStar = cr.BStar / math.Sqrt(lnN)
		}
		// Measured: the last grid point where a measured poly run beat
		// measured exact, interpolated in log(time ratio) towards the next.
		sort.Slice(rows, func(i, j int) bool { return rows[i].B < rows[j].B })
		if rows[0].ExactSource != Model {
			for i, r := range rows {
				if r.PolySource != Measured || r.PolySeconds >= r.ExactSeconds {
					if i > 0 && rows[i-1].PolySource == Measured && rows[i-1].PolySeconds < rows[i-1].ExactSeconds {
						l0 := math.Log(rows[i-1].PolySeconds / rows[i-1].ExactSeconds)
						l1 := math.Log(r.PolySeconds / r.ExactSeconds)
						t := l0 / (l0 - l1)
						cr.BMeasured = rows[i-1].B + t*(r.B-rows[i-1].B)
						cr.XMeasured = cr.BMeasured / math.Sqrt(lnN)
					}
					break
				}
			}
		}
		out = append(out, cr)
	}
	return out
}

// Write saves transition.csv, crossover.csv and the plots into dir and
// returns the files written.
func (res *TransitionResult) Write(dir string) ([]string, error) {
	rows := [][]string{{"c", "n", "log2_n", "d", "e", "eps", "B", "B_over_sqrt_ln_n", "beta", "degree", "degree_source", "rank",
		"poly_seconds", "poly_source", "poly_flops", "observed_error", "error_bound", "exact_seconds", "exact_source", "exact_flops", "speedup", "poly_pays", "load_average", "note"}}
	for _, r := range res.Rows {
		rows = append(rows, []string{ftoa(r.C), itoa(r.N), itoa(int(math.Round(math.Log2(float64(r.N))))), itoa(r.D), itoa(r.E), ftoa(r.Eps),
			ftoa(r.B), ftoa(r.X), ftoa(r.Beta), itoa(r.Degree), r.DegreeSource, ftoa(r.Rank),
			ftoa(r.PolySeconds), r.PolySource, ftoa(r.PolyFlops), ftoa(r.ObservedError), ftoa(r.ErrorBound),
			ftoa(r.ExactSeconds), r.ExactSource, ftoa(r.ExactFlops), ftoa(r.Speedup()), fmt.Sprint(r.PolySeconds < r.ExactSeconds), ftoa(r.Load), r.Note})
	}
	o := &outputs{dir: dir}
	o.csv("transition.csv", rows)
	cross := [][]string{{"c", "n", "log2_n", "d", "B_star_model", "B_star_model_over_sqrt_ln_n", "degree_at_crossover", "rank_at_crossover", "B_star_measured", "B_star_measured_over_sqrt_ln_n", "exact_source"}}
	src := map[[2]float64]string{}
	for _, r := range res.Rows {
		src[[2]float64{r.C, float64(r.N)}] = r.ExactSource
	}
	for _, c := range res.Crossovers {
		cross = append(cross, []string{ftoa(c.C), itoa(c.N), itoa(int(math.Round(math.Log2(float64(c.N))))), itoa(c.D),
			ftoa(c.BStar), ftoa(c.XStar), itoa(c.DegreeStar), ftoa(c.RankStar), ftoa(c.BMeasured), ftoa(c.XMeasured), src[[2]float64{c.C, float64(c.N)}]})
	}
	o.csv("crossover.csv", cross)
	// B*(n) / sqrt(ln n) against n.
	fig := figure{title: "Crossover of the polynomial method: B*(n) / sqrt(ln n)", xLabel: "log2 n", yLabel: "B* / sqrt(ln n)",
		note: fmt.Sprintf("d = ceil(c log2 n), eps = 1/n, entries +-B; lines: cost model (calibrated), points: measured (n <= 2^%d)", res.Config.MaxMeasuredLogN)}
	for i, c := range res.Config.Cs {
		var xs, ys, mx, my []float64
		for _, cr := range res.Crossovers {
			if cr.C != c {
				continue
			}
			lg := math.Log2(float64(cr.N))
			if cr.DegreeStar >= 0 {
				xs, ys = append(xs, lg), append(ys, cr.XStar)
			}
			if !math.IsNaN(cr.XMeasured) {
				mx, my = append(mx, lg), append(my, cr.XMeasured)
			}
		}
		fig.series = append(fig.series, series{name: fmt.Sprintf("c = %g, model", c), xs: xs, ys: ys, style: "linepoints", color: i},
			series{name: fmt.Sprintf("c = %g, measured", c), xs: mx, ys: my, style: "points", color: i + len(res.Config.Cs)})
	}
	if err := fig.save(o, "crossover"); err != nil {
		return nil, err
	}
	// Time against B, one plot per c.
	for _, c := range res.Config.Cs {
		fig := figure{title: fmt.Sprintf("Polynomial method vs exact attention, c = %g (d = ceil(%g log2 n))", c, c), xLabel: "B / sqrt(ln n)", yLabel: "seconds", logY: true,
			note: "solid: polynomial method (points measured, line model); dashed: exact attention"}
		color := 0
		for _, k := range res.Config.LogNs {
			// Every second measured size from 2^10, every fourth modelled
			// one: few enough series to tell apart.
			if k < 10 || (k <= res.Config.MaxMeasuredLogN && k%2 != 0) || (k > res.Config.MaxMeasuredLogN && k%4 != 0) {
				continue
			}
			n := 1 << k
			var xs, ys, mx, my, ex, ey []float64
			for _, r := range res.Rows {
				if r.C != c || r.N != n {
					continue
				}
				ex, ey = append(ex, r.X), append(ey, r.ExactSeconds)
				if r.PolySeconds > 1e3*r.ExactSeconds {
					continue // off the chart: the polynomial lost long ago
				}
				xs, ys = append(xs, r.X), append(ys, r.PolySeconds)
				if r.PolySource == Measured {
					mx, my = append(mx, r.X), append(my, r.PolySeconds)
				}
			}
			fig.series = append(fig.series,
				series{name: "n = " + log2Label(n), xs: xs, ys: ys, style: "line", color: color},
				series{xs: mx, ys: my, style: "points", color: color},
				series{xs: ex, ys: ey, style: "dashed", color: color})
			color++
		}
		if err := fig.save(o, fmt.Sprintf("time_vs_B_c%g", c)); err != nil {
			return nil, err
		}
	}
	return o.write()
}
