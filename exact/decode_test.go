package exact

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/fastattn/fastattn/attn"
)

// decodeReference is row r of u in float64, the obvious way: keys shifted
// by the row's largest logit, plus the sink.
func decodeReference[T float32 | float64](u *DecodeUnit[T], r int, scale float64) ([]float64, float64) {
	kv := u.Keys
	key := make([]float64, kv.D)
	logits := make([]float64, 0, u.Hi[r]-u.Lo[r])
	m := math.Inf(-1)
	if u.Sinks != nil {
		m = u.Sinks[r]
	}
	for j := u.Lo[r]; j < u.Hi[r]; j++ {
		kv.Key(j, key)
		var x float64
		for t := range kv.D {
			x += float64(u.Q[r*kv.D+t]) * key[t]
		}
		logits = append(logits, scale*x)
		m = max(m, scale*x)
	}
	out := make([]float64, kv.E)
	var sum float64
	if u.Sinks != nil {
		sum = math.Exp(u.Sinks[r] - m)
	}
	for i, x := range logits {
		w := math.Exp(x - m)
		sum += w
		for c, v := range kv.Value(u.Lo[r] + i) {
			out[c] += w * float64(v)
		}
	}
	if sum == 0 {
		return out, math.Inf(-1)
	}
	for c := range out {
		out[c] /= sum
	}
	return out, m + math.Log(sum)
}

func randomUnits[T float32 | float64](rng *rand.Rand, units, keys, rows, d, e int, sinks bool) []DecodeUnit[T] {
	return randomUnitsIn(rng, units, keys, rows, d, e, sinks, func() *DecodeKeys[T] { return NewDecodeKeys[T](d, e) })
}

// randomUnitsIn is randomUnits with the stores newKeys returns.
func randomUnitsIn[T float32 | float64](rng *rand.Rand, units, keys, rows, d, e int, sinks bool, newKeys func() *DecodeKeys[T]) []DecodeUnit[T] {
	us := make([]DecodeUnit[T], units)
	for i := range us {
		kv := newKeys()
		k, v := make([]T, d), make([]T, e)
		for range keys + rng.IntN(keys+1) {
			for t := range k {
				k[t] = T(rng.NormFloat64())
			}
			for t := range v {
				v[t] = T(rng.NormFloat64())
			}
			kv.Append(k, v)
		}
		u := DecodeUnit[T]{Keys: kv, Rows: rows, Q: make([]T, rows*d), Out: make([]T, rows*e), LSE: make([]float64, rows),
			Lo: make([]int, rows), Hi: make([]int, rows)}
		for t := range u.Q {
			u.Q[t] = T(rng.NormFloat64() * 2)
		}
		for r := range rows {
			u.Hi[r] = rng.IntN(kv.Len() + 1)
			if rng.IntN(3) == 0 {
				u.Hi[r] = kv.Len()
			}
			if rng.IntN(2) == 0 {
				u.Lo[r] = rng.IntN(u.Hi[r] + 1)
			}
		}
		if sinks {
			u.Sinks = make([]float64, rows)
			for r := range u.Sinks {
				u.Sinks[r] = rng.NormFloat64() * 3
			}
		}
		us[i] = u
	}
	return us
}

func checkUnits[T float32 | float64](t *testing.T, us []DecodeUnit[T], scale, tol float64) {
	t.Helper()
	for i := range us {
		u := &us[i]
		for r := range u.Rows {
			want, lse := decodeReference(u, r, scale)
			if math.IsInf(lse, -1) != math.IsInf(u.LSE[r], -1) || (!math.IsInf(lse, -1) && math.Abs(lse-u.LSE[r]) > tol*(1+math.Abs(lse))) {
				t.Fatalf("unit %d row %d (keys [%d, %d)): LSE %g, want %g", i, r, u.Lo[r], u.Hi[r], u.LSE[r], lse)
			}
			for c, w := range want {
				if got := float64(u.Out[r*u.Keys.E+c]); math.Abs(got-w) > tol {
					t.Fatalf("unit %d row %d (keys [%d, %d)) column %d: %g, want %g", i, r, u.Lo[r], u.Hi[r], c, got, w)
				}
			}
		}
	}
}

func TestDecoderMatchesReference(t *testing.T) {
	old := splitMinKeys
	defer func() { splitMinKeys = old }()
	splitMinKeys = DecodeBlock // force split-K on small caches
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ units, keys, rows, d, e int }{
		{1, 1, 1, 3, 2}, {1, 700, 1, 16, 8}, {3, 1500, 4, 5, 7}, {2, 300, 100, 8, 8}, {1, 2000, 150, 64, 32},
		{2, 1100, 4, 128, 128}, // a GQA group of 4 query heads, d = e = 128
		{1, 900, 3, 80, 100},   // a value panel of 64 columns and one of 36
	} {
		for _, sinks := range []bool{false, true} {
			for _, workers := range []int{1, 3} {
				name := fmt.Sprintf("%+v/sinks=%v/workers=%d", c, sinks, workers)
				t.Run(name+"/float64", func(t *testing.T) {
					us := randomUnits[float64](rng, c.units, c.keys, c.rows, c.d, c.e, sinks)
					if err := NewDecoder[float64](workers).Attend(context.Background(), us, 0.3); err != nil {
						t.Fatal(err)
					}
					checkUnits(t, us, 0.3, 1e-12)
				})
				t.Run(name+"/float32", func(t *testing.T) {
					us := randomUnits[float32](rng, c.units, c.keys, c.rows, c.d, c.e, sinks)
					if err := NewDecoder[float32](workers).Attend(context.Background(), us, 0.3); err != nil {
						t.Fatal(err)
					}
					checkUnits(t, us, 0.3, 2e-5)
				})
				for _, f := range []attn.HalfFormat{attn.Float16, attn.BFloat16} {
					// The reference reads the stored (rounded) keys and values.
					t.Run(name+"/"+f.String(), func(t *testing.T) {
						us := randomUnitsIn(rng, c.units, c.keys, c.rows, c.d, c.e, sinks, func() *DecodeKeys[float32] { return NewDecodeKeysHalf(c.d, c.e, f) })
						if err := NewDecoder[float32](workers).Attend(context.Background(), us, 0.3); err != nil {
							t.Fatal(err)
						}
						checkUnits(t, us, 0.3, 2e-5)
					})
				}
			}
		}
	}
}

// TestDecoderAllocatesNothing: a decoding step reuses the Decoder's buffers
// and goroutines.
func TestDecoderAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumentation allocates")
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for _, f := range []attn.HalfFormat{attn.NoHalf, attn.Float16, attn.BFloat16} {
		// GQA rows (4 query heads per store) and a value width that is
		// not a multiple of the 16-bit stores' panels.
		us := randomUnitsIn(rng, 2, 5000, 4, 64, 72, false, func() *DecodeKeys[float32] {
			if f == attn.NoHalf {
				return NewDecodeKeys[float32](64, 72)
			}
			return NewDecodeKeysHalf(64, 72, f)
		})
		dec := NewDecoder[float32](2)
		ctx := context.Background()
		if err := dec.Attend(ctx, us, 0.125); err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(20, func() {
			if err := dec.Attend(ctx, us, 0.125); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Fatalf("%v store: a decoding step allocated %v times", f, n)
		}
	}
}

// TestFinishRow16 checks finishRow16 against finishRow into float32 and
// the rounding of each value on its own, for both 16-bit formats: values
// that round to subnormals, overflow float16 or are NaN, rows with a sink
// and rows with neither keys nor sink.
func TestFinishRow16(t *testing.T) {
	acc := []float64{1, -3.5, 0x1p-130, -0x1p-140, 1e5, 7e4, math.NaN(), math.Inf(1), 0.1, 1e-300}
	cases := []struct{ m, sum, sink float64 }{
		{0, 1, math.Inf(-1)}, {2, 3.25, math.Inf(-1)}, {1, 2, 0.5}, {1, 2, 40}, {0, 0, math.Inf(-1)}, {0, 0, 1},
	}
	for _, f := range []attn.HalfFormat{attn.Float16, attn.BFloat16} {
		for _, c := range cases {
			want32 := make([]float32, len(acc))
			wantLSE := finishRow(want32, acc, c.m, c.sum, c.sink)
			got := make([]uint16, len(acc))
			for x := range got {
				got[x] = 0xffff // must be overwritten
			}
			lse := finishRow16(got, f, acc, c.m, c.sum, c.sink)
			if lse != wantLSE && !(math.IsNaN(lse) && math.IsNaN(wantLSE)) {
				t.Errorf("%v %+v: LSE %g, finishRow's %g", f, c, lse, wantLSE)
			}
			for x, v := range want32 {
				if want := attn.Float32ToHalf(f, v); got[x] != want {
					t.Errorf("%v %+v: value %d is %#04x, want %#04x (%g rounded)", f, c, x, got[x], want, v)
				}
			}
		}
	}
}
