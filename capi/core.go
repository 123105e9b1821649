// Command capi is fastattn's C ABI, built as a shared library for the
// Python package (python/fastattn loads it with ctypes):
//
//	go build -buildmode=c-shared -tags fastattn_capi -o libfastattn.so ./capi
//
// (python/build.py runs this). The exported functions take C-contiguous
// arrays that the caller owns, as pointers plus shapes and dtypes: inputs
// are read in place, outputs are written into the caller's arrays, and no
// Go pointer is kept by C. Options travel as a JSON object decoded into
// fastattn.Options, so a new scalar option needs no new C function; options
// that are tensors (mask, sinks, key lengths) are passed as arrays.
//
// The cgo exports live in export.go, behind the fastattn_capi build tag, so
// that `go build ./...` and `go test ./...` stay pure Go; this file holds
// the logic, which the tests exercise without cgo.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/fastattn/fastattn"
	"github.com/fastattn/fastattn/attn"
)

// main is required by -buildmode=c-shared and never runs.
func main() {}

// dtype codes shared with python/fastattn/_lib.py.
type dtype int32

const (
	float32Type  dtype = 1
	float64Type  dtype = 2
	boolType     dtype = 3
	int64Type    dtype = 4
	float16Type  dtype = 5 // IEEE binary16, as its bits
	bfloat16Type dtype = 6 // the upper half of a float32, as its bits
)

func (t dtype) String() string {
	switch t {
	case float32Type:
		return "float32"
	case float64Type:
		return "float64"
	case boolType:
		return "bool"
	case int64Type:
		return "int64"
	case float16Type:
		return "float16"
	case bfloat16Type:
		return "bfloat16"
	}
	return fmt.Sprintf("dtype code %d", int32(t))
}

func (t dtype) size() int {
	switch t {
	case float32Type:
		return 4
	case boolType:
		return 1
	case float16Type, bfloat16Type:
		return 2
	}
	return 8
}

// Status codes returned by every exported function.
const (
	statusOK          = 0
	statusInvalid     = 1 // invalid input or options
	statusUnsupported = 2 // the method declines this input
	statusUnknownOpt  = 3 // an option this build of the library does not know
	statusInternal    = 4 // anything else (a bug, or an internal failure)
)

// array is a caller-owned C-contiguous array.
type array struct {
	data  unsafe.Pointer
	shape []int
	dtype dtype
}

// size is the element count, or an error if the shape is invalid.
func (a array) size(name string) (int, error) {
	n := 1
	for _, s := range a.shape {
		if s < 0 {
			return 0, invalidf("%s has a negative dimension in shape %v", name, a.shape)
		}
		if s > 0 && n > math.MaxInt/s/a.dtype.size() {
			return 0, invalidf("%s has shape %v, whose size overflows", name, a.shape)
		}
		n *= s
	}
	if n > 0 && a.data == nil {
		return 0, invalidf("%s has shape %v but no data", name, a.shape)
	}
	return n, nil
}

// view returns the array's memory as a slice of T without copying.
func view[T any](a array, name string, want dtype) ([]T, error) {
	if a.dtype != want {
		return nil, invalidf("%s has dtype %v, want %v", name, a.dtype, want)
	}
	n, err := a.size(name)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return []T{}, nil
	}
	return unsafe.Slice((*T)(a.data), n), nil
}

// tensor views a as a fastattn tensor of element type T.
func tensor[T fastattn.Float](a array, name string) (fastattn.Tensor[T], error) {
	data, err := view[T](a, name, dtypeOf[T]())
	if err != nil {
		return fastattn.Tensor[T]{}, err
	}
	return fastattn.Tensor[T]{Data: data, Shape: slices.Clone(a.shape)}, nil
}

func dtypeOf[T fastattn.Float]() dtype {
	var x T
	if _, ok := any(x).(float32); ok {
		return float32Type
	}
	return float64Type
}

// capiError is an error raised by this package itself, with its status.
type capiError struct {
	status int
	msg    string
}

func (e *capiError) Error() string { return e.msg }

func invalidf(format string, args ...any) error {
	return &capiError{statusInvalid, "fastattn: " + fmt.Sprintf(format, args...)}
}

// status maps an error to the status code the Python side turns into an
// exception class. A declining method's error may also match
// ErrInvalidInput (a method without a backward pass), so it is tested first.
func status(err error) int {
	var ce *capiError
	switch {
	case err == nil:
		return statusOK
	case errors.As(err, &ce):
		return ce.status
	case errors.Is(err, attn.ErrUnsupported):
		return statusUnsupported
	case errors.Is(err, fastattn.ErrInvalidInput), errors.Is(err, attn.ErrBadProblem):
		return statusInvalid
	}
	return statusInternal
}

// extras are the options passed as arrays rather than in the JSON object.
type extras struct {
	keyLengths *array // int64, one per batch element or per head
	sinks      *array // float64, one per query head
	mask       *array // bool (true = attend) or additive, of Q's dtype
}

// jsonOptions is fastattn.Options as the JSON object spells it: the same
// field names, except that CausalAlign is a name ("bottom-right",
// "top-left") rather than a number.
type jsonOptions struct {
	fastattn.Options
	CausalAlign string
}

// options decodes the JSON object into fastattn.Options, refusing fields
// the library does not have (the Python side reports those as not
// implemented), and adds the array options.
func options(js string, ex extras) (fastattn.Options, error) {
	var jo jsonOptions
	if strings.TrimSpace(js) != "" {
		dec := json.NewDecoder(strings.NewReader(js))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&jo); err != nil {
			if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
				return jo.Options, &capiError{statusUnknownOpt, fmt.Sprintf("fastattn: this build of the library has no option %s", name)}
			}
			return jo.Options, invalidf("bad options %s: %v", js, err)
		}
	}
	opts := jo.Options
	switch jo.CausalAlign {
	case "", fastattn.BottomRight.String():
		opts.CausalAlign = fastattn.BottomRight
	case fastattn.TopLeft.String():
		opts.CausalAlign = fastattn.TopLeft
	default:
		return opts, invalidf("causal alignment %q is neither %q nor %q", jo.CausalAlign, fastattn.BottomRight, fastattn.TopLeft)
	}
	if ex.keyLengths != nil {
		lens, err := view[int64](*ex.keyLengths, "key lengths", int64Type)
		if err != nil {
			return opts, err
		}
		opts.KeyLengths = make([]int, len(lens))
		for i, l := range lens {
			opts.KeyLengths[i] = int(l)
		}
	}
	if ex.sinks != nil {
		// Used in place: the library reads the options during the call only.
		sinks, err := view[float64](*ex.sinks, "sinks", float64Type)
		if err != nil {
			return opts, err
		}
		opts.Sinks = sinks
	}
	if ex.mask != nil {
		mask, err := maskOf(*ex.mask)
		if err != nil {
			return opts, err
		}
		opts.Mask = mask
	}
	return opts, nil
}

// maskOf wraps a boolean or additive mask array; boolean and float64 masks
// are used in place.
func maskOf(a array) (*fastattn.Mask, error) {
	switch a.dtype {
	case boolType:
		b, err := view[bool](a, "mask", boolType)
		if err != nil {
			return nil, err
		}
		return fastattn.BoolMask(b, a.shape...)
	case float32Type:
		f, err := view[float32](a, "mask", float32Type)
		if err != nil {
			return nil, err
		}
		return fastattn.AdditiveMask(f, a.shape...)
	case float64Type:
		f, err := view[float64](a, "mask", float64Type)
		if err != nil {
			return nil, err
		}
		return fastattn.AdditiveMask(f, a.shape...)
	}
	return nil, invalidf("mask has dtype %v; use bool or a float type", a.dtype)
}

// reportJSON encodes a report; a report whose details hold a value JSON
// cannot carry (NaN, Inf) is encoded without its details.
func reportJSON(rep any) []byte {
	b, err := json.Marshal(rep)
	if err == nil {
		return b
	}
	switch r := rep.(type) {
	case fastattn.Report:
		r.Details = map[string]any{"error": "details not representable in JSON: " + err.Error()}
		b, err = json.Marshal(r)
	case fastattn.GradReport:
		r.Details = map[string]any{"error": "details not representable in JSON: " + err.Error()}
		b, err = json.Marshal(r)
	}
	if err != nil {
		return []byte(`{}`)
	}
	return b
}

// fill copies src into the caller's array dst, checking its shape.
func fill[T any](dst array, name string, want dtype, src []T, shape []int) error {
	if !slices.Equal(dst.shape, shape) {
		return invalidf("%s has shape %v, want %v", name, dst.shape, shape)
	}
	d, err := view[T](dst, name, want)
	if err != nil {
		return err
	}
	copy(d, src)
	return nil
}

// inputs is the common part of attend and gradient: q, k, v and options.
type inputs struct {
	q, k, v array
	opts    string
	extras
}

// attend computes attention of the caller's arrays into out and lse and
// returns the report as JSON when wantReport is set. Without a report,
// exact attention runs through fastattn.AttendInto, which writes into the
// caller's arrays directly (and allocates nothing in steady state); other
// calls run fastattn.Attend, whose output is copied into out and lse.
func attend(in inputs, out, lse array, wantReport bool) ([]byte, error) {
	if in.k.dtype == float16Type || in.k.dtype == bfloat16Type {
		return attendHalf(in, out, lse, wantReport)
	}
	switch in.q.dtype {
	case float32Type:
		return attendT[float32](in, out, lse, wantReport)
	case float64Type:
		return attendT[float64](in, out, lse, wantReport)
	}
	return nil, invalidf("Q has dtype %v; use float32 or float64", in.q.dtype)
}

// workspaces keeps fastattn.Workspaces for AttendInto, one per concurrent
// call (Python threads may call at once, the GIL released). Unlike a
// sync.Pool it keeps them across garbage collections, so that steady calls
// allocate nothing.
var workspaces struct {
	sync.Mutex
	free []*fastattn.Workspace
}

func getWorkspace() *fastattn.Workspace {
	workspaces.Lock()
	defer workspaces.Unlock()
	if n := len(workspaces.free); n > 0 {
		ws := workspaces.free[n-1]
		workspaces.free = workspaces.free[:n-1]
		return ws
	}
	return fastattn.NewWorkspace()
}

func putWorkspace(ws *fastattn.Workspace) {
	workspaces.Lock()
	defer workspaces.Unlock()
	workspaces.free = append(workspaces.free, ws)
}

func attendT[T fastattn.Float](in inputs, out, lse array, wantReport bool) ([]byte, error) {
	q, k, v, opts, err := load[T](in)
	if err != nil {
		return nil, err
	}
	return compute(opts, out, lse, wantReport,
		func(ws *fastattn.Workspace, o fastattn.Tensor[T], l []float64) error {
			return fastattn.AttendInto(context.Background(), ws, o, l, q, k, v, opts)
		},
		func() (*fastattn.Result[T], error) { return fastattn.Attend(context.Background(), q, k, v, opts) })
}

// attendHalf is attend for 16-bit keys and values (float16 or bfloat16)
// with float32 queries and output.
func attendHalf(in inputs, out, lse array, wantReport bool) ([]byte, error) {
	q, k, v, opts, err := loadHalf(in)
	if err != nil {
		return nil, err
	}
	return compute(opts, out, lse, wantReport,
		func(ws *fastattn.Workspace, o fastattn.Tensor[float32], l []float64) error {
			return fastattn.AttendHalfKVInto(context.Background(), ws, o, l, q, k, v, opts)
		},
		func() (*fastattn.Result[float32], error) {
			return fastattn.AttendHalfKV(context.Background(), q, k, v, opts)
		})
}

// compute runs into, exact attention writing into out and lse with a kept
// workspace, when no report is wanted and the method is exact; otherwise
// full, whose result is copied into out and lse, with its report.
func compute[T fastattn.Float](opts fastattn.Options, out, lse array, wantReport bool,
	into func(*fastattn.Workspace, fastattn.Tensor[T], []float64) error,
	full func() (*fastattn.Result[T], error)) ([]byte, error) {
	if !wantReport && (opts.Method == "" || opts.Method == fastattn.DefaultMethod) {
		o, err := tensor[T](out, "out")
		if err != nil {
			return nil, err
		}
		l, err := view[float64](lse, "lse", float64Type)
		if err != nil {
			return nil, err
		}
		ws := getWorkspace()
		defer putWorkspace(ws)
		return nil, into(ws, o, l)
	}
	res, err := full()
	if err != nil {
		return nil, err
	}
	return copyResult(res, out, lse)
}

// loadHalf is load for float32 queries against 16-bit keys and values.
func loadHalf(in inputs) (q fastattn.Tensor[float32], k, v fastattn.HalfTensor, opts fastattn.Options, err error) {
	if q, err = tensor[float32](in.q, "Q"); err != nil {
		err = invalidf("with %v keys and values Q must be float32, got %v", in.k.dtype, in.q.dtype)
		return
	}
	if k, err = halfTensor(in.k, "K"); err != nil {
		return
	}
	if v, err = halfTensor(in.v, "V"); err != nil {
		return
	}
	opts, err = options(in.opts, in.extras)
	return
}

// halfTensor views a 16-bit array as a fastattn.HalfTensor.
func halfTensor(a array, name string) (fastattn.HalfTensor, error) {
	format := fastattn.Float16
	switch a.dtype {
	case float16Type:
	case bfloat16Type:
		format = fastattn.BFloat16
	default:
		return fastattn.HalfTensor{}, invalidf("%s has dtype %v; keys and values share one 16-bit format", name, a.dtype)
	}
	bits, err := view[uint16](a, name, a.dtype)
	if err != nil {
		return fastattn.HalfTensor{}, err
	}
	return fastattn.HalfTensor{Data: bits, Shape: slices.Clone(a.shape), Format: format}, nil
}

// copyResult copies a result into the caller's out and lse and returns
// its report as JSON.
func copyResult[T fastattn.Float](res *fastattn.Result[T], out, lse array) ([]byte, error) {
	if err := fill(out, "out", dtypeOf[T](), res.Out.Data, res.Out.Shape); err != nil {
		return nil, err
	}
	if err := fill(lse, "lse", float64Type, res.LSE.Data, res.LSE.Shape); err != nil {
		return nil, err
	}
	return reportJSON(res.Report), nil
}

func load[T fastattn.Float](in inputs) (q, k, v fastattn.Tensor[T], opts fastattn.Options, err error) {
	if q, err = tensor[T](in.q, "Q"); err != nil {
		return
	}
	if k, err = tensor[T](in.k, "K"); err != nil {
		return
	}
	if v, err = tensor[T](in.v, "V"); err != nil {
		return
	}
	opts, err = options(in.opts, in.extras)
	return
}

// gradient runs fastattn.Gradient given the forward's output, log-sum-exp
// and report (as JSON; its method field names the method) and the loss
// gradient dout, writing dQ, dK and dV (and, when dsinks is not nil, the
// sinks' gradient) into the caller's arrays.
func gradient(in inputs, out, lse array, forwardReport string, dout, dq, dk, dv array, dsinks *array) ([]byte, error) {
	if in.k.dtype == float16Type || in.k.dtype == bfloat16Type {
		return gradientHalf(in, out, lse, forwardReport, dout, dq, dk, dv, dsinks)
	}
	switch in.q.dtype {
	case float32Type:
		return gradientT[float32](in, out, lse, forwardReport, dout, dq, dk, dv, dsinks)
	case float64Type:
		return gradientT[float64](in, out, lse, forwardReport, dout, dq, dk, dv, dsinks)
	}
	return nil, invalidf("Q has dtype %v; use float32 or float64", in.q.dtype)
}

func gradientT[T fastattn.Float](in inputs, out, lse array, forwardReport string, dout, dq, dk, dv array, dsinks *array) ([]byte, error) {
	q, k, v, opts, err := load[T](in)
	if err != nil {
		return nil, err
	}
	res, dOut, err := forward[T](out, lse, forwardReport, dout)
	if err != nil {
		return nil, err
	}
	g, err := fastattn.Gradient(context.Background(), q, k, v, res, dOut, opts)
	if err != nil {
		return nil, err
	}
	return fillGrads(g, dq, dk, dv, dsinks)
}

// gradientHalf is gradient for 16-bit keys and values (float32 queries,
// output and gradients).
func gradientHalf(in inputs, out, lse array, forwardReport string, dout, dq, dk, dv array, dsinks *array) ([]byte, error) {
	q, k, v, opts, err := loadHalf(in)
	if err != nil {
		return nil, err
	}
	res, dOut, err := forward[float32](out, lse, forwardReport, dout)
	if err != nil {
		return nil, err
	}
	g, err := fastattn.GradientHalfKV(context.Background(), q, k, v, res, dOut, opts)
	if err != nil {
		return nil, err
	}
	return fillGrads(g, dq, dk, dv, dsinks)
}

// forward rebuilds the forward result (on the caller's arrays) and dO.
func forward[T fastattn.Float](out, lse array, report string, dout array) (*fastattn.Result[T], fastattn.Tensor[T], error) {
	res := &fastattn.Result[T]{}
	var err error
	if res.Out, err = tensor[T](out, "the forward output"); err != nil {
		return nil, fastattn.Tensor[T]{}, err
	}
	if res.LSE, err = tensor[float64](lse, "the forward log-sum-exp"); err != nil {
		return nil, fastattn.Tensor[T]{}, err
	}
	if err := json.Unmarshal([]byte(report), &res.Report); err != nil {
		return nil, fastattn.Tensor[T]{}, invalidf("bad forward report %q: %v", report, err)
	}
	dOut, err := tensor[T](dout, "dO")
	return res, dOut, err
}

// fillGrads copies the gradients into the caller's arrays and returns the
// report as JSON.
func fillGrads[T fastattn.Float](g *fastattn.Grads[T], dq, dk, dv array, dsinks *array) ([]byte, error) {
	for _, x := range []struct {
		name string
		dst  array
		src  fastattn.Tensor[T]
	}{{"dQ", dq, g.DQ}, {"dK", dk, g.DK}, {"dV", dv, g.DV}} {
		if err := fill(x.dst, x.name, dtypeOf[T](), x.src.Data, x.src.Shape); err != nil {
			return nil, err
		}
	}
	if dsinks != nil {
		if g.DSinks == nil {
			return nil, invalidf("dsinks was asked for but there are no sinks")
		}
		if err := fill(*dsinks, "dsinks", float64Type, g.DSinks, []int{len(g.DSinks)}); err != nil {
			return nil, err
		}
	}
	return reportJSON(g.Report), nil
}

// merge runs fastattn.Merge on parts given as (output, log-sum-exp) pairs.
func merge(outs, lses []array, out, lse array) error {
	if len(outs) == 0 {
		return invalidf("merge needs at least one part")
	}
	switch outs[0].dtype {
	case float32Type:
		return mergeT[float32](outs, lses, out, lse)
	case float64Type:
		return mergeT[float64](outs, lses, out, lse)
	}
	return invalidf("merge: part 0 has dtype %v; use float32 or float64", outs[0].dtype)
}

func mergeT[T fastattn.Float](outs, lses []array, out, lse array) error {
	parts := make([]*fastattn.Result[T], len(outs))
	for i := range outs {
		o, err := tensor[T](outs[i], fmt.Sprintf("part %d's output", i))
		if err != nil {
			return err
		}
		l, err := tensor[float64](lses[i], fmt.Sprintf("part %d's log-sum-exp", i))
		if err != nil {
			return err
		}
		if len(o.Shape) == 0 || !slices.Equal(o.Shape[:len(o.Shape)-1], l.Shape) {
			return invalidf("part %d has output shape %v and log-sum-exp shape %v; the log-sum-exp has the output's shape without its last dimension", i, o.Shape, l.Shape)
		}
		parts[i] = &fastattn.Result[T]{Out: o, LSE: l}
	}
	res, err := fastattn.Merge(parts...)
	if err != nil {
		return err
	}
	if err := fill(out, "out", dtypeOf[T](), res.Out.Data, res.Out.Shape); err != nil {
		return err
	}
	return fill(lse, "lse", float64Type, res.LSE.Data, res.LSE.Shape)
}

// abiVersion changes whenever an exported function's signature changes
// or one is added; the Python side refuses a library of another version.
// 4: fastattn_set_worker_poll.
const abiVersion = 4

// setWorkerPoll is fastattn_set_worker_poll's body: fastattn.SetWorkerPoll
// in nanoseconds.
func setWorkerPoll(nanos int64) int64 {
	return int64(fastattn.SetWorkerPoll(time.Duration(nanos)))
}

// info describes the library to the Python side.
func info() []byte {
	b, _ := json.Marshal(map[string]any{
		"abi":            abiVersion,
		"methods":        fastattn.Methods(),
		"differentiable": fastattn.DifferentiableMethods(),
		"auto":           fastattn.Auto,
		"default_eps":    fastattn.DefaultEps,
		"go":             runtime.Version(),
	})
	return b
}

// totalAlloc is the bytes the Go heap has allocated so far; the Python
// tests use it to check that inputs are not copied.
func totalAlloc() int64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.TotalAlloc)
}

// guard turns a panic into an internal error, since a panic would kill the
// host process.
func guard(err *error) {
	if r := recover(); r != nil {
		*err = &capiError{statusInternal, fmt.Sprintf("fastattn: internal error (please report): %v", r)}
	}
}
