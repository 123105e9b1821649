package experiments

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastattn/fastattn"
	"github.com/fastattn/fastattn/poly"
)

func TestTransitionSmall(t *testing.T) {
	cfg := TransitionConfig{Cs: []float64{0.5, 1}, LogNs: logRange(7, 14), MaxMeasuredLogN: 9,
		Xs: grid(0.1, 1.0, 0.1), SlowFactor: 1000, MaxSeconds: 0.5, ExactRows: 128, Seed: 3}
	steps := 0
	cfg.Progress = func(done, total int, label string) {
		steps++
		if done != steps || done > total || label == "" {
			t.Fatalf("progress %d/%d %q after %d steps", done, total, label, steps)
		}
	}
	res, err := RunTransition(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 * 8 * 10; len(res.Rows) != want {
		t.Fatalf("%d rows, want %d", len(res.Rows), want)
	}
	if steps != 2*3*11 {
		t.Errorf("%d progress steps, want %d", steps, 2*3*11)
	}
	measured := 0
	for _, r := range res.Rows {
		if r.PolySource == Measured {
			measured++
			if r.ObservedError > r.ErrorBound || r.ErrorBound > r.Eps {
				t.Errorf("%+v: observed error above the bound or the bound above eps", r)
			}
		}
		if !(r.PolySeconds > 0) || !(r.ExactSeconds > 0) {
			t.Errorf("row without times: %+v", r)
		}
		if (r.N > 1<<9) != (r.ExactSource == Model) {
			t.Errorf("n = %d: exact source %s", r.N, r.ExactSource)
		}
	}
	if measured == 0 {
		t.Error("no measured polynomial run")
	}
	if len(res.Crossovers) != 16 {
		t.Fatalf("%d crossovers", len(res.Crossovers))
	}
	for _, c := range res.Crossovers {
		t.Logf("c=%g n=%d d=%d B*=%.3g x*=%.3g g*=%d measured %.3g", c.C, c.N, c.D, c.BStar, c.XStar, c.DegreeStar, c.XMeasured)
	}
	dir := t.TempDir()
	files, err := res.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	for _, name := range []string{"transition.csv", "crossover.csv", "crossover.png", "crossover.svg", "time_vs_B_c0.5.png", "time_vs_B_c1.svg"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("missing %s", name)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "transition.csv"))
	if lines := strings.Count(string(b), "\n"); lines != len(res.Rows)+1 {
		t.Errorf("transition.csv has %d lines", lines)
	}
}

// TestModelMatchesPoly checks the cost model against package poly: the
// model's degree and flops are poly's own on sign inputs.
func TestModelMatchesPoly(t *testing.T) {
	for _, c := range []struct {
		n, d int
		b    float64
	}{{2048, 4, 0.5}, {4096, 5, 1}, {4096, 6, 1.3}, {2048, 3, 2}} {
		eps := 1 / float64(c.n)
		row := TransitionRow{N: c.n, D: c.d, E: c.d, Eps: eps, B: c.b}
		if err := runPoly(context.Background(), 1, 9, 1, c.b, eps, 1, &row); err != nil {
			t.Fatal(err)
		}
		g, _ := modelDegree(c.b*c.b, eps)
		if row.DegreeSource != "poly" || (row.Degree != g && row.Degree != g-1) {
			t.Errorf("%+v: poly degree %d (%s), model %d", c, row.Degree, row.DegreeSource, g)
		}
		if math.Abs(row.Beta/(c.b*c.b)-1) > 0.1 {
			t.Errorf("%+v: poly's beta %g, model B^2 = %g", c, row.Beta, c.b*c.b)
		}
		ranks := make([]int, c.n)
		for i := range ranks {
			ranks[i] = poly.Rank(c.d, row.Degree)
		}
		if want, got := poly.Cost(c.n, ranks, c.d, poly.Rank(c.d, row.Degree)), polyModelFlops(c.n, c.d, row.Rank); math.Abs(got/want-1) > 1e-12 {
			t.Errorf("%+v: model flops %g, poly.Cost %g", c, got, want)
		}
		if row.PolySource == Measured && math.Abs(row.PolyFlops/polyModelFlops(c.n, c.d, row.Rank)-1) > 0.2 {
			t.Errorf("%+v: poly counted %g flops, model %g", c, row.PolyFlops, polyModelFlops(c.n, c.d, row.Rank))
		}
	}
}

func TestScalingSmall(t *testing.T) {
	fams := Families()
	for i := range fams {
		fams[i].D, fams[i].E = 2, 2
	}
	cfg := ScalingConfig{LogNs: logRange(6, 9), Families: fams, MaxSeconds: 5, ExactRows: 64, Seed: 2}
	var last int
	cfg.Progress = func(done, total int, label string) { last = done }
	res, err := RunScaling(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	methods := len(fastattn.Methods())
	if want := 2 * 4 * methods; len(res.Rows) != want || last != want {
		t.Fatalf("%d rows, %d progress steps, want %d", len(res.Rows), last, want)
	}
	if len(res.Slopes) != 2*methods {
		t.Fatalf("%d slopes", len(res.Slopes))
	}
	for _, r := range res.Rows {
		if r.Method == "exact" && !(r.Seconds > 0) {
			t.Errorf("exact without a time: %+v", r)
		}
		if r.Source == Measured && r.Method != "exact" && r.ObservedError > r.ErrorBound+1e-12 {
			t.Errorf("%+v: observed error above the bound", r)
		}
	}
	// Slopes of times at these tiny sizes are noise on a shared machine:
	// check only that each was fitted (speed claims live in the benchmarks
	// and the experiment's own output, never in timed tests).
	for _, s := range res.Slopes {
		if s.Method == "exact" && (math.IsNaN(s.Slope) || math.IsInf(s.Slope, 0)) {
			t.Errorf("exact slope %g", s.Slope)
		}
	}
	dir := t.TempDir()
	files, err := res.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2+2*2 {
		t.Errorf("files: %v", files)
	}
	for _, f := range files {
		if fi, err := os.Stat(f); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestFitting(t *testing.T) {
	r := fitRate([]float64{1e9, 2e9, 4e9}, []float64{0.11, 0.21, 0.41}, defaultPolyRate)
	if math.Abs(r.PerSecond/1e10-1) > 1e-9 || math.Abs(r.Setup-0.01) > 1e-9 {
		t.Errorf("fitRate: %+v", r)
	}
	if g, src := modelDegree(0, 1e-3); g != 0 || src != "certified" {
		t.Errorf("degree at beta 0: %d %s", g, src)
	}
	g1, _ := modelDegree(30, 1e-6) // beyond float64's reach: the Lagrange bound
	g2, _ := modelDegree(40, 1e-6)
	if !(g2 > g1 && g1 > 30) {
		t.Errorf("lagrange degrees %d, %d", g1, g2)
	}
	if b := maxBetaForDegree(5, 1e-3); !(b > 0.5 && b < 3) {
		t.Errorf("beta for degree 5: %g", b)
	}
}

func TestSlopeIsRobust(t *testing.T) {
	fam := Family{Name: "f"}
	var rows []ScalingRow
	for k := 10; k <= 16; k++ {
		sec := 1e-2 * math.Pow(2, 2*float64(k-10))
		if k == 14 {
			sec *= 5 // one run slowed down by other load
		}
		rows = append(rows, ScalingRow{Family: "f", Method: "m", N: 1 << k, Seconds: sec, Source: Measured})
	}
	if s := fitSlope(rows, fam, "m"); math.Abs(s.Slope-2) > 1e-9 || s.Points != 6 {
		t.Errorf("slope %+v, want 2 from 6 points despite the outlier", s)
	}
	if !(loadAverage() >= 0) && !math.IsNaN(loadAverage()) {
		t.Error("load average")
	}
}
