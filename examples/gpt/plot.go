package main

// Plots of the statistics and of the training comparison (gonum/plot).

import (
	"encoding/csv"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// readCSV returns a CSV file's rows as maps from the header's names.
func readCSV(path string) ([]map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	var rows []map[string]string
	for _, r := range recs[1:] {
		m := map[string]string{}
		for i, h := range recs[0] {
			if i < len(r) {
				m[h] = r[i]
			}
		}
		rows = append(rows, m)
	}
	return rows, nil
}

func num(s string) float64 {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return math.NaN()
	}
	return v
}

// line is one named series.
type line struct {
	name   string
	xs, ys []float64
}

// savePlot draws lines and writes a PNG.
func savePlot(path, title, xLabel, yLabel string, lines []line, extra ...plot.Plotter) error {
	p := plot.New()
	p.Title.Text, p.X.Label.Text, p.Y.Label.Text = title, xLabel, yLabel
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	for i, l := range lines {
		var pts plotter.XYs
		for j := range l.xs {
			if !math.IsNaN(l.xs[j]) && !math.IsNaN(l.ys[j]) && !math.IsInf(l.ys[j], 0) {
				pts = append(pts, plotter.XY{X: l.xs[j], Y: l.ys[j]})
			}
		}
		if len(pts) == 0 {
			continue
		}
		lp, err := plotter.NewLine(pts)
		if err != nil {
			return err
		}
		lp.LineStyle.Color, lp.LineStyle.Width = plotutil.Color(i), vg.Points(1.3)
		lp.LineStyle.Dashes = plotutil.Dashes(i / 7)
		p.Add(lp)
		p.Legend.Add(l.name, lp)
	}
	for _, e := range extra {
		p.Add(e)
	}
	return p.Save(8*vg.Inch, 5*vg.Inch, path)
}

// plotBetaOverTraining draws, per layer, the largest beta over its heads
// against the training step.
func plotBetaOverTraining(statsPath, out string) error {
	rows, err := readCSV(statsPath)
	if err != nil {
		return err
	}
	type key struct{ layer, step int }
	best := map[key]float64{}
	layers, steps := 0, map[int]bool{}
	for _, r := range rows {
		k := key{int(num(r["layer"])), int(num(r["step"]))}
		best[k] = max(best[k], num(r["beta"]))
		layers = max(layers, k.layer+1)
		steps[k.step] = true
	}
	var lines []line
	for l := range layers {
		ln := line{name: fmt.Sprintf("layer %d", l)}
		for _, s := range slices.Sorted(maps.Keys(steps)) {
			if b, ok := best[key{l, s}]; ok {
				ln.xs, ln.ys = append(ln.xs, float64(s)), append(ln.ys, b)
			}
		}
		lines = append(lines, ln)
	}
	return savePlot(out, "poly's beta (largest over a layer's heads) during training", "step", "beta = scale max|q| max|k - mean k|", lines)
}

// plotLogitHistogram draws the distribution of every causal logit of the
// trained model on one sequence.
func plotLogitHistogram(logits []float64, out string) error {
	if len(logits) == 0 {
		return fmt.Errorf("no logits to plot")
	}
	p := plot.New()
	p.Title.Text = "logits scale*q.k of every layer and head (one validation sequence)"
	p.X.Label.Text, p.Y.Label.Text = "logit", "share of pairs"
	h, err := plotter.NewHist(plotter.Values(logits), 80)
	if err != nil {
		return err
	}
	h.Normalize(1)
	p.Add(h)
	return p.Save(8*vg.Inch, 5*vg.Inch, out)
}
