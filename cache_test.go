package fastattn

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fastattn/fastattn/attn"
)

// seqData is one test stream: per sequence b, L[b] tokens of Q
// (heads x L x d), K and V (kvHeads x L x d / e), stored as (B, H, Lmax, .).
type seqData[T Float] struct {
	B, H, Hkv, Lmax, d, e int
	L                     []int
	q, k, v               []T
}

func newSeqData[T Float](r *rand.Rand, B, H, Hkv, Lmax, d, e int, ragged bool, amp float64) *seqData[T] {
	s := &seqData[T]{B: B, H: H, Hkv: Hkv, Lmax: Lmax, d: d, e: e, L: make([]int, B)}
	for b := range B {
		s.L[b] = Lmax
		if ragged {
			s.L[b] = 1 + r.IntN(Lmax)
		}
	}
	fill := func(n int, a float64) []T {
		x := make([]T, n)
		for i := range x {
			x[i] = T(a * (2*r.Float64() - 1))
		}
		return x
	}
	s.q, s.k, s.v = fill(B*H*Lmax*d, amp), fill(B*Hkv*Lmax*d, amp), fill(B*Hkv*Lmax*e, 1)
	return s
}

// reference is row i of query head h of sequence b in float64: keys
// shifted by key 0 (softmax ignores the shift, a naive sum does not), and
// max_l |V_lc| over the keys the row sees.
func (s *seqData[T]) reference(b, h, i int, scale float64, lo int, sink float64) (out, colMax []float64) {
	d, e := s.d, s.e
	g := h / (s.H / s.Hkv)
	q := s.q[((b*s.H+h)*s.Lmax+i)*d:]
	key := func(j int) []T { return s.k[((b*s.Hkv+g)*s.Lmax+j)*d:] }
	val := func(j int) []T { return s.v[((b*s.Hkv+g)*s.Lmax+j)*e:] }
	// The sink's logit, shifted as the keys are.
	var qk float64
	for t := range d {
		qk += float64(q[t]) * float64(key(lo)[t])
	}
	sink -= scale * qk
	logits := make([]float64, i+1-lo)
	m := sink
	for j := lo; j <= i; j++ {
		var x float64
		for t := range d {
			x += float64(q[t]) * (float64(key(j)[t]) - float64(key(lo)[t]))
		}
		logits[j-lo] = scale * x
		m = max(m, logits[j-lo])
	}
	out, colMax = make([]float64, e), make([]float64, e)
	sum := math.Exp(sink - m)
	for j, x := range logits {
		w := math.Exp(x - m)
		sum += w
		for c := range e {
			out[c] += w * float64(val(lo + j)[c])
			colMax[c] = max(colMax[c], math.Abs(float64(val(lo + j)[c])))
		}
	}
	for c := range out {
		out[c] /= sum
	}
	return out, colMax
}

// slice returns tokens t0..t0+n-1 of every sequence as (B, H, n, w)
// tensors, and how many of them each sequence really has.
func (s *seqData[T]) slice(x []T, heads, w, t0, n int) (Tensor[T], []int) {
	out := make([]T, s.B*heads*n*w)
	counts := make([]int, s.B)
	for b := range s.B {
		counts[b] = min(max(s.L[b]-t0, 0), n)
		for h := range heads {
			for i := range counts[b] {
				copy(out[((b*heads+h)*n+i)*w:((b*heads+h)*n+i+1)*w], x[((b*heads+h)*s.Lmax+t0+i)*w:])
			}
		}
	}
	t, _ := NewTensor(out, s.B, heads, n, w)
	return t, counts
}

// feed runs the stream through c: a prefill of p tokens, then steps of
// step tokens, and checks every row against the reference, within the
// larger of tol (of max|V|) and the step's reported bound; it returns the
// counts summed and the largest bound.
func feed[T Float](t *testing.T, c *Cache[T], s *seqData[T], p, step int, tol float64) CacheStep {
	return feedRange(t, c, s, 0, s.Lmax, p, step, tol)
}

// feedRange is feed for tokens from..to-1, the cache holding the tokens
// before from.
func feedRange[T Float](t *testing.T, c *Cache[T], s *seqData[T], from, to, p, step int, tol float64) CacheStep {
	t.Helper()
	var total CacheStep
	for t0 := from; t0 < to; {
		n := step
		if t0 == from {
			n = p
		}
		n = min(n, to-t0)
		q, counts := s.slice(s.q, s.H, s.d, t0, n)
		k, _ := s.slice(s.k, s.Hkv, s.d, t0, n)
		v, _ := s.slice(s.v, s.Hkv, s.e, t0, n)
		res, err := c.ForwardRagged(context.Background(), q, k, v, counts)
		if err != nil {
			t.Fatalf("tokens %d..%d: %v", t0, t0+n, err)
		}
		det := res.Report.Details
		if det != nil {
			total.PolyRows += det["poly_rows"].(int)
			total.FallbackRows += det["fallback_rows"].(int)
			total.Rebuilds += det["rebuilds"].(int)
		}
		bound := max(tol, res.Report.ErrorBound)
		total.ErrorBound = max(total.ErrorBound, res.Report.ErrorBound)
		for b := range s.B {
			if c.Len(b) != min(s.L[b], t0+n) {
				t.Fatalf("sequence %d holds %d tokens, want %d", b, c.Len(b), min(s.L[b], t0+n))
			}
			for h := range s.H {
				for i := range n {
					o := res.Out.Data[((b*s.H+h)*n+i)*s.e:][:s.e]
					if i >= counts[b] {
						for _, x := range o {
							if x != 0 {
								t.Fatalf("padding row %d of sequence %d head %d is not zero", i, b, h)
							}
						}
						continue
					}
					sink := math.Inf(-1)
					if c.sinks != nil {
						sink = c.sinks[h]
					}
					want, colMax := s.reference(b, h, t0+i, c.scale, c.keyFrom(t0+i), sink)
					for col := range s.e {
						if err := math.Abs(float64(o[col]) - want[col]); err > bound*colMax[col] {
							t.Fatalf("token %d of sequence %d head %d column %d: %g, want %g (error %.3g of max|V|, bound %.3g, %s)",
								t0+i, b, h, col, o[col], want[col], err/colMax[col], bound, res.Report.Method)
						}
					}
				}
			}
		}
		t0 += n
	}
	return total
}

func TestCacheMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, c := range []struct {
		B, H, Hkv, L, d, e, prefill, step int
		ragged                            bool
		window                            int
		sinks                             bool
	}{
		{1, 1, 1, 300, 8, 4, 1, 1, false, -1, false},
		{2, 4, 2, 260, 5, 3, 100, 1, true, -1, true},
		{3, 6, 1, 700, 4, 6, 300, 7, true, -1, false},
		{1, 2, 2, 600, 16, 16, 1, 300, false, -1, false},
		{2, 4, 2, 500, 4, 3, 200, 1, true, 40, true},
		{1, 3, 1, 400, 3, 2, 1, 5, false, 0, false},
		{1, 2, 1, 300, 6, 2, 100, 50, false, 17, true},
	} {
		for _, method := range []string{"exact", "poly", "auto"} {
			name := fmt.Sprintf("%+v/%s", c, method)
			opts := CacheOptions{QueryHeads: c.H, Method: method, Scale: 1 / float64(c.d), Workers: 2}
			if c.window >= 0 {
				opts.Window = &Window{Left: c.window, Right: 0}
			}
			if c.sinks {
				for h := range c.H {
					opts.Sinks = append(opts.Sinks, float64(h)-1)
				}
			}
			t.Run(name+"/float64", func(t *testing.T) {
				cache, err := NewCache[float64](c.B, c.Hkv, c.d, c.e, opts)
				if err != nil {
					t.Fatal(err)
				}
				s := newSeqData[float64](r, c.B, c.H, c.Hkv, c.L, c.d, c.e, c.ragged, 1)
				st := feed(t, cache, s, c.prefill, c.step, 1e-12)
				t.Logf("poly rows %d, fallback rows %d, rebuilds %d", st.PolyRows, st.FallbackRows, st.Rebuilds)
			})
			t.Run(name+"/float32", func(t *testing.T) {
				cache, err := NewCache[float32](c.B, c.Hkv, c.d, c.e, opts)
				if err != nil {
					t.Fatal(err)
				}
				s := newSeqData[float32](r, c.B, c.H, c.Hkv, c.L, c.d, c.e, c.ragged, 1)
				feed(t, cache, s, c.prefill, c.step, 3e-6)
			})
		}
	}
}

// TestCacheTruncate: tokens of a rejected draft, dropped by Truncate, leave
// no trace; Reset empties the cache.
func TestCacheTruncate(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, method := range []string{"exact", "poly"} {
		t.Run(method, func(t *testing.T) {
			s := newSeqData[float64](r, 2, 2, 1, 400, 4, 3, false, 1)
			draft := newSeqData[float64](r, 2, 2, 1, 400, 4, 3, false, 1)
			c, err := NewCache[float64](2, 1, 4, 3, CacheOptions{QueryHeads: 2, Method: method})
			if err != nil {
				t.Fatal(err)
			}
			feedRange(t, c, s, 0, 150, 100, 1, 1e-12)
			// A draft of 20 tokens from another stream, rejected.
			q, _ := draft.slice(draft.q, 2, 4, 150, 20)
			k, _ := draft.slice(draft.k, 1, 4, 150, 20)
			v, _ := draft.slice(draft.v, 1, 3, 150, 20)
			if _, err := c.Forward(context.Background(), q, k, v); err != nil {
				t.Fatal(err)
			}
			if err := c.Truncate(0, 171); err == nil || c.Len(0) != 170 {
				t.Fatalf("dropping 171 tokens of 170 gave %v, length %d", err, c.Len(0))
			}
			if err := c.Truncate(-1, 20); err != nil {
				t.Fatal(err)
			}
			feedRange(t, c, s, 150, 400, 1, 3, 1e-12)
			c.Reset()
			if c.Len(0) != 0 || c.Len(1) != 0 {
				t.Fatalf("lengths %d, %d after Reset", c.Len(0), c.Len(1))
			}
			feedRange(t, c, s, 0, 100, 10, 1, 1e-12)
		})
	}
}

// TestCacheAutoSwitches: "auto" runs exact attention on a short context and
// the polynomial state on a long one, within the guarantee throughout.
func TestCacheAutoSwitches(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	s := newSeqData[float64](r, 1, 1, 1, 3000, 2, 2, false, 1)
	c, err := NewCache[float64](1, 1, 2, 2, CacheOptions{Method: Auto, Scale: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	st := feed(t, c, s, 1, 1, 1e-12)
	if st.PolyRows == 0 || st.PolyRows == 3000 {
		t.Fatalf("auto computed %d of 3000 rows by the polynomial state; want some but not all", st.PolyRows)
	}
}

// TestCacheStepAllocatesNothing: an exact decoding step into caller-owned
// buffers allocates nothing when the cache has room.
func TestCacheStepAllocatesNothing(t *testing.T) {
	if cacheRaceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	r := rand.New(rand.NewPCG(11, 12))
	s := newSeqData[float32](r, 2, 8, 2, 4000, 64, 64, false, 1)
	for _, f := range []HalfFormat{attn.NoHalf, BFloat16} {
		c, err := NewCache[float32](2, 2, 64, 64, CacheOptions{QueryHeads: 8, Capacity: 5000, KVFormat: f})
		if err != nil {
			t.Fatal(err)
		}
		q, _ := s.slice(s.q, 8, 64, 0, 3000)
		k, _ := s.slice(s.k, 2, 64, 0, 3000)
		v, _ := s.slice(s.v, 2, 64, 0, 3000)
		if _, err := c.Forward(context.Background(), q, k, v); err != nil {
			t.Fatal(err)
		}
		q, _ = s.slice(s.q, 8, 64, 3000, 1)
		k, _ = s.slice(s.k, 2, 64, 3000, 1)
		v, _ = s.slice(s.v, 2, 64, 3000, 1)
		out, lse := make([]float32, 2*8*64), make([]float64, 2*8)
		ctx := context.Background()
		if n := testing.AllocsPerRun(50, func() {
			if _, err := c.Step(ctx, out, lse, q, k, v, nil); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Fatalf("%v storage: a decoding step allocated %v times", f, n)
		}
	}
}

// TestCacheEqualsOneShot: prefill and decoding through the cache give the
// one-shot causal forward (Attend) of the whole sequence, with GQA, a
// window and sinks: exactly up to float rounding, and poly within its
// bound.
func TestCacheEqualsOneShot(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	compared := 0
	allSinks := []float64{-1, 0, 1, math.Inf(-1)}
	for _, c := range []struct{ B, H, Hkv, L, d, e int }{{2, 4, 2, 333, 8, 5}, {2, 3, 3, 300, 6, 4}} {
		s := newSeqData[float32](r, c.B, c.H, c.Hkv, c.L, c.d, c.e, false, 1)
		q, _ := NewTensor(s.q, c.B, c.H, c.L, c.d)
		k, _ := NewTensor(s.k, c.B, c.Hkv, c.L, c.d)
		v, _ := NewTensor(s.v, c.B, c.Hkv, c.L, c.e)
		for _, method := range []string{"exact", "poly"} {
			for _, window := range []*Window{nil, {Left: 30, Right: 0}} {
				for _, sinks := range [][]float64{nil, allSinks[:c.H]} {
					opts := Options{Causal: true, Window: window, Sinks: sinks, Scale: 0.2}
					want, err := Attend(context.Background(), q, k, v, opts)
					if errors.Is(err, ErrUnsupported) {
						// The reference test covers this case.
						t.Logf("%+v window %v sinks %v: the one-shot forward declines: %v", c, window, sinks, err)
						continue
					}
					if err != nil {
						t.Fatal(err)
					}
					cache, err := NewCache[float32](c.B, c.Hkv, c.d, c.e, CacheOptions{QueryHeads: c.H, Window: window, Sinks: sinks, Scale: 0.2, Method: method})
					if err != nil {
						t.Fatal(err)
					}
					compared++
					for t0, n := 0, 100; t0 < c.L; t0, n = t0+n, 1+r.IntN(3) {
						n = min(n, c.L-t0)
						qs, _ := s.slice(s.q, c.H, c.d, t0, n)
						ks, _ := s.slice(s.k, c.Hkv, c.d, t0, n)
						vs, _ := s.slice(s.v, c.Hkv, c.e, t0, n)
						res, err := cache.Forward(context.Background(), qs, ks, vs)
						if err != nil {
							t.Fatal(err)
						}
						tol := 2e-6 + res.Report.ErrorBound // max|V| <= 1
						for bh := range c.B * c.H {
							for i := range n {
								for col := range c.e {
									got := res.Out.Data[(bh*n+i)*c.e+col]
									w := want.Out.Data[(bh*c.L+t0+i)*c.e+col]
									if math.Abs(float64(got-w)) > tol {
										t.Fatalf("%s window %v: head %d token %d column %d: %g, one-shot %g", method, window, bh, t0+i, col, got, w)
									}
								}
								if method == "exact" {
									if gl, wl := res.LSE.Data[bh*n+i], want.LSE.Data[bh*c.L+t0+i]; math.Abs(gl-wl) > 1e-5*(1+math.Abs(wl)) {
										t.Fatalf("window %v: head %d token %d: LSE %g, one-shot %g", window, bh, t0+i, gl, wl)
									}
								}
							}
						}
					}
				}
			}
		}
	}
	if compared == 0 {
		t.Fatal("the one-shot forward declined every case")
	}
}

// TestCacheAppend: keys appended without queries (a prompt whose outputs
// are not needed) serve the following steps as if they had been attended.
func TestCacheAppend(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for _, method := range []string{"exact", "poly"} {
		for _, window := range []*Window{nil, {Left: 50, Right: 0}} {
			s := newSeqData[float64](r, 2, 2, 1, 700, 4, 3, false, 1)
			c, err := NewCache[float64](2, 1, 4, 3, CacheOptions{QueryHeads: 2, Method: method, Window: window})
			if err != nil {
				t.Fatal(err)
			}
			feedRange(t, c, s, 0, 10, 10, 1, 1e-12) // builds the polynomial state
			for _, part := range [][2]int{{10, 300}, {300, 301}, {301, 600}} {
				k, _ := s.slice(s.k, 1, 4, part[0], part[1]-part[0])
				v, _ := s.slice(s.v, 1, 3, part[0], part[1]-part[0])
				if err := c.Append(k, v, nil); err != nil {
					t.Fatal(err)
				}
			}
			st := feedRange(t, c, s, 600, 700, 1, 1, 1e-12)
			// The appended keys widen the range, which may call for one
			// rebuild per head, not one per step.
			if method == "poly" && st.Rebuilds > 2 {
				t.Errorf("window %v: %d rebuilds in 100 steps after appending to a built state", window, st.Rebuilds)
			}
		}
	}
}

// TestCachePolyFallback: a far key arriving late pushes the range beyond
// what the polynomial certifies; those steps are computed exactly, the
// statistics say so, and every output stays within the guarantee.
func TestCachePolyFallback(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	for _, window := range []*Window{nil, {Left: 40, Right: 0}} {
		s := newSeqData[float32](r, 1, 2, 1, 400, 4, 3, false, 0.5)
		for t := range 4 {
			s.k[300*4+t] = 30 // one key far out
		}
		c, err := NewCache[float32](1, 1, 4, 3, CacheOptions{QueryHeads: 2, Method: "poly", Scale: 0.5, Window: window})
		if err != nil {
			t.Fatal(err)
		}
		st := feed(t, c, s, 100, 1, 3e-6)
		if st.FallbackRows == 0 || st.PolyRows == 0 {
			t.Fatalf("window %v: %d fallback rows, %d poly rows; want both", window, st.FallbackRows, st.PolyRows)
		}
		t.Logf("window %v: %d poly rows, %d fallback rows, %d rebuilds", window, st.PolyRows, st.FallbackRows, st.Rebuilds)
	}
}

// TestCacheHalfKV: float16 and bfloat16 storage gives attention over the
// stored (rounded) keys and values, exactly and through the polynomial
// state, with GQA, a window and sinks.
func TestCacheHalfKV(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	for _, f := range []HalfFormat{Float16, BFloat16} {
		for _, method := range []string{"exact", "poly"} {
			s := newSeqData[float32](r, 2, 4, 2, 400, 6, 5, true, 1)
			// The reference sees the values the cache stores.
			for _, x := range [][]float32{s.k, s.v} {
				for i, v := range x {
					x[i] = attn.HalfToFloat32(f, attn.Float32ToHalf(f, v))
				}
			}
			c, err := NewCache[float32](2, 2, 6, 5, CacheOptions{QueryHeads: 4, Method: method, KVFormat: f,
				Window: &Window{Left: 100, Right: 0}, Sinks: []float64{0, 1, -1, 2}})
			if err != nil {
				t.Fatal(err)
			}
			feed(t, c, s, 150, 1, 3e-6)
		}
	}
	// Unrounded inputs: the cache rounds them as stored.
	s := newSeqData[float32](r, 1, 2, 1, 300, 4, 3, false, 1)
	c16, _ := NewCache[float32](1, 1, 4, 3, CacheOptions{QueryHeads: 2, KVFormat: Float16})
	c32, _ := NewCache[float32](1, 1, 4, 3, CacheOptions{QueryHeads: 2})
	q, _ := s.slice(s.q, 2, 4, 0, 300)
	k, _ := s.slice(s.k, 1, 4, 0, 300)
	v, _ := s.slice(s.v, 1, 3, 0, 300)
	got, err := c16.Forward(context.Background(), q, k, v)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range [][]float32{k.Data, v.Data} {
		for i, y := range x {
			x[i] = attn.HalfToFloat32(Float16, attn.Float32ToHalf(Float16, y))
		}
	}
	want, _ := c32.Forward(context.Background(), q, k, v)
	for i := range want.Out.Data {
		if math.Abs(float64(got.Out.Data[i]-want.Out.Data[i])) > 1e-6 {
			t.Fatalf("float16 storage of unrounded inputs: entry %d = %g, with rounded float32 inputs %g", i, got.Out.Data[i], want.Out.Data[i])
		}
	}
	if got.Report.KVFormat != "float16" {
		t.Fatalf("report kv_format %q", got.Report.KVFormat)
	}
	if _, err := NewCache[float64](1, 1, 4, 4, CacheOptions{KVFormat: Float16}); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("a float64 cache with float16 storage: %v", err)
	}
}
