package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/fastattn/fastattn"
	"github.com/fastattn/fastattn/internal/npyfile"
)

func init() {
	register(command{"run", "compute attention of Q, K, V .npy files into an output .npy", runCmd})
}

func runCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", "run --q Q.npy --k K.npy --v V.npy --out OUT.npy [flags]", stdout)
	var qPath, kPath, vPath, outPath, lsePath, reportPath string
	fs.StringVar(&qPath, "q", "", "queries: (n, d), (heads, n, d) or (batch, heads, n, d), float32 or float64")
	fs.StringVar(&kPath, "k", "", "keys: (..., m, d), same leading shape and dtype as Q")
	fs.StringVar(&vPath, "v", "", "values: (..., m, e), same leading shape and dtype as Q")
	fs.StringVar(&outPath, "out", "", "output file: (..., n, e) in Q's dtype")
	fs.StringVar(&lsePath, "lse", "", "optional output file for the rows' log-sum-exp, (..., n) float64")
	fs.StringVar(&reportPath, "report", "", "optional JSON report: method, seconds, error_bound, ...")
	var af attnFlags
	af.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	for _, f := range []struct{ name, val string }{{"q", qPath}, {"k", kPath}, {"v", vPath}, {"out", outPath}} {
		if f.val == "" {
			return usagef("--%s is required", f.name)
		}
	}
	in, err := readInputs([]string{"Q", "K", "V"}, []string{qPath, kPath, vPath})
	if err != nil {
		return err
	}
	opts, err := af.options(headDim(in[0]))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var rep fastattn.Report
	if in[0].F32 != nil {
		rep, err = attendFiles(ctx, in[0].Shape, in[0].F32, in[1].Shape, in[1].F32, in[2].Shape, in[2].F32, opts, outPath, lsePath)
	} else {
		rep, err = attendFiles(ctx, in[0].Shape, in[0].F64, in[1].Shape, in[1].F64, in[2].Shape, in[2].F64, opts, outPath, lsePath)
	}
	if err != nil {
		return err
	}
	if reportPath != "" {
		if err := writeJSON(reportPath, rep); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "%s attention, %s, %s x %d rows: %.3f s (%.2f GFLOP/s), error bound %g\n",
		rep.Method, rep.DType, plural(rep.Batch, "head"), rep.N, rep.Seconds, rep.GFlops, rep.ErrorBound)
	return nil
}

func attendFiles[T fastattn.Float](ctx context.Context, qs []int, q []T, ks []int, k []T, vs []int, v []T, opts fastattn.Options, outPath, lsePath string) (fastattn.Report, error) {
	res, err := fastattn.Attend(ctx,
		fastattn.Tensor[T]{Data: q, Shape: qs}, fastattn.Tensor[T]{Data: k, Shape: ks}, fastattn.Tensor[T]{Data: v, Shape: vs}, opts)
	if err != nil {
		if errors.Is(err, fastattn.ErrInvalidInput) {
			return fastattn.Report{}, usageError{err}
		}
		return fastattn.Report{}, err
	}
	if err := npyfile.Write(outPath, res.Out.Shape, res.Out.Data); err != nil {
		return fastattn.Report{}, err
	}
	if lsePath != "" {
		if err := npyfile.Write(lsePath, res.LSE.Shape, res.LSE.Data); err != nil {
			return fastattn.Report{}, err
		}
	}
	return res.Report, nil
}

// writeJSON writes v as indented JSON, atomically.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return npyfile.WriteAtomic(path, func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	})
}
