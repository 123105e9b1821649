// Package experiments runs the measurements behind EXPERIMENTS.md: the
// sharp transition of polynomial-method attention at entry bound
// B ~ sqrt(log n) (Alman & Song, Theorems 1.3 and 1.4) and the scaling of
// every attention method with n. Each experiment returns its rows, writes
// CSV files and plots (PNG and SVG, gonum/plot), and reports progress
// through a callback so the command line can draw a progress bar.
//
// Measurements that would take too long are replaced by a cost model
// calibrated on the measured runs (seconds = a + flops / rate, fitted per
// method), and every such row is marked "model" rather than "measured".
package experiments

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/exact"
	"github.com/fastattn/fastattn/internal/outfile"
)

// Progress is told after each step: done of total steps, and what ran.
type Progress func(done, total int, label string)

// Source says where a time comes from.
const (
	Measured = "measured"
	// Sampled marks exact attention timed on a subset of the query rows and
	// scaled by n/rows (its cost is linear in the number of rows).
	Sampled = "measured-rows"
	Model   = "model"
)

// input is one generated attention problem (one head, float64).
type input struct {
	n, d, e int
	q, k, v []float64
}

// signInput draws Q and K with entries +-b (random signs, so every entry
// attains the bound and |q| = |k| = b sqrt(d)), V uniform on [-1, 1].
func signInput(r *rand.Rand, n, d, e int, b float64) *input {
	in := &input{n: n, d: d, e: e, q: make([]float64, n*d), k: make([]float64, n*d), v: make([]float64, n*e)}
	for _, x := range [][]float64{in.q, in.k} {
		for i := range x {
			if r.Uint64()&1 == 0 {
				x[i] = b
			} else {
				x[i] = -b
			}
		}
	}
	for i := range in.v {
		in.v[i] = 2*r.Float64() - 1
	}
	return in
}

// uniformInput draws Q and K uniform on [-b, b], V uniform on [-1, 1].
func uniformInput(r *rand.Rand, n, d, e int, b float64) *input {
	in := &input{n: n, d: d, e: e, q: make([]float64, n*d), k: make([]float64, n*d), v: make([]float64, n*e)}
	for _, x := range [][]float64{in.q, in.k} {
		for i := range x {
			x[i] = b * (2*r.Float64() - 1)
		}
	}
	for i := range in.v {
		in.v[i] = 2*r.Float64() - 1
	}
	return in
}

// problem returns the attention problem on the first rows queries (all if
// rows <= 0 or rows >= n).
func (in *input) problem(scale, eps float64, rows int) *attn.Problem[float64] {
	if rows <= 0 || rows > in.n {
		rows = in.n
	}
	return &attn.Problem[float64]{Heads: 1, N: rows, M: in.n, D: in.d, E: in.e,
		Q: in.q[:rows*in.d], K: in.k, V: in.v, Scale: scale, Eps: eps}
}

// longRun is the time beyond which a run is not repeated: other load then
// matters little relative to the run itself.
const longRun = 5.0

// exactTiming is exact attention timed on some of the query rows.
type exactTiming struct {
	// Seconds and Flops are scaled to all n rows; Raw is the time taken.
	Seconds, Flops, Raw float64
	// Out holds the output of the rows computed.
	Out     []float64
	Sampled bool
}

// timeExact times exact attention of in on at most rows query rows (all if
// rows <= 0) and scales the time to all n rows (its cost is linear in rows).
// The fastest of reps runs counts: other load on the machine only slows a
// run down.
func timeExact(ctx context.Context, in *input, scale float64, rows, reps int) (exactTiming, error) {
	p := in.problem(scale, 0, rows)
	o := attn.NewOutput(p)
	raw := math.Inf(1)
	var st attn.Stats
	for range max(reps, 1) {
		start := time.Now()
		var err error
		if st, err = (exact.Method{}).Forward64(ctx, p, o); err != nil {
			return exactTiming{}, err
		}
		raw = min(raw, time.Since(start).Seconds())
		if raw > longRun {
			break
		}
	}
	f := float64(in.n) / float64(p.N)
	return exactTiming{Seconds: raw * f, Flops: st.Flops * f, Raw: raw, Out: o.O, Sampled: p.N < in.n}, nil
}

// maxError returns max |got - want| / max_l |V_lj| over the rows of want.
func maxError(got, want, v []float64, e int) float64 {
	colMax := make([]float64, e)
	for i, x := range v {
		colMax[i%e] = max(colMax[i%e], math.Abs(x))
	}
	var worst float64
	for i, w := range want {
		if c := colMax[i%e]; c > 0 {
			worst = max(worst, math.Abs(got[i]-w)/c)
		}
	}
	return worst
}

// rate is a fitted cost model seconds = Setup + Flops / PerSecond.
type rate struct {
	Setup, PerSecond float64
	Points           int
}

// fitRate fits seconds = a + flops/r, a >= 0, to measured runs by least
// squares on the relative error (weights 1/seconds^2), so that small runs
// pin down the fixed cost and large runs the rate; with no runs it returns
// the fallback.
func fitRate(flops, secs []float64, fallback rate) rate {
	if len(flops) == 0 {
		return fallback
	}
	if len(flops) == 1 {
		return rate{Setup: fallback.Setup, PerSecond: flops[0] / math.Max(secs[0]-fallback.Setup, 1e-9), Points: 1}
	}
	// Minimise sum w (s - a - b f)^2 with w = 1/s^2.
	var sw, swf, sws, swff, swfs float64
	for i, f := range flops {
		w := 1 / (secs[i] * secs[i])
		sw += w
		swf += w * f
		sws += w * secs[i]
		swff += w * f * f
		swfs += w * f * secs[i]
	}
	den := sw*swff - swf*swf
	b := (sw*swfs - swf*sws) / den
	a := (sws - b*swf) / sw
	if !(den > 0) || !(b > 0) || a < 0 {
		// Through the origin: minimise sum w (s - b f)^2.
		b = swfs / swff
		a = 0
	}
	return rate{Setup: a, PerSecond: 1 / b, Points: len(flops)}
}

func (r rate) seconds(flops float64) float64 { return r.Setup + flops/r.PerSecond }

// writeCSV writes rows (the first is the header) atomically.
// outputs collects an experiment's files so that they are written all or
// none (package outfile): a failure in the last plot leaves no CSV behind,
// and the directory is created only when everything is ready.
type outputs struct {
	dir   string
	files []outfile.File
	names []string
}

// csv adds dir/name holding rows.
func (o *outputs) csv(name string, rows [][]string) {
	o.add(name, func(w io.Writer) error {
		cw := csv.NewWriter(w)
		if err := cw.WriteAll(rows); err != nil {
			return err
		}
		cw.Flush()
		return cw.Error()
	})
}

func (o *outputs) add(name string, fill func(io.Writer) error) {
	o.files = append(o.files, outfile.File{Path: name, Fill: fill})
	o.names = append(o.names, filepath.Join(o.dir, name))
}

// write writes every file and returns their paths.
func (o *outputs) write() ([]string, error) {
	if err := outfile.WriteDir(o.dir, o.files); err != nil {
		return nil, err
	}
	return o.names, nil
}

func ftoa(x float64) string {
	if math.IsNaN(x) {
		return ""
	}
	return strconv.FormatFloat(x, 'g', 6, 64)
}

func itoa(x int) string { return strconv.Itoa(x) }

func log2Label(n int) string { return fmt.Sprintf("2^%d", int(math.Round(math.Log2(float64(n))))) }

// loadAverage returns the one-minute load average (Linux), or NaN.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return math.NaN()
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return math.NaN()
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return math.NaN()
	}
	return v
}
