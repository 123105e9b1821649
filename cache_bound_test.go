package fastattn

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fastattn/fastattn/attn"
)

// TestCacheExactBound: an exact cache reports the a priori bound of its
// arithmetic, and every row of every step stays within it, on streams
// made to stress it: keys sharing an offset (the Decoder does not centre
// them), large logits, grouped heads with sinks and windows, 16-bit
// storage; values beyond float32's unscaled range report no bound (+Inf).
func TestCacheExactBound(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	for _, c := range []struct {
		name   string
		amp    float64 // queries and keys in [-amp, amp]
		offset float64 // added to every key
		kv     HalfFormat
		window bool
	}{
		{"plain", 1, 0, attn.NoHalf, false},
		{"offset-100", 1, 100, attn.NoHalf, false},
		{"offset-3000", 1, 3000, attn.NoHalf, true},
		{"large-logits", 6, 0, attn.NoHalf, false},
		{"float16", 2, 30, Float16, true},
		{"bfloat16", 2, 30, BFloat16, false},
	} {
		opts := CacheOptions{QueryHeads: 4, Method: "exact", KVFormat: c.kv, Sinks: []float64{0, 1, -1, 3}, Workers: 2}
		if c.window {
			opts.Window = &Window{Left: 150, Right: 0}
		}
		t.Run(c.name+"/float32", func(t *testing.T) { checkExactBound[float32](t, r, c.amp, c.offset, opts) })
		if c.kv == attn.NoHalf {
			t.Run(c.name+"/float64", func(t *testing.T) { checkExactBound[float64](t, r, c.amp, c.offset, opts) })
		}
	}
	// Values beyond float32's unscaled range: no bound.
	s := newSeqData[float32](r, 1, 2, 1, 40, 4, 3, false, 1)
	for i := range s.v {
		s.v[i] *= 1e36
	}
	cache, err := NewCache[float32](1, 1, 4, 3, CacheOptions{QueryHeads: 2, Method: "exact"})
	if err != nil {
		t.Fatal(err)
	}
	q, _ := s.slice(s.q, 2, 4, 0, 40)
	k, _ := s.slice(s.k, 1, 4, 0, 40)
	v, _ := s.slice(s.v, 1, 3, 0, 40)
	if res, err := cache.Forward(t.Context(), q, k, v); err == nil && !math.IsInf(res.Report.ErrorBound, 1) {
		t.Errorf("values of 1e36 in float32: bound %g, want +Inf", res.Report.ErrorBound)
	}
}

// checkExactBound feeds a ragged stream of 2 sequences (4 query heads on
// 2 key/value heads, d = 8) through an exact cache, a prefill of 300 then
// one token per step, and checks every row against the float64 reference
// within the bound each step reports (and nothing else).
func checkExactBound[T Float](t *testing.T, r *rand.Rand, amp, offset float64, opts CacheOptions) {
	s := newSeqData[T](r, 2, 4, 2, 700, 8, 5, true, amp)
	for i := range s.k {
		s.k[i] += T(offset)
	}
	if f := opts.KVFormat; f != attn.NoHalf {
		// The reference sees the keys and values the cache stores.
		for _, x := range [][]T{s.k, s.v} {
			for i, y := range x {
				x[i] = T(attn.HalfToFloat32(f, attn.Float32ToHalf(f, float32(y))))
			}
		}
	}
	opts.Scale = 1 / math.Sqrt(8)
	cache, err := NewCache[T](2, 2, 8, 5, opts)
	if err != nil {
		t.Fatal(err)
	}
	st := feed(t, cache, s, 300, 1, 0)
	if !(st.ErrorBound > 0 && !math.IsInf(st.ErrorBound, 0)) {
		t.Errorf("largest reported bound %g", st.ErrorBound)
	}
	t.Logf("largest reported bound %.3g", st.ErrorBound)
}
