package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkTilePhases times each step of one float32 exact-attention tile
// separately, as exact runs it (72 queries x 256 keys, keys packed once):
// the Q K^T product, the row maxima, the exponentials with their row sums,
// the P V product and its addition into the float64 accumulator. The ns/op
// figures add up to a tile's time; the products' GFLOP/s are for them
// alone. Run with -count and take the best of each, on a quiet machine.
func BenchmarkTilePhases(b *testing.B) {
	const m, n, stride = 72, 256, 256 + 16
	for _, d := range []int{64, 128} {
		r := rand.New(rand.NewPCG(3, 3))
		q, k, v := make([]float32, m*d), make([]float32, n*d), make([]float32, n*d)
		for _, s := range [][]float32{q, k, v} {
			for i := range s {
				s[i] = float32(r.NormFloat64())
			}
		}
		var pk PackedNT[float32]
		pk.Reset(n, d, k, d)
		pk.Pack(0, n)
		s := make([]float32, m*stride)
		pv := make([]float32, m*d)
		acc := make([]float64, m*d)
		pk.GemmNT(m, 0, n, q, d, s, stride)
		fresh := append([]float32(nil), s...)
		flops := 2 * float64(m*n*d)
		b.Run(fmt.Sprintf("d%d/1-QKt", d), func(b *testing.B) {
			for b.Loop() {
				pk.GemmNT(m, 0, n, q, d, s, stride)
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		b.Run(fmt.Sprintf("d%d/2-max", d), func(b *testing.B) {
			for b.Loop() {
				for i := range m {
					Max32(s[i*stride : i*stride+n])
				}
			}
		})
		b.Run(fmt.Sprintf("d%d/3-exp", d), func(b *testing.B) {
			for b.Loop() {
				b.StopTimer()
				copy(s, fresh)
				b.StartTimer()
				for i := range m {
					ExpShiftSum32(s[i*stride:i*stride+n], 0.125, 1)
				}
			}
		})
		b.Run(fmt.Sprintf("d%d/4-PV", d), func(b *testing.B) {
			for b.Loop() {
				clear(pv)
				GemmNN32(m, d, n, s, stride, v, d, pv, d)
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
		b.Run(fmt.Sprintf("d%d/5-accumulate", d), func(b *testing.B) {
			for b.Loop() {
				Accumulate32(acc, 1, pv)
			}
		})
	}
}
