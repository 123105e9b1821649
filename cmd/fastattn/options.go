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
}

func (a *attnFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&a.method, "method", fastattn.Auto, "attention method: "+strings.Join(fastattn.Methods(), ", ")+", or auto (the fastest predicted to meet --eps)")
	fs.StringVar(&a.scale, "scale", "1/sqrt(d)", "logit scale: a positive number, 1/sqrt(d) (PyTorch's default) or 1/d (the papers')")
	fs.BoolVar(&a.causal, "causal", false, "causal mask, aligned bottom-right: query i sees keys j <= i + m - n")
	fs.StringVar(&a.keyLengths, "key-lengths", "", "valid keys per batch element or per head, comma-separated (the rest are padding)")
	fs.Float64Var(&a.eps, "eps", fastattn.DefaultEps, "entrywise error target of approximate methods, relative to max |V| per column")
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
	fs.StringVar(&f.k, "k", "", "keys: (..., m, d), same leading shape and dtype as Q")
	fs.StringVar(&f.v, "v", "", "values: (..., m, e), same leading shape and dtype as Q")
}

// flags lists them for the required-flag check.
func (f *inputFlags) flags() []flagPath {
	return []flagPath{{"q", f.q}, {"k", f.k}, {"v", f.v}}
}

// readInputs reads .npy files that must share one dtype; names label them
// in errors ("Q", "K", ...). Every error is the input's fault (a missing,
// truncated or non-float file), so it exits with status 2.
func readInputs(names, paths []string) ([]npyfile.Array, error) {
	in := make([]npyfile.Array, len(paths))
	for i, p := range paths {
		a, err := npyfile.Read(p)
		if err != nil {
			return nil, usageError{err}
		}
		in[i] = a
	}
	for i := 1; i < len(in); i++ {
		if in[i].DType() != in[0].DType() {
			return nil, usagef("%s is %s but %s is %s; convert all %d inputs to one dtype", names[0], in[0].DType(), names[i], in[i].DType(), len(in))
		}
	}
	return in, nil
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
