package fastattn

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
	"github.com/fastattn/fastattn/internal/check"
	"github.com/fastattn/fastattn/internal/reference"
)

// The adversarial suite of the error contract: the inputs that broke
// reported bounds before (issue "every bound the library reports is
// true") and their families, for every method and auto, both dtypes. Every
// reported bound must hold against package accurate's reference (within a
// few units of float64 rounding whatever the logits), every output must be
// finite, and auto must return a result within eps or an error saying no
// method can certify it. -v prints counts and the worst ratios; -adversarial.large
// runs bigger sizes.
var adversarialLarge = flag.Bool("adversarial.large", false, "run the adversarial suite on larger inputs")

// advCase is one input family member, generated in float64.
type advCase struct {
	name    string
	n, m, d int
	scale   float64
	gen     func(r *rand.Rand, q, k, v []float64, n, m, d int)
	// sinks, when not nil, are Options.Sinks of the forward cases.
	sinks []float64
}

func normals(r *rand.Rand, x []float64, sigma, offset float64) {
	for i := range x {
		x[i] = offset + sigma*r.NormFloat64()
	}
}

// advCases returns the families: common key offsets 1e2..1e8 (packed and
// unpacked exact paths), one huge value on a far key, identical keys,
// values near the dtype's limits and subnormal, near-ties of the maximum
// at large logits, and large logits.
func advCases(f32 bool) []advCase {
	big := 1.7e308
	tiny := 1e-320
	if f32 {
		big, tiny = 3.4e38, 1e-45
	}
	sizes := []int{8, 256}
	if *adversarialLarge {
		sizes = append(sizes, 2000)
	}
	var cs []advCase
	for _, n := range sizes {
		for _, off := range []float64{1e2, 1e4, 1e6, 1e8} {
			cs = append(cs, advCase{name: fmt.Sprintf("offset=%g/n=%d", off, n), n: n, m: n, d: 4,
				gen: func(r *rand.Rand, q, k, v []float64, n, m, d int) {
					normals(r, q, 1, 0)
					normals(r, k, 1, off)
					normals(r, v, 1, 0)
				}})
		}
	}
	cs = append(cs,
		advCase{name: "offset=1e7/d=1/scale=0.1", n: 33, m: 33, d: 1, scale: 0.1,
			gen: func(r *rand.Rand, q, k, v []float64, n, m, d int) {
				normals(r, q, 1, 0)
				normals(r, k, 1, 1e7)
				normals(r, v, 1, 0)
			}},
		advCase{name: "huge-value-far-key", n: 1, m: 2, d: 1, scale: 1,
			gen: func(r *rand.Rand, q, k, v []float64, n, m, d int) {
				// The case: the far key (k = -8) holds the huge value.
				q[0], k[0], k[1] = 1, 8, -8
				v[0], v[1], v[2], v[3] = 0, 0, 1e6, 0
			}},
		advCase{name: "huge-value-far-key/m=300", n: 20, m: 300, d: 2, scale: 1,
			gen: func(r *rand.Rand, q, k, v []float64, n, m, d int) {
				normals(r, q, 1, 0)
				normals(r, k, 1, 0)
				normals(r, v, 1, 0)
				k[0], k[1], v[0] = 9, 9, 1e6
			}},
		advCase{name: "identical-keys", n: 40, m: 60, d: 3,
			gen: func(r *rand.Rand, q, k, v []float64, n, m, d int) {
				normals(r, q, 1, 0)
				normals(r, k[:d], 1, 0)
				for j := 1; j < m; j++ {
					copy(k[j*d:(j+1)*d], k[:d])
				}
				normals(r, v, 1, 0)
			}},
		advCase{name: "tiny-queries", n: 40, m: 60, d: 3,
			gen: func(r *rand.Rand, q, k, v []float64, n, m, d int) {
				// Every row's logit range is tiny: the lowest degrees,
				// whose intervals are narrow (the gradient differentiates
				// the polynomial).
				normals(r, q, 1e-6, 0)
				normals(r, k, 1, 0)
				normals(r, v, 1, 0)
			}},
		advCase{name: "values-near-max", n: 20, m: 30, d: 2,
			gen: func(r *rand.Rand, q, k, v []float64, n, m, d int) {
				normals(r, q, 1, 0)
				normals(r, k, 1, 0)
				for i := range v {
					v[i] = big * (0.5 + 0.5*r.Float64())
				}
			}},
		advCase{name: "values-near-max/m=2000", n: 10, m: 2000, d: 2,
			gen: func(r *rand.Rand, q, k, v []float64, n, m, d int) {
				normals(r, q, 1, 0)
				normals(r, k, 1, 0)
				for i := range v {
					v[i] = big / 1.7 * (2*r.Float64() - 1)
				}
			}},
		advCase{name: "subnormal-values", n: 20, m: 30, d: 2,
			gen: func(r *rand.Rand, q, k, v []float64, n, m, d int) {
				normals(r, q, 1, 0)
				normals(r, k, 1, 0)
				for i := range v {
					v[i] = tiny * float64(1+r.IntN(3))
				}
			}},
		advCase{name: "near-ties/large-logits", n: 16, m: 64, d: 2, scale: 1,
			gen: func(r *rand.Rand, q, k, v []float64, n, m, d int) {
				normals(r, q, 30, 0)
				normals(r, k, 30, 0)
				normals(r, v, 1, 0)
				// Keys 1 and 2 nearly tie key 0 for every query.
				for t := range d {
					k[d+t] = k[t] * (1 + 1e-7)
					k[2*d+t] = k[t] * (1 - 1e-7)
				}
			}},
		advCase{name: "large-logits", n: 32, m: 128, d: 2, scale: 1,
			gen: func(r *rand.Rand, q, k, v []float64, n, m, d int) {
				normals(r, q, 100, 0)
				normals(r, k, 100, 0)
				normals(r, v, 1, 0)
			}},
		// A sink weighed against logits as large as the keys' offset,
		// which the methods centre: the sink's logit is shifted by s q.c
		// in float64 arithmetic, whose rounding was not in their bounds
		// (float64 rows off by 6e-14 against bounds of 8e-15 at 1e4;
		// anytemp's by 6e-10 against 1e-10 at 1e6).
		sinkAmongOffsetLogits(1e4),
		sinkAmongOffsetLogits(1e6),
	)
	return cs
}

// sinkAmongOffsetLogits is a case whose keys are offset by off, with a
// sink of logit off and rows whose logits against the first key run from
// off - 3 to off + 3, so that the sink takes part in every row's weights.
func sinkAmongOffsetLogits(off float64) advCase {
	const scale = 0.5
	return advCase{name: fmt.Sprintf("sink-among-offset-logits/offset=%g", off), n: 32, m: 8, d: 4, scale: scale, sinks: []float64{off},
		gen: func(r *rand.Rand, q, k, v []float64, n, m, d int) {
			normals(r, k, 1, off)
			normals(r, v, 1, 0)
			for i := range n {
				qi := q[i*d : (i+1)*d]
				var dot float64
				for t := range qi {
					qi[t] = 1 + r.Float64()
					dot += qi[t] * k[t]
				}
				f := (off - 3 + 6*float64(i)/float64(n)) / scale / dot
				for t := range qi {
					qi[t] *= f
				}
			}
		}}
}

// advInputs generates case ci's inputs in T, with a loss gradient dOut of
// standard normal entries shaped like the output (two value columns).
func advInputs[T Float](c advCase, ci int) (q, k, v, dOut Tensor[T]) {
	r := rand.New(rand.NewPCG(uint64(ci), 5))
	q64, k64, v64 := make([]float64, c.n*c.d), make([]float64, c.m*c.d), make([]float64, c.m*2)
	c.gen(r, q64, k64, v64, c.n, c.m, c.d)
	do64 := make([]float64, c.n*2)
	normals(r, do64, 1, 0)
	conv := func(x []float64) []T {
		y := make([]T, len(x))
		for i, v := range x {
			y[i] = T(v)
		}
		return y
	}
	q, _ = NewTensor(conv(q64), c.n, c.d)
	k, _ = NewTensor(conv(k64), c.m, c.d)
	v, _ = NewTensor(conv(v64), c.m, 2)
	dOut, _ = NewTensor(conv(do64), c.n, 2)
	return q, k, v, dOut
}

// advStats collects one method's figures over the suite.
type advStats struct {
	runs, declined int
	worst          float64 // observed / bound
	worstCase      string
}

func (s *advStats) String() string {
	return fmt.Sprintf("%d runs, %d declined, worst observed/bound %.3g (%s)", s.runs, s.declined, s.worst, s.worstCase)
}

func runAdversarial[T Float](t *testing.T, f32 bool, stats map[string]*advStats) {
	epss := []float64{1e-3, 1e-5, 1e-10, 1e-12}
	if f32 {
		epss = []float64{1e-3, 1e-5, 1e-6}
	}
	methods := append(Methods(), Auto)
	ws := NewWorkspace()
	for ci, c := range advCases(f32) {
		q, k, v, _ := advInputs[T](c, ci)
		hotPathCase(t, ws, c, q, k, v, stats["AttendInto"])
		for _, eps := range epss {
			opts := Options{Scale: c.scale, Eps: eps, Sinks: c.sinks}
			p, _, err := problem(q, k, v, opts)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			for _, m := range methods {
				st := stats[m]
				st.runs++
				opts.Method = m
				res, err := Attend(context.Background(), q, k, v, opts)
				where := fmt.Sprintf("%s/%s/eps=%g/%s", c.name, attn.DTypeName[T](), eps, m)
				if err != nil {
					if !errors.Is(err, attn.ErrUnsupported) {
						t.Errorf("%s: %v", where, err)
					}
					st.declined++
					continue
				}
				if i := attn.FirstNonFinite(res.Out.Data); i >= 0 {
					t.Errorf("%s: non-finite output %v at %d from finite inputs", where, res.Out.Data[i], i)
					continue
				}
				b := res.Report.ErrorBound
				if !(b <= eps) {
					t.Errorf("%s: reported bound %.3g above eps %g", where, b, eps)
				}
				errs := attntest.AccurateErrors(p, res.Out.Data, res.LSE.Data)
				obs := errs.Out
				if !(obs <= b*(1+1e-9)+errs.OutRef) {
					t.Errorf("%s (ran %s): observed error %.3g above the reported bound %.3g", where, res.Report.Method, obs, b)
				}
				if lb := res.Report.LSEBound; !(errs.LSE <= lb*(1+1e-9)+errs.LSERef) {
					t.Errorf("%s (ran %s): log-sum-exps off by %.3g, above the reported bound %.3g", where, res.Report.Method, errs.LSE, lb)
				}
				if b > 0 && obs/b > st.worst {
					st.worst, st.worstCase = obs/b, where
				}
			}
		}
	}
}

// hotPathCase checks AttendInto's outputs and log-sum-exps against
// AttendIntoBounds (where they are finite: the uncentred float32 offsets
// give output bounds above 1, values near the limits +Inf).
func hotPathCase[T Float](t *testing.T, ws *Workspace, c advCase, q, k, v Tensor[T], st *advStats) {
	opts := Options{Scale: c.scale, Sinks: c.sinks}
	where := fmt.Sprintf("%s/%s/AttendInto", c.name, attn.DTypeName[T]())
	st.runs++
	b, err := AttendIntoBounds(context.Background(), q, k, v, opts)
	if err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	if math.IsInf(b.Output, 1) {
		// No bound: AttendInto may fail (values near the limits overflow
		// its sums) or lose digits (subnormal values).
		st.declined++
		return
	}
	out, _ := NewTensor(make([]T, c.n*2), c.n, 2)
	lse := make([]float64, c.n)
	if err := AttendInto(context.Background(), ws, out, lse, q, k, v, opts); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
	p, _, err := problem(q, k, v, opts)
	if err != nil {
		t.Fatal(err)
	}
	errs := attntest.AccurateErrors(p, out.Data, lse)
	if !(errs.Out <= b.Output*(1+1e-9)+errs.OutRef) {
		t.Errorf("%s: observed error %.3g above AttendIntoBounds' Output %.3g", where, errs.Out, b.Output)
	}
	if !(errs.LSE <= b.LSE*(1+1e-9)+errs.LSERef) {
		t.Errorf("%s: log-sum-exps off by %.3g, above AttendIntoBounds' LSE %.3g", where, errs.LSE, b.LSE)
	}
	if b.Output > 0 && errs.Out/b.Output > st.worst {
		st.worst, st.worstCase = errs.Out/b.Output, where
	}
}

// TestAdversarialBounds runs the suite; see advCases.
func TestAdversarialBounds(t *testing.T) {
	stats := map[string]*advStats{"AttendInto": {}}
	for _, m := range append(Methods(), Auto) {
		stats[m] = &advStats{}
	}
	t.Run("float64", func(t *testing.T) { runAdversarial[float64](t, false, stats) })
	t.Run("float32", func(t *testing.T) { runAdversarial[float32](t, true, stats) })
	for _, m := range append(Methods(), Auto, "AttendInto") {
		t.Logf("%s: %v", m, stats[m])
	}
}

// TestDeadline: every method stops soon after its context's deadline, in
// whichever phase it is (anytemp at d = 64 once built its monomial tables
// for seconds without looking). The allowance is generous (4 s past the
// deadline) so that a loaded machine does not fail it (anytemp overshot by
// 2.0 s at a load average of 25); the bug it guards against overshot by
// 7 s.
func TestDeadline(t *testing.T) {
	if testing.Short() {
		t.Skip("runs each method for up to a few seconds")
	}
	r := rand.New(rand.NewPCG(1, 1))
	n, d := 4096, 64
	x := func(k int) []float32 {
		y := make([]float32, k)
		for i := range y {
			y[i] = float32(r.NormFloat64())
		}
		return y
	}
	q, _ := NewTensor(x(n*d), n, d)
	k, _ := NewTensor(x(n*d), n, d)
	v, _ := NewTensor(x(n*d), n, d)
	dOut, _ := NewTensor(x(n*d), n, d)
	for _, m := range DifferentiableMethods() {
		// The backward pass alone, from a complete forward.
		res, err := Attend(context.Background(), q, k, v, Options{Method: m})
		if err != nil {
			t.Logf("%s: %v", m, err)
			continue
		}
		for _, dl := range []time.Duration{time.Millisecond, 50 * time.Millisecond} {
			checkDeadline(t, m+" backward", dl, func(ctx context.Context) error {
				_, err := Gradient(ctx, q, k, v, res, dOut, Options{Method: m})
				return err
			})
		}
	}
	for _, m := range Methods() {
		for _, dl := range []time.Duration{time.Millisecond, 20 * time.Millisecond, 200 * time.Millisecond} {
			checkDeadline(t, m, dl, func(ctx context.Context) error {
				_, err := Attend(ctx, q, k, v, Options{Method: m})
				return err
			})
		}
	}
}

// checkDeadline runs call with a context of deadline dl: it must succeed,
// decline, or stop with DeadlineExceeded within 4 s of the deadline.
func checkDeadline(t *testing.T, what string, dl time.Duration, call func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), dl)
	defer cancel()
	start := time.Now()
	err := call(ctx)
	over := time.Since(start) - dl
	t.Logf("%s, deadline %v: %v, returned %v after it", what, dl, err, over)
	if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, attn.ErrUnsupported) {
		t.Errorf("%s: %v", what, err)
	}
	if err != nil && over > 4*time.Second {
		t.Errorf("%s returned %v after a %v deadline", what, over, dl)
	}
}

// gradWorst is the worst gradient error of one method over the suite.
type gradWorst struct {
	rel   float64
	where string
}

// TestAdversarialGradients runs the gradient of every differentiable
// method, alone and through auto, on the suite's families in both dtypes,
// and measures it against the exact gradient (gradError): the error of
// each of dQ, dK and dV in units of the magnitude of the terms its entries
// sum. Exact attention must be within rounding; the approximate methods'
// figures are measured, not certified (see the README's error contract),
// and printed with -v.
func TestAdversarialGradients(t *testing.T) {
	stats := map[string]*gradWorst{}
	for _, f32 := range []bool{false, true} {
		for ci, c := range advCases(f32) {
			if c.n*c.m > 300*300 || c.name == "values-near-max" || c.name == "values-near-max/m=2000" || c.name == "subnormal-values" {
				// Large; or values whose gradient overflows (dK sums
				// dO.v_j of size |v|) or loses its digits (products of
				// subnormal values): the backward passes do not scale
				// the values as the forward passes do.
				continue
			}
			if f32 {
				gradientCase[float32](t, c, ci, []float64{1e-3, 1e-5}, stats)
			} else {
				gradientCase[float64](t, c, ci, []float64{1e-3, 1e-6, 1e-9, 1e-12}, stats)
			}
		}
	}
	for _, m := range append(DifferentiableMethods(), Auto) {
		if w := stats[m]; w != nil {
			t.Logf("%s: worst gradient error %.3g of the terms' magnitude (%s)", m, w.rel, w.where)
		}
		if w := stats[m+"/eps"]; w != nil {
			t.Logf("%s: worst gradient error / eps %.3g (%s)", m, w.rel, w.where)
		}
	}
}

func gradientCase[T Float](t *testing.T, c advCase, ci int, epss []float64, stats map[string]*gradWorst) {
	q, k, v, dOut := advInputs[T](c, ci)
	for _, eps := range epss {
		for _, m := range append(DifferentiableMethods(), Auto) {
			opts := Options{Scale: c.scale, Eps: eps, Method: m}
			where := fmt.Sprintf("%s/%s/eps=%g/%s", c.name, attn.DTypeName[T](), eps, m)
			_, g, err := ForwardBackward(context.Background(), q, k, v, dOut, opts)
			if err != nil {
				if !errors.Is(err, attn.ErrUnsupported) {
					t.Errorf("%s: %v", where, err)
				}
				continue
			}
			p, _, err := problem(q, k, v, opts)
			if err != nil {
				t.Fatal(err)
			}
			rel := gradError(p, dOut.Data, g)
			if w := stats[m]; w == nil || max(rel[0], rel[1], rel[2]) > w.rel {
				stats[m] = &gradWorst{max(rel[0], rel[1], rel[2]), fmt.Sprintf("%s: dQ %.2g dK %.2g dV %.2g", where, rel[0], rel[1], rel[2])}
			}
			if ratio := max(rel[0], rel[1], rel[2]) / eps; g.Report.Method != "exact" {
				key := g.Report.Method + "/eps"
				if w := stats[key]; w == nil || ratio > w.rel {
					stats[key] = &gradWorst{ratio, where}
				}
				if ratio > 10 {
					t.Errorf("%s: gradient error dQ %.3g dK %.3g dV %.3g of the terms' magnitude, above 10 eps", where, rel[0], rel[1], rel[2])
				}
			}
			if g.Report.Method == "exact" {
				// Rounding of the logits: u_T times their size (up to about
				// 1e4 in the large-logits family); in float64 the
				// log-sum-exp itself, of size |s q.k| up to 1e8 with the
				// key offsets, is stored to 1.5e-8 and P inherits that.
				tol := 1e-8
				if _, ok := any(T(0)).(float32); ok {
					tol = 5e-3
				}
				if max(rel[0], rel[1], rel[2]) > tol {
					t.Errorf("%s: exact gradient error dQ %.3g dK %.3g dV %.3g (unit: the magnitude of the terms)", where, rel[0], rel[1], rel[2])
				}
			}
		}
	}
}

// gradError returns, for dQ, dK and dV, max |G - G*| over the tensor
// divided by the largest magnitude of the terms its entries sum (for dQ,
// max s sum_j P_ij (|dO_i.v_j| + |Delta_i|) |k_jt|; see
// reference.Grad): the unit in which the gradient contract is stated.
// G* is computed on keys shifted by their mean (the gradient does not
// change; its rounding does), the magnitudes on the keys as given.
func gradError[T Float](p *attn.Problem[T], dO []T, g *Grads[T]) [3]float64 {
	sub, dO64 := check.CentredHead(p, dO, 0)
	want := reference.Gradient(sub, dO64)
	mag := reference.Gradient(p, dO)
	var out [3]float64
	for x, c := range []struct {
		got       []T
		want, mag []float64
	}{{g.DQ.Data, want.DQ, mag.MagQ}, {g.DK.Data, want.DK, mag.MagK}, {g.DV.Data, want.DV, mag.MagV}} {
		var e, u float64
		for i, w := range c.want {
			e = max(e, math.Abs(float64(c.got[i])-w))
			u = max(u, c.mag[i])
		}
		if e > 0 {
			out[x] = e / u
		}
	}
	return out
}
