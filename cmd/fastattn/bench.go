package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/fastattn/fastattn"
)

func init() {
	register(command{"bench", "time a method over a grid of sizes and report GFLOP/s", benchCmd})
}

func benchCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", "bench [--n 1024,4096,16384] [--d 16,64,128] [--dtype float32,float64] [--causal] [--heads H] [--reps R]", stdout)
	nList := fs.String("n", "1024,4096", "sequence lengths (n = m), comma-separated")
	dList := fs.String("d", "64", "head dimensions (d = e), comma-separated")
	dtypes := fs.String("dtype", "float32,float64", "element types, comma-separated")
	causal := fs.Bool("causal", false, "causal mask")
	heads := fs.Int("heads", 1, "heads per run")
	reps := fs.Int("reps", 3, "runs per size; the fastest is reported")
	method := fs.String("method", "exact", "method to time")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ns, err := parseInts("n", *nList)
	if err != nil {
		return err
	}
	ds, err := parseInts("d", *dList)
	if err != nil {
		return err
	}
	if *heads < 1 || *reps < 1 {
		return usagef("--heads and --reps must be positive")
	}
	types := strings.Split(*dtypes, ",")
	for _, t := range types {
		if t != "float32" && t != "float64" {
			return usagef("--dtype takes float32 and/or float64, got %q", t)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	fmt.Fprintf(stdout, "fastattn bench: %s attention, %s, fastest of %d runs; GFLOP/s counts 2nm(d+e) flops\n", *method, plural(*heads, "head"), *reps)
	// Fixed-width rows, printed as each size finishes.
	fmt.Fprintf(stdout, "%8s %5s %8s %7s %10s %9s\n", "n", "d", "dtype", "causal", "seconds", "GFLOP/s")
	for _, d := range ds {
		for _, n := range ns {
			for _, t := range types {
				w := workload{heads: *heads, n: n, m: n, d: d, e: d, seed: uint64(n + d)}
				opts := fastattn.Options{Method: *method, Causal: *causal}
				var rep fastattn.Report
				if t == "float32" {
					q, k, v := w.tensors32()
					rep, err = benchOne(ctx, q, k, v, opts, *reps)
				} else {
					q, k, v := w.tensors64()
					rep, err = benchOne(ctx, q, k, v, opts, *reps)
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%8d %5d %8s %7v %10.4f %9.1f\n", n, d, t, *causal, rep.Seconds, rep.GFlops)
			}
		}
	}
	return nil
}

func benchOne[T fastattn.Float](ctx context.Context, q, k, v fastattn.Tensor[T], opts fastattn.Options, reps int) (fastattn.Report, error) {
	res, err := attendTimed(ctx, q, k, v, opts, reps)
	if err != nil {
		return fastattn.Report{}, err
	}
	return res.Report, nil
}
