package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/fastattn/fastattn"
)

func init() {
	register(command{"run", "compute attention of Q, K, V .npy files into an output .npy", runCmd})
}

func runCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "run --q Q.npy --k K.npy --v V.npy --out OUT.npy [flags]", stdout)
	var outPath, lsePath, reportPath string
	var in inputFlags
	in.register(fs)
	fs.StringVar(&outPath, "out", "", "output file: (..., n, e) in Q's dtype")
	fs.StringVar(&lsePath, "lse", "", "optional output file for the rows' log-sum-exp, (..., n) float64")
	fs.StringVar(&reportPath, "report", "", "optional JSON report (method, seconds, error_bound, version, ...); - for standard output")
	var af attnFlags
	af.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	for _, f := range append(in.flags(), flagPath{"out", outPath}) {
		if f.val == "" {
			return usagef("--%s is required", f.name)
		}
	}
	if err := checkOutputs([]flagPath{{"out", outPath}, {"lse", lsePath}, {"report", reportPath}}, "report"); err != nil {
		return err
	}
	arrays, err := readInputs([]string{"Q", "K", "V"}, []string{in.q, in.k, in.v})
	if err != nil {
		return err
	}
	opts, err := af.options(headDim(arrays[0]))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	paths := [3]string{outPath, lsePath, reportPath}
	var rep fastattn.Report
	if arrays[0].F32 != nil {
		rep, err = attendFiles(ctx, arrays[0].Shape, arrays[0].F32, arrays[1].Shape, arrays[1].F32, arrays[2].Shape, arrays[2].F32, opts, paths, stdout)
	} else {
		rep, err = attendFiles(ctx, arrays[0].Shape, arrays[0].F64, arrays[1].Shape, arrays[1].F64, arrays[2].Shape, arrays[2].F64, opts, paths, stdout)
	}
	if err != nil {
		return err
	}
	summary := stdout
	if reportPath == "-" {
		summary = stderr // standard output holds the report
	}
	fmt.Fprintf(summary, "%s attention, %s, %s x %d rows: %.3f s (%.2f GFLOP/s at exact attention's flop count), error bound %g\n",
		rep.Method, rep.DType, plural(rep.Batch, "head"), rep.N, rep.Seconds, exactFlops(rep)/rep.Seconds/1e9, rep.ErrorBound)
	printNote(stderr, "run", rep.Note)
	return nil
}

// attendFiles computes attention and writes the output, the log-sum-exp
// and the report (paths: out, lse, report; the last two optional), all or
// none of them ("-" as the report path is stdout).
func attendFiles[T fastattn.Float](ctx context.Context, qs []int, q []T, ks []int, k []T, vs []int, v []T, opts fastattn.Options, paths [3]string, stdout io.Writer) (fastattn.Report, error) {
	res, err := fastattn.Attend(ctx,
		fastattn.Tensor[T]{Data: q, Shape: qs}, fastattn.Tensor[T]{Data: k, Shape: ks}, fastattn.Tensor[T]{Data: v, Shape: vs}, opts)
	if err != nil {
		if errors.Is(err, fastattn.ErrInvalidInput) {
			return fastattn.Report{}, usageError{err}
		}
		return fastattn.Report{}, err
	}
	files := []pendingFile{npyFile(paths[0], res.Out.Shape, res.Out.Data)}
	if paths[1] != "" {
		files = append(files, npyFile(paths[1], res.LSE.Shape, res.LSE.Data))
	}
	if paths[2] != "" {
		f, err := jsonFile(paths[2], res.Report)
		if err != nil {
			return fastattn.Report{}, err
		}
		files = append(files, f)
	}
	return res.Report, writeAll(files, stdout)
}
