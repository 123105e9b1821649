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
	"github.com/fastattn/fastattn/internal/accurate"
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
				q[0], k[0], k[1], v[0], v[1] = 1, 8, -8, 0, 1e6
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
	)
	return cs
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

// observedError is max |O - ref| / max_l |V_lc| over every row and column,
// with package accurate's reference, and that reference's own error.
func observedError[T Float](p *attn.Problem[T], out []T) (float64, float64) {
	var worst, refErr float64
	ref := make([]float64, p.E)
	for h := range p.Heads {
		colMax := attn.ColumnMaxAbs(p, h, p.KeyLen(h))
		for i := range p.N {
			accurate.Row(p, h, i, ref)
			refErr = max(refErr, accurate.Error(p.KeyLimit(h, i)))
			for c := range p.E {
				if colMax[c] > 0 {
					e := math.Abs(float64(out[(h*p.N+i)*p.E+c])-ref[c]) / colMax[c]
					refErr = max(refErr, 0x1p-1075/colMax[c])
					if math.IsNaN(e) {
						e = math.Inf(1)
					}
					worst = max(worst, e)
				}
			}
		}
	}
	return worst, refErr
}

func runAdversarial[T Float](t *testing.T, f32 bool, stats map[string]*advStats) {
	epss := []float64{1e-3, 1e-5, 1e-10, 1e-12}
	if f32 {
		epss = []float64{1e-3, 1e-5, 1e-6}
	}
	methods := append(Methods(), Auto)
	for ci, c := range advCases(f32) {
		r := rand.New(rand.NewPCG(uint64(ci), 5))
		q64, k64, v64 := make([]float64, c.n*c.d), make([]float64, c.m*c.d), make([]float64, c.m*2)
		c.gen(r, q64, k64, v64, c.n, c.m, c.d)
		conv := func(x []float64) []T {
			y := make([]T, len(x))
			for i, v := range x {
				y[i] = T(v)
			}
			return y
		}
		q, _ := NewTensor(conv(q64), c.n, c.d)
		k, _ := NewTensor(conv(k64), c.m, c.d)
		v, _ := NewTensor(conv(v64), c.m, 2)
		for _, eps := range epss {
			opts := Options{Scale: c.scale, Eps: eps}
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
				obs, refErr := observedError(p, res.Out.Data)
				if !(obs <= b*(1+1e-9)+refErr) {
					t.Errorf("%s (ran %s): observed error %.3g above the reported bound %.3g", where, res.Report.Method, obs, b)
				}
				if b > 0 && obs/b > st.worst {
					st.worst, st.worstCase = obs/b, where
				}
			}
		}
	}
}

// TestAdversarialBounds runs the suite; see advCases.
func TestAdversarialBounds(t *testing.T) {
	stats := map[string]*advStats{}
	for _, m := range append(Methods(), Auto) {
		stats[m] = &advStats{}
	}
	t.Run("float64", func(t *testing.T) { runAdversarial[float64](t, false, stats) })
	t.Run("float32", func(t *testing.T) { runAdversarial[float32](t, true, stats) })
	for _, m := range append(Methods(), Auto) {
		t.Logf("%s: %v", m, stats[m])
	}
}

// TestDeadline: every method stops soon after its context's deadline, in
// whichever phase it is (anytemp at d = 64 once built its monomial tables
// for seconds without looking). The allowance is generous (2 s past the
// deadline) so that a loaded machine does not fail it; the bug it guards
// against overshot by 7 s.
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
	for _, m := range Methods() {
		for _, dl := range []time.Duration{time.Millisecond, 20 * time.Millisecond, 200 * time.Millisecond} {
			ctx, cancel := context.WithTimeout(context.Background(), dl)
			start := time.Now()
			_, err := Attend(ctx, q, k, v, Options{Method: m})
			over := time.Since(start) - dl
			cancel()
			t.Logf("%s, deadline %v: %v, returned %v after it", m, dl, err, over)
			if err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, attn.ErrUnsupported) {
				t.Errorf("%s: %v", m, err)
			}
			if err != nil && over > 2*time.Second {
				t.Errorf("%s returned %v after a %v deadline", m, over, dl)
			}
		}
	}
}
