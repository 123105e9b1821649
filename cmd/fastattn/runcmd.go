package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"time"

	"github.com/fastattn/fastattn"
	"github.com/fastattn/fastattn/internal/npyfile"
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
	var repeat int
	fs.IntVar(&repeat, "repeat", 0, "after the call, time this many more exact calls on the same inputs through the serving hot path (AttendInto with one Workspace, into the first call's output): warm memory, as a server runs; their seconds go to the report as repeat_seconds (float32 and float64 inputs, --method exact)")
	var bf16 bool
	fs.BoolVar(&bf16, "bf16", false, "read uint16 .npy files (Q, K, V) as bfloat16 bits, as ml_dtypes' bfloat16 arrays viewed as uint16 (x.view(numpy.uint16)); the output is then bfloat16 bits too")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := requireAndCheck(append(in.flags(), flagPath{"out", outPath}), []flagPath{{"out", outPath}, {"lse", lsePath}, {"report", reportPath}}); err != nil {
		return err
	}
	names := []string{"Q", "K", "V"}
	arrays, err := readArrays(names, []string{in.q, in.k, in.v})
	if err != nil {
		return err
	}
	opts, err := af.options(headDim(arrays[0]))
	if err != nil {
		return err
	}
	half := arrays[0].F16 != nil || arrays[0].U16 != nil || arrays[1].F16 != nil || arrays[1].U16 != nil
	switch {
	case repeat < 0:
		return usagef("--repeat must be 0 or more, got %d", repeat)
	case repeat > 0 && opts.Method != fastattn.DefaultMethod:
		return usagef("--repeat times the exact hot path (AttendInto); pass --method %s", fastattn.DefaultMethod)
	case repeat > 0 && half:
		return usagef("--repeat takes float32 or float64 Q, K and V")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	paths := [3]string{outPath, lsePath, reportPath}
	var rep runReport
	if arrays[1].F16 != nil || arrays[1].U16 != nil {
		rep.Report, err = attendHalfFiles(ctx, names, arrays, bf16, opts, paths, stdout)
	} else if err = sameDType(names, arrays); err != nil {
		return err
	} else if arrays[0].F16 != nil || arrays[0].U16 != nil {
		return usagef("Q is %s: 16-bit queries need 16-bit keys and values", arrays[0].DType())
	} else if arrays[0].F32 != nil {
		rep, err = attendFiles(ctx, arrays[0].Shape, arrays[0].F32, arrays[1].Shape, arrays[1].F32, arrays[2].Shape, arrays[2].F32, opts, repeat, paths, stdout)
	} else {
		rep, err = attendFiles(ctx, arrays[0].Shape, arrays[0].F64, arrays[1].Shape, arrays[1].F64, arrays[2].Shape, arrays[2].F64, opts, repeat, paths, stdout)
	}
	if err != nil {
		return err
	}
	summary := stdout
	if reportPath == "-" {
		summary = stderr // standard output holds the report
	}
	fmt.Fprintf(summary, "%s attention, %s, %s x %d rows: %.3f s (%.2f GFLOP/s at exact attention's flop count), error bound %.3g\n",
		rep.Method, rep.DType, plural(rep.Batch, "head"), rep.N, rep.Seconds, exactFlops(rep.Report)/rep.Seconds/1e9, rep.ErrorBound)
	if len(rep.RepeatSeconds) > 0 {
		best := slices.Min(rep.RepeatSeconds)
		fmt.Fprintf(summary, "hot path, %s: fastest %.3f s (%.2f GFLOP/s)\n", plural(len(rep.RepeatSeconds), "more call"), best, exactFlops(rep.Report)/best/1e9)
	}
	printNote(stderr, "run", rep.Note)
	return nil
}

// runReport is the JSON report of run: the library's report of the call
// that wrote the output, and the seconds of each --repeat call.
type runReport struct {
	fastattn.Report
	RepeatSeconds []float64 `json:"repeat_seconds,omitempty"`
}

// attendFiles computes attention, times repeat more exact calls into the
// same buffers (see --repeat), and writes the output, the log-sum-exp and
// the report (paths: out, lse, report; the last two optional), all or none
// of them ("-" as the report path is stdout).
func attendFiles[T fastattn.Float](ctx context.Context, qs []int, q []T, ks []int, k []T, vs []int, v []T, opts fastattn.Options, repeat int, paths [3]string, stdout io.Writer) (runReport, error) {
	qt, kt, vt := fastattn.Tensor[T]{Data: q, Shape: qs}, fastattn.Tensor[T]{Data: k, Shape: ks}, fastattn.Tensor[T]{Data: v, Shape: vs}
	res, err := fastattn.Attend(ctx, qt, kt, vt, opts)
	if err != nil {
		if errors.Is(err, fastattn.ErrInvalidInput) {
			return runReport{}, usageError{err}
		}
		return runReport{}, err
	}
	rep := runReport{Report: res.Report}
	// Exact attention computes every row the same way each time, so the
	// repeated calls write what the first one did.
	ws := fastattn.NewWorkspace()
	for range repeat {
		start := time.Now()
		if err := fastattn.AttendInto(ctx, ws, res.Out, res.LSE.Data, qt, kt, vt, opts); err != nil {
			return runReport{}, err
		}
		rep.RepeatSeconds = append(rep.RepeatSeconds, time.Since(start).Seconds())
	}
	return rep, writeResult(res.Out.Shape, res.Out.Data, res.LSE, rep, paths, stdout)
}

// attendHalfFiles runs attention on 16-bit keys and values (float16, or
// uint16 bfloat16 bits with --bf16) and float32 or 16-bit queries; the
// output has the queries' storage.
func attendHalfFiles(ctx context.Context, names []string, arrays []npyfile.Array, bf16 bool, opts fastattn.Options, paths [3]string, stdout io.Writer) (fastattn.Report, error) {
	q, k, v := arrays[0], arrays[1], arrays[2]
	if k.DType() != v.DType() {
		return fastattn.Report{}, usagef("K is %s but V is %s; keys and values need one dtype", k.DType(), v.DType())
	}
	format, bits := fastattn.Float16, func(a npyfile.Array) []uint16 { return a.F16 }
	if k.U16 != nil {
		if !bf16 {
			return fastattn.Report{}, usagef("K and V are uint16; pass --bf16 to read them as bfloat16 bits")
		}
		format, bits = fastattn.BFloat16, func(a npyfile.Array) []uint16 { return a.U16 }
	}
	kt := fastattn.HalfTensor{Data: bits(k), Shape: k.Shape, Format: format}
	vt := fastattn.HalfTensor{Data: bits(v), Shape: v.Shape, Format: format}
	var (
		shape []int
		out   any
		lse   fastattn.Tensor[float64]
		rep   fastattn.Report
		err   error
	)
	switch {
	case q.F32 != nil:
		var res *fastattn.Result[float32]
		if res, err = fastattn.AttendHalfKV(ctx, fastattn.Tensor[float32]{Data: q.F32, Shape: q.Shape}, kt, vt, opts); err == nil {
			shape, out, lse, rep = res.Out.Shape, res.Out.Data, res.LSE, res.Report
		}
	case q.DType() == k.DType():
		// The library reads 16-bit queries and writes the output in
		// their format.
		var res *fastattn.HalfResult
		if res, err = fastattn.AttendHalf(ctx, fastattn.HalfTensor{Data: bits(q), Shape: q.Shape, Format: format}, kt, vt, opts); err == nil {
			shape, out, lse, rep = res.Out.Shape, res.Out.Data, res.LSE, res.Report
			if format == fastattn.Float16 {
				out = npyfile.Float16(res.Out.Data)
			}
		}
	default:
		return fastattn.Report{}, usagef("%s is %s with %s keys and values; give float32 queries or %s ones", names[0], q.DType(), k.DType(), k.DType())
	}
	if err != nil {
		if errors.Is(err, fastattn.ErrInvalidInput) {
			return fastattn.Report{}, usageError{err}
		}
		return fastattn.Report{}, err
	}
	return rep, writeResult(shape, out, lse, rep, paths, stdout)
}

// writeResult writes the output (data, any type npyfile encodes), the
// log-sum-exp and the report to paths (out, lse, report; the last two
// optional), all or none.
func writeResult(shape []int, data any, lse fastattn.Tensor[float64], rep any, paths [3]string, stdout io.Writer) error {
	files := []pendingFile{npyFile(paths[0], shape, data)}
	if paths[1] != "" {
		files = append(files, npyFile(paths[1], lse.Shape, lse.Data))
	}
	if paths[2] != "" {
		f, err := jsonFile(paths[2], rep)
		if err != nil {
			return err
		}
		files = append(files, f)
	}
	return writeAll(files, stdout)
}
