package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/fastattn/fastattn"
)

// demoCase is one row of the demo table.
type demoCase struct {
	label  string
	work   workload
	dtype  string
	opts   fastattn.Options
	reason string
}

func init() {
	register(command{"demo", "run every method on built-in data and compare with a float64 reference", demoCmd})
}

// extraDemoCases lets each method's file add its own demo rows.
var extraDemoCases []func(quick bool) []demoCase

func demoCases(quick bool) []demoCase {
	n := 2048
	if quick {
		n = 256
	}
	self := workload{heads: 8, n: n, m: n, d: 64, e: 64, seed: 1}
	decode := workload{heads: 8, n: 16, m: 4 * n, d: 64, e: 64, seed: 2}
	hot := workload{heads: 2, n: n / 2, m: n / 2, d: 16, e: 16, qkScale: 300, seed: 3}
	cases := []demoCase{
		{"self-attention", self, "float32", fastattn.Options{Method: "exact"}, ""},
		{"self-attention", self, "float64", fastattn.Options{Method: "exact"}, ""},
		{"causal", self, "float32", fastattn.Options{Method: "exact", Causal: true}, ""},
		{"decode (cross)", decode, "float32", fastattn.Options{Method: "exact", Causal: true}, ""},
		{"huge logits", hot, "float32", fastattn.Options{Method: "exact"}, ""},
	}
	for _, extra := range extraDemoCases {
		cases = append(cases, extra(quick)...)
	}
	return cases
}

func demoCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", "demo [--quick]", stdout)
	quick := fs.Bool("quick", false, "smaller inputs (a few seconds)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "fastattn demo: generated inputs; max error = max |T - Att| / max|V_col| on sampled rows against a float64 reference;")
	fmt.Fprintln(stdout, "bound = the method's certified bound; eff. GFLOP/s = exact attention's flop count (2nm(d+e), masked pairs excluded) / time")
	fmt.Fprintf(stdout, "* = exact attention timed on the first %d query rows and scaled by n/%d (its cost is linear in the rows)\n", demoExactRows, demoExactRows)
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tmethod\tdtype\theads x n x m x d\tcausal\ttime (ms)\teff. GFLOP/s\tmax error\tbound\t")
	for _, c := range demoCases(*quick) {
		var rep fastattn.Report
		var errMax, factor float64
		var err error
		if c.dtype == "float32" {
			rep, errMax, factor, err = demoRun(c.work.tensors32, c.opts)
		} else {
			rep, errMax, factor, err = demoRun(c.work.tensors64, c.opts)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", c.label, err)
		}
		w := c.work
		method := rep.Method
		if c.opts.Method == fastattn.Auto {
			method = "auto -> " + rep.Method // the planner's choice
		}
		mark := ""
		if factor != 1 {
			mark = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d x %d x %d x %d\t%v\t%.1f%s\t%.1f\t%.2g\t%.2g\t\n",
			c.label, method, rep.DType, w.heads, w.n, w.m, w.d, rep.Causal, rep.Seconds*factor*1e3, mark, exactFlops(rep)/rep.Seconds/1e9, errMax, rep.ErrorBound)
	}
	return tw.Flush()
}

// demoExactRows is how many query rows exact attention runs on when a
// demo input has more (and no causal mask): its cost is linear in the
// rows, so the time is scaled by n/demoExactRows, as bench does.
const demoExactRows = 8192

// demoRun runs one case and returns its report, the largest error on
// sampled rows and the factor its time is to be scaled by (1 unless exact
// attention ran on the first demoExactRows rows only).
func demoRun[T fastattn.Float](gen func() (q, k, v fastattn.Tensor[T]), opts fastattn.Options) (fastattn.Report, float64, float64, error) {
	q, k, v := gen()
	factor := 1.0
	if n := q.Shape[len(q.Shape)-2]; opts.Method == "exact" && !opts.Causal && n > demoExactRows {
		q, factor = firstRows(q, demoExactRows), float64(n)/demoExactRows
	}
	reps := 2
	if len(q.Data)*k.Shape[len(k.Shape)-2] > 1<<30 {
		reps = 1 // large inputs: one run is enough to show the time
	}
	res, err := attendTimed(context.Background(), q, k, v, opts, reps)
	if err != nil {
		return fastattn.Report{}, 0, 0, err
	}
	return res.Report, sampledError(q, k, v, opts, res.Out.Data, 32), factor, nil
}
