package fastattn

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/parallel/polltest"
)

// BenchmarkCertifiedDecode times one decode step of a grouped-query model
// (8 query heads, 2 key/value heads, 1 query, d = e = 128, float32 and
// float64) through Attend, which certifies its result (key statistics,
// value column maxima, the a priori bound), against AttendInto, which does
// not; the difference is the certification's cost outside the kernel.
// "float16-kv" does the same with float16 keys and values (AttendHalfKV
// against AttendHalfKVInto), and "float16" and "bfloat16" with the
// queries and the output in 16 bits too (AttendHalf against
// AttendHalfInto).
func BenchmarkCertifiedDecode(b *testing.B) {
	b.Run("float32", func(b *testing.B) { benchCertifiedDecode[float32](b) })
	b.Run("float64", func(b *testing.B) { benchCertifiedDecode[float64](b) })
	b.Run("float16-kv", func(b *testing.B) { benchCertifiedDecodeHalf(b, Float16) })
	b.Run("float16", func(b *testing.B) { benchCertifiedDecodeHalfQO(b, Float16) })
	b.Run("bfloat16", func(b *testing.B) { benchCertifiedDecodeHalfQO(b, BFloat16) })
}

// benchCertifiedDecodeHalfQO is benchCertifiedDecode with the queries,
// keys, values and output in format f (AttendHalf against AttendHalfInto).
func benchCertifiedDecodeHalfQO(b *testing.B, f HalfFormat) {
	for _, m := range []int{4096, 32768} {
		const hq, hkv, d = 8, 2, 128
		r := rand.New(rand.NewPCG(1, 2))
		half := func(heads, rows int) HalfTensor { return randomHalf(r, f, heads, rows, d) }
		q, k, v, out := half(hq, 1), half(hkv, m), half(hkv, m), half(hq, 1)
		ctx := context.Background()
		b.Run(fmt.Sprintf("m=%d/AttendHalf", m), func(b *testing.B) {
			for b.Loop() {
				if _, err := AttendHalf(ctx, q, k, v, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("m=%d/AttendHalfInto", m), func(b *testing.B) {
			ws := NewWorkspace()
			for b.Loop() {
				if err := AttendHalfInto(ctx, ws, out, nil, q, k, v, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchCertifiedDecodeHalf is benchCertifiedDecode with float16 or
// bfloat16 keys and values (AttendHalfKV against AttendHalfKVInto).
func benchCertifiedDecodeHalf(b *testing.B, f HalfFormat) {
	for _, m := range []int{4096, 32768} {
		const hq, hkv, d = 8, 2, 128
		r := rand.New(rand.NewPCG(1, 2))
		q := make([]float32, hq*d)
		for i := range q {
			q[i] = float32(r.NormFloat64())
		}
		qt, _ := NewTensor(q, 1, hq, 1, d)
		k, v := randomHalf(r, f, hkv, m, d), randomHalf(r, f, hkv, m, d)
		out, _ := NewTensor(make([]float32, hq*d), 1, hq, 1, d)
		ctx := context.Background()
		b.Run(fmt.Sprintf("m=%d/AttendHalfKV", m), func(b *testing.B) {
			for b.Loop() {
				if _, err := AttendHalfKV(ctx, qt, k, v, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("m=%d/AttendHalfKVInto", m), func(b *testing.B) {
			ws := NewWorkspace()
			for b.Loop() {
				if err := AttendHalfKVInto(ctx, ws, out, nil, qt, k, v, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchCertifiedDecode[T Float](b *testing.B) {
	for _, m := range []int{4096, 32768} {
		const hq, hkv, d = 8, 2, 128
		r := rand.New(rand.NewPCG(1, 2))
		rnd := func(n int) []T {
			x := make([]T, n)
			for i := range x {
				x[i] = T(r.NormFloat64())
			}
			return x
		}
		q, _ := NewTensor(rnd(hq*d), 1, hq, 1, d)
		k, _ := NewTensor(rnd(hkv*m*d), 1, hkv, m, d)
		v, _ := NewTensor(rnd(hkv*m*d), 1, hkv, m, d)
		out, _ := NewTensor(make([]T, hq*d), 1, hq, 1, d)
		ctx := context.Background()
		b.Run(fmt.Sprintf("m=%d/Attend", m), func(b *testing.B) {
			for b.Loop() {
				if _, err := Attend(ctx, q, k, v, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("m=%d/AttendInto", m), func(b *testing.B) {
			ws := NewWorkspace()
			for b.Loop() {
				if err := AttendInto(ctx, ws, out, nil, q, k, v, Options{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// randomHalf returns a [1, heads, rows, d] tensor of standard normal
// values rounded to format f.
func randomHalf(r *rand.Rand, f HalfFormat, heads, rows, d int) HalfTensor {
	x := make([]uint16, heads*rows*d)
	for i := range x {
		x[i] = attn.Float32ToHalf(f, float32(r.NormFloat64()))
	}
	return HalfTensor{Data: x, Shape: []int{1, heads, rows, d}, Format: f}
}

// BenchmarkWorkerPoll times decoding steps through AttendInto (8 query
// heads, 2 key/value heads, 1 query, d = e = 128, float32, 4096 keys),
// each after 300 us of other work on the calling goroutine (a model's
// products between two attention calls), with the default poll and with
// SetWorkerPoll(1 ms), the two alternating in runs of 20 steps (the first
// 4 untimed). It reports each one's median step and their ratio.
func BenchmarkWorkerPoll(b *testing.B) {
	const hq, hkv, m, d = 8, 2, 4096, 128
	r := rand.New(rand.NewPCG(3, 4))
	tensor := func(heads, rows int) Tensor[float32] {
		x := make([]float32, heads*rows*d)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		t, _ := NewTensor(x, 1, heads, rows, d)
		return t
	}
	q, k, v, out := tensor(hq, 1), tensor(hkv, m), tensor(hkv, m), tensor(hq, 1)
	ws, ctx := NewWorkspace(), context.Background()
	def := SetWorkerPoll(0)
	SetWorkerPoll(def)
	med := polltest.Medians(b, []time.Duration{def, time.Millisecond}, 300*time.Microsecond, 20, 4, func() {
		if err := AttendInto(ctx, ws, out, nil, q, k, v, Options{}); err != nil {
			b.Fatal(err)
		}
	})
	short, long := med[0], med[1]
	b.ReportMetric(short*1e6, "us-default")
	b.ReportMetric(long*1e6, "us-poll-1ms")
	b.ReportMetric(long/short, "1ms/default")
}
