package exact

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/fastattn/fastattn/attn"

	"github.com/fastattn/fastattn/internal/kernels"
)

// BenchmarkDecodeStep times one query row against a cache of m keys
// (d = e = 128, float32), reporting the bytes of keys and values streamed
// per second.
func BenchmarkDecodeStep(b *testing.B) {
	for _, m := range []int{1 << 12, 1 << 16, 1 << 20} {
		b.Run(fmt.Sprintf("m=%d", m), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, uint64(m)))
			us := randomUnits[float32](rng, 1, m, 1, 128, 128, false)
			us[0].Lo[0], us[0].Hi[0] = 0, us[0].Keys.Len()
			dec := NewDecoder[float32](0)
			for b.Loop() {
				if err := dec.Attend(context.Background(), us, 0.088); err != nil {
					b.Fatal(err)
				}
			}
			bytes := float64(us[0].Keys.Len()) * 256 * 4
			b.ReportMetric(bytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}

func BenchmarkStreamRead(b *testing.B) {
	x := make([]float32, 1<<28)
	for i := range x {
		x[i] = float32(i)
	}
	for _, w := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", w), func(b *testing.B) {
			for b.Loop() {
				done := make(chan struct{})
				n := len(x) / w
				for i := range w {
					go func() { kernels.Max32(x[i*n : (i+1)*n]); done <- struct{}{} }()
				}
				for range w {
					<-done
				}
			}
			b.ReportMetric(float64(len(x))*4*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}

// BenchmarkDecodeHalf times decoding steps with float32, float16 and
// bfloat16 stores of the same keys and values, interleaved so that all
// three see the same load: 8 query heads sharing 2 key/value heads, one
// query each, d = e = 128, against m keys. It reports each format's median
// step time (us/token), their ratios to float32 and the bytes of keys and
// values streamed per second.
var (
	benchDecodeHalfSizes = []int{1 << 12, 1 << 15, 1 << 16, 1 << 17}
	benchDecodeWorkers   = 0
)

func BenchmarkDecodeHalf(b *testing.B) {
	const kvHeads, group, dim = 2, 4, 128
	for _, m := range benchDecodeHalfSizes {
		b.Run(fmt.Sprintf("m=%d", m), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(1, uint64(m)))
			formats := []attn.HalfFormat{attn.NoHalf, attn.Float16, attn.BFloat16}
			units := make([][]DecodeUnit[float32], len(formats))
			for f, format := range formats {
				units[f] = make([]DecodeUnit[float32], kvHeads)
				for g := range units[f] {
					kv := NewDecodeKeys[float32](dim, dim)
					if format != attn.NoHalf {
						kv = NewDecodeKeysHalf(dim, dim, format)
					}
					units[f][g] = DecodeUnit[float32]{Keys: kv, Rows: group, Q: make([]float32, group*dim),
						Out: make([]float32, group*dim), LSE: make([]float64, group), Lo: make([]int, group), Hi: make([]int, group)}
				}
			}
			k, v := make([]float32, dim), make([]float32, dim)
			for g := range kvHeads {
				for range m {
					for t := range k {
						k[t], v[t] = float32(rng.NormFloat64()), float32(rng.NormFloat64())
					}
					for f := range formats {
						units[f][g].Keys.Append(k, v)
					}
				}
				for r := range group {
					for f := range formats {
						units[f][g].Hi[r] = m
					}
				}
				for t := range units[0][g].Q {
					q := float32(rng.NormFloat64())
					for f := range formats {
						units[f][g].Q[t] = q
					}
				}
			}
			dec := NewDecoder[float32](benchDecodeWorkers)
			ctx := context.Background()
			times, cpus := make([][]float64, len(formats)), make([]float64, len(formats))
			for b.Loop() {
				for f := range formats {
					start, c0 := time.Now(), cpu()
					if err := dec.Attend(ctx, units[f], 1/math.Sqrt(dim)); err != nil {
						b.Fatal(err)
					}
					times[f] = append(times[f], time.Since(start).Seconds())
					cpus[f] += cpu() - c0
				}
			}
			med := make([]float64, len(formats))
			for f := range formats {
				slices.Sort(times[f])
				med[f] = times[f][len(times[f])/2]
			}
			b.ReportMetric(med[0]*1e6, "us/token-f32")
			b.ReportMetric(med[1]*1e6, "us/token-f16")
			b.ReportMetric(med[2]*1e6, "us/token-bf16")
			b.ReportMetric(med[1]/med[0], "f16/f32")
			b.ReportMetric(med[2]/med[0], "bf16/f32")
			if cpus[0] > 0 {
				// CPU time (all workers) is less sensitive than the wall
				// clock to other processes taking turns on the cores.
				b.ReportMetric(cpus[1]/cpus[0], "cpu-f16/f32")
			}
			b.ReportMetric(float64(kvHeads*m*2*dim*4)/med[0]/1e9, "GB/s-f32")
			b.ReportMetric(float64(kvHeads*m*2*dim*2)/med[1]/1e9, "GB/s-f16")
		})
	}
}
