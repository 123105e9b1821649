package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"os/signal"
	"slices"

	"github.com/fastattn/fastattn"
	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/kernels"
	"github.com/fastattn/fastattn/internal/npyfile"
)

func init() {
	register(command{"decode", "feed Q, K, V .npy files through a KV cache token by token (autoregressive decoding)", decodeCmd})
}

// decodeReport is the JSON report of the decode command.
type decodeReport struct {
	Method    string      `json:"method"`
	DType     string      `json:"dtype"`
	KVFormat  string      `json:"kv_format,omitempty"`
	Batch     int         `json:"batch"`
	Heads     int         `json:"heads"`
	KVHeads   int         `json:"kv_heads"`
	N         int         `json:"n"`
	D         int         `json:"d"`
	E         int         `json:"e"`
	Scale     float64     `json:"scale"`
	Eps       float64     `json:"eps"`
	Window    int         `json:"window_left"`
	Sinks     bool        `json:"sinks"`
	Prefill   int         `json:"prefill_tokens"`
	PrefillS  float64     `json:"prefill_seconds"`
	Steps     int         `json:"steps"`
	StepsS    float64     `json:"steps_seconds"`
	Seconds   float64     `json:"seconds"`
	Bound     reportBound `json:"error_bound"`
	PolyRows  int         `json:"poly_rows"`
	ExactRows int         `json:"exact_rows"`
	Fallbacks int         `json:"fallback_rows"`
	// FallbackSteps lists the steps (token positions) with fallback rows.
	FallbackSteps []int   `json:"fallback_steps,omitempty"`
	Rebuilds      int     `json:"rebuilds"`
	DegreeMax     int     `json:"degree_max"`
	BetaMax       float64 `json:"beta_max"`
	// PerStep gives the step time by context length: steps whose context
	// (tokens cached after the step) lies in [From, To), 2^k <= From.
	PerStep []stepTimes `json:"per_step"`
	Version string      `json:"version"`
	Kernels string      `json:"kernels"`
}

// stepTimes summarises the decoding steps of one range of context lengths.
type stepTimes struct {
	ContextFrom   int         `json:"context_from"`
	ContextTo     int         `json:"context_to"`
	Steps         int         `json:"steps"`
	Median        float64     `json:"median_seconds"`
	Min           float64     `json:"min_seconds"`
	TokensPerSec  float64     `json:"tokens_per_second"`
	ErrorBoundMax reportBound `json:"error_bound"`
}

// reportBound is an error bound in a report: null when none holds (+Inf,
// which JSON cannot write; for example values beyond float32's unscaled
// range in an exact step).
type reportBound float64

// MarshalJSON writes the bound, or null when it is not finite.
func (b reportBound) MarshalJSON() ([]byte, error) {
	if math.IsInf(float64(b), 0) || math.IsNaN(float64(b)) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(b))
}

func decodeCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("decode", "decode --q Q.npy --k K.npy --v V.npy --out OUT.npy [--prefill P] [--method exact|poly|auto] [--eps E] [--window L,R] [--sinks S.npy] [flags]", stdout)
	var in inputFlags
	in.register(fs)
	var outPath, lsePath, reportPath string
	var prefill, workers int
	var bf16 bool
	fs.BoolVar(&bf16, "bf16", false, "read uint16 .npy files as bfloat16 bits, as run does; 16-bit keys and values make a 16-bit cache")
	// run's attention flags; decoding is causal, and a mask tensor or key
	// lengths do not apply.
	var af attnFlags
	registerDecodeFlags(fs, &af)
	fs.StringVar(&outPath, "out", "", "output file: (..., n, e) in Q's dtype, equal to run --causal on the same files")
	fs.StringVar(&lsePath, "lse", "", "optional output file for the rows' log-sum-exp, (..., n) float64")
	fs.StringVar(&reportPath, "report", "", "optional JSON report (per-step times by context length, bound, fallbacks); - for standard output")
	fs.IntVar(&prefill, "prefill", 0, "tokens fed in one first call (the prompt); the rest go one per step")
	fs.IntVar(&workers, "workers", 0, "goroutines of exact decoding (0: all cores)")
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
	if af.mask != "" || af.keyLengths != "" {
		return usagef("decode: --mask and --key-lengths do not apply (each token sees the cached tokens before it)")
	}
	if prefill < 0 || workers < 0 {
		return usagef("--prefill and --workers must be non-negative, got %d and %d", prefill, workers)
	}
	opts, err := af.options(headDim(arrays[0]))
	if err != nil {
		return err
	}
	switch af.method {
	case "exact", "poly", fastattn.Auto:
	default:
		return usagef("decode: --method must be exact, poly or auto, got %q", af.method)
	}
	// Decoding is causal: a window's right side is capped at 0 and both
	// alignments agree (queries and keys are the same tokens).
	copts := fastattn.CacheOptions{Method: af.method, Scale: opts.Scale, Eps: opts.Eps, Workers: workers, Window: opts.Window, Sinks: opts.Sinks}
	window := -1
	if opts.Window != nil {
		window = opts.Window.Left
	}
	// 16-bit keys and values (as run reads them) make a 16-bit cache.
	halfQ, err := halfInputs(names, arrays, bf16, &copts)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var rep *decodeReport
	var out any
	var lse []float64
	if arrays[0].F32 != nil {
		var o []float32
		rep, o, lse, err = decodeFiles(ctx, arrays[0].Shape, arrays[0].F32, arrays[1].Shape, arrays[1].F32, arrays[2].Shape, arrays[2].F32, copts, prefill)
		out = o
		if halfQ {
			// 16-bit queries: the output in their format, as run writes it.
			h := make([]uint16, len(o))
			for i, x := range o {
				h[i] = attn.Float32ToHalf(copts.KVFormat, x)
			}
			out = h
			if copts.KVFormat == fastattn.Float16 {
				out = npyfile.Float16(h)
			}
		}
	} else {
		rep, out, lse, err = decodeFiles(ctx, arrays[0].Shape, arrays[0].F64, arrays[1].Shape, arrays[1].F64, arrays[2].Shape, arrays[2].F64, copts, prefill)
	}
	if err != nil {
		return err
	}
	qs := arrays[0].Shape
	files := []pendingFile{npyFile(outPath, append(slices.Clone(qs[:len(qs)-1]), rep.E), out)}
	if lsePath != "" {
		files = append(files, npyFile(lsePath, qs[:len(qs)-1], lse))
	}
	rep.Window = window
	rep.Sinks = opts.Sinks != nil
	if reportPath != "" {
		f, err := jsonFile(reportPath, rep)
		if err != nil {
			return err
		}
		files = append(files, f)
	}
	if err := writeAll(files, stdout); err != nil {
		return err
	}
	summary := stdout
	if reportPath == "-" {
		summary = stderr
	}
	fmt.Fprintf(summary, "%s decoding, %s, %d tokens (prefill %d in %.3f s, then %d steps in %.3f s), %s, error bound %.3g, %d fallback rows, %d rebuilds\n",
		rep.Method, rep.DType, rep.N, rep.Prefill, rep.PrefillS, rep.Steps, rep.StepsS, plural(rep.Batch*rep.Heads, "head"), rep.Bound, rep.Fallbacks, rep.Rebuilds)
	for _, s := range rep.PerStep {
		fmt.Fprintf(summary, "  context %8d-%-8d %6d steps  median %9.3g s/token  %9.0f tokens/s\n", s.ContextFrom, s.ContextTo-1, s.Steps, s.Median, s.TokensPerSec)
	}
	return nil
}

// registerDecodeFlags registers run's attention flags on fs but for
// --causal and --causal-align: decoding is always causal (a token sees
// itself and the tokens before it), and the two alignments agree when the
// queries are the cached tokens themselves. Those two are left out of the
// help and refused with that reason, rather than accepted to no effect.
func registerDecodeFlags(fs *flag.FlagSet, af *attnFlags) {
	all := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	af.register(all)
	all.VisitAll(func(f *flag.Flag) {
		if f.Name == "causal" || f.Name == "causal-align" {
			fs.Var(alwaysCausal{f.Name}, f.Name, "") // no usage: not listed
			return
		}
		usage := f.Usage
		if f.Name == "method" {
			usage = "decoding method: exact, poly, or auto (poly once reading the cached keys costs more than the polynomial state meeting --eps)"
		}
		fs.Var(f.Value, f.Name, usage)
	})
}

// alwaysCausal is a flag decode refuses: see registerDecodeFlags.
type alwaysCausal struct{ name string }

func (a alwaysCausal) String() string   { return "" }
func (a alwaysCausal) IsBoolFlag() bool { return a.name == "causal" }
func (a alwaysCausal) Set(string) error {
	return fmt.Errorf("decode is always causal (each token sees itself and the tokens before it, so both alignments agree): drop --%s", a.name)
}

// cacheShape splits an input shape into (batch, heads, n, last).
func cacheShape(s []int) (batch, heads, n, last int) {
	batch, heads = 1, 1
	switch len(s) {
	case 4:
		batch, heads = s[0], s[1]
	case 3:
		heads = s[0]
	}
	return batch, heads, s[len(s)-2], s[len(s)-1]
}

// halfInputs turns 16-bit keys and values (float16, or uint16 bfloat16
// bits with bf16) into float32 arrays in place, sets opts.KVFormat to
// their format, and widens 16-bit queries too (reporting them); otherwise
// it checks that the three share one dtype.
func halfInputs(names []string, arrays []npyfile.Array, bf16 bool, opts *fastattn.CacheOptions) (halfQ bool, err error) {
	q, k, v := &arrays[0], &arrays[1], &arrays[2]
	if k.F16 == nil && k.U16 == nil && v.F16 == nil && v.U16 == nil {
		if q.F16 != nil || q.U16 != nil {
			return false, usagef("Q is %s: 16-bit queries need 16-bit keys and values", q.DType())
		}
		return false, sameDType(names, arrays)
	}
	if k.DType() != v.DType() {
		return false, usagef("K is %s but V is %s; keys and values need one dtype", k.DType(), v.DType())
	}
	format, bits := fastattn.Float16, func(a *npyfile.Array) []uint16 { return a.F16 }
	if k.U16 != nil {
		if !bf16 {
			return false, usagef("K and V are uint16; pass --bf16 to read them as bfloat16 bits")
		}
		format, bits = fastattn.BFloat16, func(a *npyfile.Array) []uint16 { return a.U16 }
	}
	if q.F32 == nil && q.DType() != k.DType() {
		return false, usagef("%s is %s with %s keys and values; give float32 queries or %s ones", names[0], q.DType(), k.DType(), k.DType())
	}
	halfQ = q.F32 == nil
	for _, a := range []*npyfile.Array{q, k, v} {
		if a.F32 != nil {
			continue
		}
		a.F32 = make([]float32, len(bits(a)))
		for i, h := range bits(a) {
			a.F32[i] = attn.HalfToFloat32(format, h)
		}
		a.F16, a.U16 = nil, nil
	}
	opts.KVFormat = format
	return halfQ, nil
}

// decodeFiles feeds the sequence through a cache: the first prefill tokens
// in one call, then one token per call. It returns the report, the output
// and the log-sum-exps.
func decodeFiles[T fastattn.Float](ctx context.Context, qs []int, q []T, ks []int, k []T, vs []int, v []T, opts fastattn.CacheOptions, prefill int) (*decodeReport, []T, []float64, error) {
	if len(qs) < 2 || len(qs) > 4 || len(ks) != len(qs) || len(vs) != len(qs) {
		return nil, nil, nil, usagef("Q, K and V must have the same rank, 2 to 4, got shapes %s, %s and %s", fmtShape(qs), fmtShape(ks), fmtShape(vs))
	}
	B, H, n, d := cacheShape(qs)
	kb, Hkv, kn, kd := cacheShape(ks)
	vb, vh, vn, e := cacheShape(vs)
	if kb != B || vb != B || vh != Hkv || kn != n || vn != n || kd != d {
		return nil, nil, nil, usagef("decode needs Q (batch, heads, n, d), K (batch, kv heads, n, d) and V (batch, kv heads, n, e) for one sequence of n tokens, got shapes %s, %s and %s", fmtShape(qs), fmtShape(ks), fmtShape(vs))
	}
	if prefill > n {
		return nil, nil, nil, usagef("--prefill %d is more than the %d tokens", prefill, n)
	}
	opts.QueryHeads = H
	cache, err := fastattn.NewCache[T](B, Hkv, d, e, opts)
	if err != nil {
		return nil, nil, nil, usageError{err}
	}
	out := make([]T, B*H*n*e)
	lse := make([]float64, B*H*n)
	rep := &decodeReport{Method: opts.Method, DType: fmt.Sprintf("%T", *new(T)), Batch: B, Heads: H, KVHeads: Hkv, N: n, D: d, E: e,
		Scale: opts.Scale, Eps: opts.Eps, Prefill: prefill, Version: fastattn.Version(), Kernels: kernels.Implementation()}
	if rep.Eps == 0 {
		rep.Eps = fastattn.DefaultEps
	}
	// Buffers of one call: tokens t0..t0+c-1 of every (batch, head).
	maxCall := max(prefill, 1)
	qb, kbuf, vbuf := make([]T, B*H*maxCall*d), make([]T, B*Hkv*maxCall*d), make([]T, B*Hkv*maxCall*e)
	ob, lb := make([]T, B*H*maxCall*e), make([]float64, B*H*maxCall)
	gather := func(dst, src []T, heads, w, t0, c int) {
		for bh := range B * heads {
			copy(dst[bh*c*w:(bh+1)*c*w], src[(bh*n+t0)*w:(bh*n+t0+c)*w])
		}
	}
	scatter := func(t0, c int) {
		for bh := range B * H {
			copy(out[(bh*n+t0)*e:(bh*n+t0+c)*e], ob[bh*c*e:(bh+1)*c*e])
			copy(lse[bh*n+t0:bh*n+t0+c], lb[bh*c:(bh+1)*c])
		}
	}
	call := func(t0, c int) (fastattn.CacheStep, error) {
		gather(qb, q, H, d, t0, c)
		gather(kbuf, k, Hkv, d, t0, c)
		gather(vbuf, v, Hkv, e, t0, c)
		qt := fastattn.Tensor[T]{Data: qb[:B*H*c*d], Shape: []int{B, H, c, d}}
		kt := fastattn.Tensor[T]{Data: kbuf[:B*Hkv*c*d], Shape: []int{B, Hkv, c, d}}
		vt := fastattn.Tensor[T]{Data: vbuf[:B*Hkv*c*e], Shape: []int{B, Hkv, c, e}}
		st, err := cache.Step(ctx, ob[:B*H*c*e], lb[:B*H*c], qt, kt, vt, nil)
		if err != nil {
			return st, err
		}
		scatter(t0, c)
		rep.PolyRows += st.PolyRows
		rep.ExactRows += st.ExactRows
		rep.Fallbacks += st.FallbackRows
		if st.FallbackRows > 0 {
			rep.FallbackSteps = append(rep.FallbackSteps, t0)
		}
		rep.Rebuilds += st.Rebuilds
		rep.DegreeMax = max(rep.DegreeMax, st.Degree)
		rep.BetaMax = max(rep.BetaMax, st.Beta)
		rep.Bound = max(rep.Bound, reportBound(st.ErrorBound))
		return st, nil
	}
	wrap := func(err error) error {
		if errors.Is(err, fastattn.ErrInvalidInput) {
			return usageError{err}
		}
		return err
	}
	methods := map[string]bool{}
	if prefill > 0 {
		st, err := call(0, prefill)
		if err != nil {
			return nil, nil, nil, wrap(err)
		}
		rep.PrefillS = st.Seconds
		methods[st.Method] = true
	}
	times := make([]float64, 0, n-prefill)
	bounds := make([]float64, 0, n-prefill)
	for t := prefill; t < n; t++ {
		st, err := call(t, 1)
		if err != nil {
			return nil, nil, nil, wrap(err)
		}
		times = append(times, st.Seconds)
		bounds = append(bounds, st.ErrorBound)
		rep.StepsS += st.Seconds
		methods[st.Method] = true
	}
	rep.Steps = n - prefill
	rep.Seconds = rep.PrefillS + rep.StepsS
	rep.PerStep = perStepTimes(times, bounds, prefill)
	names := make([]string, 0, len(methods))
	for m := range methods {
		names = append(names, m)
	}
	slices.Sort(names)
	if len(names) > 0 {
		rep.Method = names[0]
		for _, m := range names[1:] {
			rep.Method += "," + m
		}
	}
	if opts.KVFormat != attn.NoHalf {
		rep.KVFormat = opts.KVFormat.String()
	}
	return rep, out, lse, nil
}

// perStepTimes groups the steps by context length in octaves [2^k, 2^(k+1))
// (the context after step i is prefill + i + 1) and summarises each.
func perStepTimes(times, bounds []float64, prefill int) []stepTimes {
	var out []stepTimes
	for i := 0; i < len(times); {
		ctx := prefill + i + 1
		lo := 1 << (63 - bits.LeadingZeros64(uint64(ctx)))
		hi := 2 * lo
		j := min(len(times), hi-prefill-1)
		ts := slices.Clone(times[i:j])
		slices.Sort(ts)
		med := ts[len(ts)/2]
		if len(ts)%2 == 0 {
			med = (ts[len(ts)/2-1] + ts[len(ts)/2]) / 2
		}
		bmax := 0.0
		for _, b := range bounds[i:j] {
			bmax = max(bmax, b)
		}
		out = append(out, stepTimes{ContextFrom: max(lo, ctx), ContextTo: min(hi, prefill+j+1), Steps: j - i,
			Median: med, Min: ts[0], TokensPerSec: 1 / med, ErrorBoundMax: reportBound(bmax)})
		i = j
	}
	return out
}
