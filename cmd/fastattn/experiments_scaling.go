package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/fastattn/fastattn"
	"github.com/fastattn/fastattn/experiments"
)

func scalingCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("scaling", "scaling [--quick] --out DIR [flags]", stdout)
	var ef experimentFlags
	ef.register(fs, "n up to 2^15 (about a minute)", "scaling.csv, slopes.csv and the plots", "default 10-20, quick 10-15",
		"a method stops growing n after a run longer than a quarter of this (default 60, quick 10)")
	methods := fs.String("methods", "", "methods besides exact, comma-separated (default: all of "+strings.Join(fastattn.Methods(), ", ")+")")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg := experiments.FullScaling()
	if ef.quick {
		cfg = experiments.QuickScaling()
	}
	if err := ef.apply(&cfg.LogNs, &cfg.MaxSeconds, &cfg.Seed, &cfg.Progress, stderr); err != nil {
		return err
	}
	if *methods != "" {
		cfg.Methods = []string{"exact"}
		for _, m := range strings.Split(*methods, ",") {
			m = strings.TrimSpace(m)
			if !slices.Contains(fastattn.Methods(), m) {
				return usagef("--methods: unknown method %q; choose from %v", m, fastattn.Methods())
			}
			if m != "exact" {
				cfg.Methods = append(cfg.Methods, m)
			}
		}
	}
	res, files, err := runExperiment(ef.out, func(ctx context.Context) (*experiments.ScalingResult, error) {
		return experiments.RunScaling(ctx, cfg)
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "scaling: %d runs in %s\n", len(res.Rows), fmtSeconds(res.Elapsed))
	fmt.Fprintf(stdout, "%-14s %-8s %6s %7s  %s\n", "family", "method", "slope", "points", "speed-up over exact at the largest n")
	for _, s := range res.Slopes {
		sp := "-"
		for _, r := range res.Rows {
			if r.Family == s.Family && r.Method == s.Method && s.Method != "exact" && r.Source == experiments.Measured && !math.IsNaN(r.Speedup) {
				sp = fmt.Sprintf("%.3gx at n = %d", r.Speedup, r.N)
				if exactSource(res, r.Family, r.N) == experiments.Model {
					sp += " (exact modelled)"
				}
			}
		}
		slope := "-"
		if !math.IsNaN(s.Slope) {
			slope = fmt.Sprintf("%.2f", s.Slope)
		}
		fmt.Fprintf(stdout, "%-14s %-8s %6s %7d  %s\n", s.Family, s.Method, slope, s.Points, sp)
	}
	fmt.Fprintf(stdout, "wrote %s\n", strings.Join(files, ", "))
	return nil
}

func exactSource(res *experiments.ScalingResult, family string, n int) string {
	for _, r := range res.Rows {
		if r.Family == family && r.Method == "exact" && r.N == n {
			return r.Source
		}
	}
	return ""
}
