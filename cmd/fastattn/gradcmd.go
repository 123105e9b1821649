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
	register(command{"grad", "gradients dQ, dK, dV of attention for a loss gradient dO, from .npy files", gradCmd})
}

// gradReport is what --report writes: the backward pass's report, with the
// forward pass's under "forward".
type gradReport struct {
	fastattn.GradReport
	Forward fastattn.Report `json:"forward"`
}

func gradCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("grad", "grad --q Q.npy --k K.npy --v V.npy --dout DO.npy --dq DQ.npy --dk DK.npy --dv DV.npy [flags]", stdout)
	var doPath, dqPath, dkPath, dvPath, dsPath, reportPath string
	var in inputFlags
	in.register(fs)
	fs.StringVar(&doPath, "dout", "", "loss gradient with respect to the attention output: (..., n, e), Q's dtype")
	fs.StringVar(&dqPath, "dq", "", "output file for dL/dQ, shaped like Q")
	fs.StringVar(&dkPath, "dk", "", "output file for dL/dK, shaped like K")
	fs.StringVar(&dvPath, "dv", "", "output file for dL/dV, shaped like V")
	fs.StringVar(&dsPath, "dsinks", "", "optional output file for dL/dsinks, float64 (heads,), with --sinks")
	fs.StringVar(&reportPath, "report", "", "optional JSON report: method, seconds, observed_error (approximate methods), forward: {...}; - for standard output")
	var af attnFlags
	af.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	outs := []flagPath{{"dq", dqPath}, {"dk", dkPath}, {"dv", dvPath}, {"report", reportPath}, {"dsinks", dsPath}}
	if err := requireAndCheck(append(append(in.flags(), flagPath{"dout", doPath}), outs[:3]...), outs); err != nil {
		return err
	}
	arrays, err := readInputs([]string{"Q", "K", "V", "dO"}, []string{in.q, in.k, in.v, doPath})
	if err != nil {
		return err
	}
	opts, err := af.options(headDim(arrays[0]))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if dsPath != "" && af.sinks == "" {
		return usagef("--dsinks needs --sinks")
	}
	paths := [5]string{dqPath, dkPath, dvPath, reportPath, dsPath}
	var rep gradReport
	if arrays[0].F32 != nil {
		rep, err = gradFiles(ctx, [4]npyTensor[float32]{{arrays[0].Shape, arrays[0].F32}, {arrays[1].Shape, arrays[1].F32}, {arrays[2].Shape, arrays[2].F32}, {arrays[3].Shape, arrays[3].F32}}, opts, paths, stdout)
	} else {
		rep, err = gradFiles(ctx, [4]npyTensor[float64]{{arrays[0].Shape, arrays[0].F64}, {arrays[1].Shape, arrays[1].F64}, {arrays[2].Shape, arrays[2].F64}, {arrays[3].Shape, arrays[3].F64}}, opts, paths, stdout)
	}
	if err != nil {
		return err
	}
	line := fmt.Sprintf("%s gradients, %s, %s x %d rows: forward %.3f s, backward %.3f s",
		rep.Method, rep.DType, plural(rep.Batch, "head"), rep.N, rep.Forward.Seconds, rep.Seconds)
	if o := rep.Observed; o != nil {
		line += fmt.Sprintf(", observed error vs exact on %s: dQ %.3g, dK %.3g, dV %.3g", plural(len(o.Heads)*(o.QueryRows+o.KeyRows), "sampled row"), o.DQ, o.DK, o.DV)
	}
	summary := stdout
	if reportPath == "-" {
		summary = stderr // standard output holds the report
	}
	fmt.Fprintln(summary, line)
	printNote(stderr, "grad", rep.Forward.Note)
	return nil
}

type npyTensor[T fastattn.Float] struct {
	shape []int
	data  []T
}

func (a npyTensor[T]) tensor() fastattn.Tensor[T] {
	return fastattn.Tensor[T]{Data: a.data, Shape: a.shape}
}

// gradFiles computes attention and its gradients and writes dQ, dK, dV and
// the report (if paths[3] is set), all or none.
func gradFiles[T fastattn.Float](ctx context.Context, in [4]npyTensor[T], opts fastattn.Options, paths [5]string, stdout io.Writer) (gradReport, error) {
	res, g, err := fastattn.ForwardBackward(ctx, in[0].tensor(), in[1].tensor(), in[2].tensor(), in[3].tensor(), opts)
	if err != nil {
		if errors.Is(err, fastattn.ErrInvalidInput) {
			return gradReport{}, usageError{err}
		}
		return gradReport{}, err
	}
	rep := gradReport{GradReport: g.Report, Forward: res.Report}
	files := []pendingFile{
		npyFile(paths[0], g.DQ.Shape, g.DQ.Data),
		npyFile(paths[1], g.DK.Shape, g.DK.Data),
		npyFile(paths[2], g.DV.Shape, g.DV.Data),
	}
	if paths[4] != "" {
		files = append(files, npyFile(paths[4], []int{len(g.DSinks)}, g.DSinks))
	}
	if paths[3] != "" {
		f, err := jsonFile(paths[3], rep)
		if err != nil {
			return gradReport{}, err
		}
		files = append(files, f)
	}
	return rep, writeAll(files, stdout)
}
