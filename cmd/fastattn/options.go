package main

import (
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/fastattn/fastattn"
	"github.com/fastattn/fastattn/internal/npyfile"
)

// attnFlags are the attention options shared by every command that computes
// attention on user data.
type attnFlags struct {
	method, scale, keyLengths string
	causal                    bool
	eps                       float64
	// The real-model options: PyTorch's is_causal alignment,
	// FlashAttention's window_size, attn_mask and attention sinks.
	causalAlign, window, mask, sinks string
}

func (a *attnFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.method, "method", fastattn.Auto, "attention method: "+strings.Join(fastattn.Methods(), ", ")+", or auto (the fastest predicted to meet --eps)")
	fs.StringVar(&a.scale, "scale", "1/sqrt(d)", "logit scale: a positive number, 1/sqrt(d) (PyTorch's default) or 1/d (the papers')")
	fs.BoolVar(&a.causal, "causal", false, "causal mask, aligned bottom-right (see --causal-align): query i sees keys j <= i + m - n")
	fs.StringVar(&a.keyLengths, "key-lengths", "", "valid keys per batch element or per head, comma-separated (the rest are padding)")
	fs.Float64Var(&a.eps, "eps", fastattn.DefaultEps, "entrywise error target of approximate methods, relative to max |V| per column")
	fs.StringVar(&a.causalAlign, "causal-align", "bottom-right", "corner the causal mask and --window align to: bottom-right (FlashAttention) or top-left (PyTorch's is_causal: query i sees keys j <= i)")
	fs.StringVar(&a.window, "window", "", "sliding window LEFT,RIGHT (FlashAttention's window_size; -1 = unbounded): query i sees keys i+m-n-LEFT <= j <= i+m-n+RIGHT")
	fs.StringVar(&a.mask, "mask", "", "mask .npy (PyTorch's attn_mask): bool (true = attend) or float32/float64 added to the scaled logits (-inf masks), broadcasting to (batch, heads, n, m)")
	fs.StringVar(&a.sinks, "sinks", "", "attention sinks .npy: one logit per query head, shape (heads,), float32 or float64")
}

// options converts the flags for an input of head dimension d.
func (a *attnFlags) options(d int) (fastattn.Options, error) {
	o := fastattn.Options{Method: a.method, Causal: a.causal, Eps: a.eps}
	if !(a.eps > 0) || math.IsInf(a.eps, 0) {
		return o, usagef("--eps must be a positive number, got %g", a.eps)
	}
	switch s := strings.ReplaceAll(a.scale, " ", ""); s {
	case "1/sqrt(d)", "":
		o.Scale = 1 / math.Sqrt(float64(d))
	case "1/d":
		o.Scale = fastattn.PaperScale(d)
	default:
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || !(v > 0) || math.IsInf(v, 0) {
			return o, usagef("--scale must be a positive number, 1/sqrt(d) or 1/d, got %q", a.scale)
		}
		o.Scale = v
	}
	switch a.causalAlign {
	case "bottom-right", "":
	case "top-left":
		o.CausalAlign = fastattn.TopLeft
	default:
		return o, usagef("--causal-align must be top-left or bottom-right, got %q", a.causalAlign)
	}
	if a.window != "" {
		f := strings.Split(a.window, ",")
		var w [2]int
		for x := range w {
			var err error
			if len(f) != 2 {
				err = fmt.Errorf("two numbers")
			} else {
				w[x], err = strconv.Atoi(strings.TrimSpace(f[x]))
			}
			if err != nil || w[x] < -1 {
				return o, usagef("--window must be LEFT,RIGHT with each -1 (unbounded) or a number of keys >= 0, got %q", a.window)
			}
		}
		o.Window = &fastattn.Window{Left: w[0], Right: w[1]}
	}
	if a.mask != "" {
		arr, err := npyfile.Read(a.mask)
		if err != nil {
			return o, usageError{fmt.Errorf("--mask: %w", err)}
		}
		switch {
		case arr.Bool != nil:
			o.Mask, err = fastattn.BoolMask(arr.Bool, arr.Shape...)
		case arr.F32 != nil:
			o.Mask, err = fastattn.AdditiveMask(arr.F32, arr.Shape...)
		default:
			o.Mask, err = fastattn.AdditiveMask(arr.F64, arr.Shape...)
		}
		if err != nil {
			return o, usageError{fmt.Errorf("--mask %s: %w", a.mask, err)}
		}
	}
	if a.sinks != "" {
		arr, err := npyfile.Read(a.sinks)
		if err != nil {
			return o, usageError{fmt.Errorf("--sinks: %w", err)}
		}
		if len(arr.Shape) != 1 || arr.Bool != nil {
			return o, usagef("--sinks %s must be a float array of shape (heads,), got %s %s", a.sinks, arr.DType(), fmtShape(arr.Shape))
		}
		o.Sinks = arr.F64
		if arr.F32 != nil {
			for _, x := range arr.F32 {
				o.Sinks = append(o.Sinks, float64(x))
			}
		}
		if o.Sinks == nil {
			o.Sinks = []float64{}
		}
	}
	if a.keyLengths != "" {
		for _, f := range strings.Split(a.keyLengths, ",") {
			l, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || l < 0 {
				return o, usagef("--key-lengths must be comma-separated non-negative integers, got %q", a.keyLengths)
			}
			o.KeyLengths = append(o.KeyLengths, l)
		}
	}
	return o, nil
}

// inputFlags are the --q, --k and --v flags of the commands that read an
// attention problem from .npy files.
type inputFlags struct{ q, k, v string }

func (f *inputFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.q, "q", "", "queries: (n, d), (heads, n, d) or (batch, heads, n, d), float32 or float64")
	fs.StringVar(&f.k, "k", "", "keys: (..., m, d), Q's dtype and leading shape, or fewer heads dividing Q's (grouped-query attention)")
	fs.StringVar(&f.v, "v", "", "values: (..., m, e), K's leading shape and Q's dtype")
}

// requireAndCheck makes the checks every computing command makes before
// any work: each required flag is set and the outputs can be written (the
// report may be "-", standard output).
func requireAndCheck(required, outs []flagPath) error {
	for _, f := range required {
		if f.val == "" {
			return usagef("--%s is required", f.name)
		}
	}
	return checkOutputs(outs, "report")
}

// flags lists them for the required-flag check.
func (f *inputFlags) flags() []flagPath {
	return []flagPath{{"q", f.q}, {"k", f.k}, {"v", f.v}}
}

// readInputs reads .npy files that must share one dtype; names label them
// in errors ("Q", "K", ...). Every error is the input's fault (a missing,
// truncated or non-float file), so it exits with status 2.
func readInputs(names, paths []string) ([]npyfile.Array, error) {
	in, err := readArrays(names, paths)
	if err != nil {
		return nil, err
	}
	for i, a := range in {
		if a.F16 != nil || a.U16 != nil {
			return nil, usagef("%s is %s; 16-bit inputs are read by run only (keys and values, with float32 or 16-bit queries)", names[i], a.DType())
		}
	}
	return in, sameDType(names, in)
}

// readArrays reads .npy files of attention inputs (no boolean arrays).
func readArrays(names, paths []string) ([]npyfile.Array, error) {
	in := make([]npyfile.Array, len(paths))
	for i, p := range paths {
		a, err := npyfile.Read(p)
		if err != nil {
			return nil, usageError{err}
		}
		in[i] = a
	}
	for i := range in {
		if in[i].Bool != nil {
			return nil, usagef("%s is a bool array; attention inputs are float32 or float64", names[i])
		}
	}
	return in, nil
}

// sameDType checks that the arrays share one dtype.
func sameDType(names []string, in []npyfile.Array) error {
	for i := 1; i < len(in); i++ {
		if in[i].DType() != in[0].DType() {
			return usagef("%s is %s but %s is %s; convert all %d inputs to one dtype", names[0], in[0].DType(), names[i], in[i].DType(), len(in))
		}
	}
	return nil
}

// headDim is the last dimension of a (at least 1), which sets the default
// scale 1/sqrt(d).
func headDim(a npyfile.Array) int {
	if len(a.Shape) == 0 {
		return 1
	}
	return max(a.Shape[len(a.Shape)-1], 1)
}

// parseInts parses a comma-separated list of positive integers.
func parseInts(flagName, s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 {
			return nil, usagef("--%s must be comma-separated positive integers, got %q", flagName, s)
		}
		out = append(out, v)
	}
	return out, nil
}

func fmtShape(s []int) string {
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = strconv.Itoa(v)
	}
	return "(" + strings.Join(parts, ", ") + ")"
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
