package poly

import (
	"math"
	"math/rand/v2"
	"testing"
)

// sliceKeys is a KeySource over row-major keys and values.
type sliceKeys[T float32 | float64] struct {
	d, e int
	k, v []T
}

func (s *sliceKeys[T]) Len() int { return len(s.k) / s.d }
func (s *sliceKeys[T]) Key(j int, dst []float64) {
	for t := range s.d {
		dst[t] = float64(s.k[j*s.d+t])
	}
}
func (s *sliceKeys[T]) Value(j int) []T { return s.v[j*s.e : (j+1)*s.e] }

// refRow is softmax(s q.k_j) v_j over keys lo..hi-1 in float64 with the
// keys shifted by their first (softmax ignores the shift, rounding does
// not), and max_l |v_lc| over those keys per column.
func refRow[T float32 | float64](src *sliceKeys[T], q []T, scale float64, lo, hi int, sink float64) (out, colMax []float64) {
	d, e := src.d, src.e
	logits := make([]float64, hi-lo)
	m := sink
	for j := lo; j < hi; j++ {
		var x float64
		for t := range d {
			x += float64(q[t]) * (float64(src.k[j*d+t]) - float64(src.k[lo*d+t]))
		}
		logits[j-lo] = scale * x
		m = max(m, scale*x)
	}
	var qk0 float64
	for t := range d {
		qk0 += float64(q[t]) * float64(src.k[lo*d+t])
	}
	out, colMax = make([]float64, e), make([]float64, e)
	sum := math.Exp(sink - scale*qk0 - m)
	for j, x := range logits {
		w := math.Exp(x - m)
		sum += w
		for c, v := range src.Value(lo + j) {
			out[c] += w * float64(v)
			colMax[c] = max(colMax[c], math.Abs(float64(v)))
		}
	}
	for c := range out {
		out[c] /= sum
	}
	return out, colMax
}

// stream feeds keys, values and queries (heads query rows per token) one
// chunk at a time through a DecodeState and checks every row computed
// against the float64 reference and the step's bound. window < 0 is none.
type stream[T float32 | float64] struct {
	d, e, heads    int
	scale, eps     float64
	window, chunk  int
	sinks          []float64
	maxRank        int
	steps, rebuilt int
	fallbacks      int
	worst          float64 // largest error / bound
}

func (c *stream[T]) run(t *testing.T, keys, vals, qs []T) {
	t.Helper()
	d, e, H := c.d, c.e, c.heads
	ws, err := NewDecodeWorkspace[T](d, e, c.scale, c.eps, c.maxRank)
	if err != nil {
		t.Fatal(err)
	}
	st := NewDecodeState(ws)
	src := &sliceKeys[T]{d: d, e: e}
	L := len(keys) / d
	for p := 0; p < L; {
		n := min(c.chunk, L-p)
		if c.window >= 0 {
			n = 1
		}
		src.k, src.v = keys[:(p+n)*d], vals[:(p+n)*e]
		rows := &DecodeRows[T]{Q: make([]T, H*n*d), Out: make([]T, H*n*e), LSE: make([]float64, H*n),
			Heads: H, Stride: n, Sinks: c.sinks, Fallback: make([]bool, H*n)}
		for h := range H {
			for i := range n {
				copy(rows.Q[(h*n+i)*d:(h*n+i+1)*d], qs[((p+i)*H+h)*d:((p+i)*H+h+1)*d])
			}
		}
		lo := 0
		if c.window >= 0 {
			lo = max(0, p-c.window)
		}
		res, err := st.Step(src, lo, keys[p*d:(p+n)*d], vals[p*e:(p+n)*e], n, rows)
		if err != nil {
			t.Fatalf("token %d: %v", p, err)
		}
		c.steps++
		c.rebuilt += res.Rebuilds
		c.fallbacks += res.FallbackRows
		if res.PolyRows > 0 && !(res.Bound <= c.eps) {
			t.Fatalf("token %d: bound %g above eps %g (%+v)", p, res.Bound, c.eps, res)
		}
		for h := range H {
			for i := range n {
				x := h*n + i
				if rows.Fallback[x] {
					continue
				}
				sink := math.Inf(-1)
				if c.sinks != nil {
					sink = c.sinks[h]
				}
				want, colMax := refRow(src, rows.Q[x*d:(x+1)*d], c.scale, lo, p+i+1, sink)
				for col := range e {
					if colMax[col] == 0 {
						continue
					}
					err := math.Abs(float64(rows.Out[x*e+col])-want[col]) / colMax[col]
					c.worst = max(c.worst, err/res.Bound)
					if err > res.Bound {
						t.Fatalf("token %d head %d column %d: error %.3g above the bound %.3g (%+v)", p+i, h, col, err, res.Bound, res)
					}
				}
			}
		}
		p += n
	}
}

func uniform[T float32 | float64](r *rand.Rand, n int, a float64) []T {
	x := make([]T, n)
	for i := range x {
		x[i] = T(a * (2*r.Float64() - 1))
	}
	return x
}

func TestDecodeStateRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, c := range []struct {
		d, e, heads, L, window, chunk int
		sinks                         bool
	}{
		{4, 3, 1, 600, -1, 1, false},
		{4, 3, 2, 600, -1, 200, true},
		{3, 5, 4, 400, 50, 1, false},
		{6, 2, 1, 300, 7, 1, true},
	} {
		s := &stream[float64]{d: c.d, e: c.e, heads: c.heads, scale: 1 / float64(c.d), eps: 1e-3, window: c.window, chunk: c.chunk}
		if c.sinks {
			s.sinks = uniform[float64](r, c.heads, 2)
		}
		s.run(t, uniform[float64](r, c.L*c.d, 1), uniform[float64](r, c.L*c.e, 1), uniform[float64](r, c.L*c.heads*c.d, 1))
		s32 := &stream[float32]{d: c.d, e: c.e, heads: c.heads, scale: 1 / float64(c.d), eps: 1e-3, window: c.window, chunk: c.chunk, sinks: s.sinks}
		s32.run(t, uniform[float32](r, c.L*c.d, 1), uniform[float32](r, c.L*c.e, 1), uniform[float32](r, c.L*c.heads*c.d, 1))
		t.Logf("%+v: %d steps, %d rebuilds, %d fallback rows, worst error %.2g of the bound", c, s.steps, s.rebuilt, s.fallbacks, s.worst)
	}
}

// TestDecodeStateAdversarial: streams built to break a state that does not
// track its range: a far key arriving late, identical keys, norms
// alternating between huge and tiny, with and without a window.
func TestDecodeStateAdversarial(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	d, e, L := 4, 3, 400
	far := uniform[float64](r, L*d, 0.3)
	for t := range d {
		far[(L-20)*d+t] = 6 // one key far out, late
	}
	same := make([]float64, L*d)
	for j := range L {
		copy(same[j*d:(j+1)*d], []float64{0.5, -0.25, 1, 0})
	}
	alt := uniform[float64](r, L*d, 1)
	for j := 0; j < L; j += 2 {
		for t := range d {
			alt[j*d+t] *= 4
			alt[(j+1)*d+t] *= 1e-6
		}
	}
	for name, keys := range map[string][]float64{"far key late": far, "identical keys": same, "huge and tiny": alt} {
		for _, window := range []int{-1, 30} {
			for _, maxRank := range []int{0, 40} {
				s := &stream[float64]{d: d, e: e, heads: 2, scale: 0.5, eps: 1e-3, window: window, chunk: 1, maxRank: maxRank}
				s.run(t, keys, uniform[float64](r, L*e, 1), uniform[float64](r, L*2*d, 1))
				k32 := make([]float32, len(keys))
				for i, x := range keys {
					k32[i] = float32(x)
				}
				s32 := &stream[float32]{d: d, e: e, heads: 2, scale: 0.5, eps: 1e-3, window: window, chunk: 1, maxRank: maxRank}
				s32.run(t, k32, uniform[float32](r, L*e, 1), uniform[float32](r, L*2*d, 1))
				t.Logf("%s, window %d, max rank %d: %d rebuilds, %d fallback rows, worst error %.2g of the bound", name, window, maxRank, s.rebuilt, s.fallbacks, s.worst)
				if name == "far key late" && maxRank == 40 && s.fallbacks == 0 {
					t.Errorf("%s with max rank 40: no fallback", name)
				}
			}
		}
	}
}
