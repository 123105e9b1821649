package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkTilePhases times each step of one exact-attention tile
// separately, as exact runs it (72 queries x 256 keys, keys packed once):
// the Q K^T product, the row maxima, the exponentials with their row sums,
// the P V product and, in float32, its addition into the float64
// accumulator (float64 accumulates in place). The ns/op figures add up to
// a tile's time; the products' GFLOP/s are for them alone. Run with -count
// and take the best of each, on a quiet machine.
func BenchmarkTilePhases(b *testing.B) {
	for _, d := range []int{64, 128} {
		tilePhases(b, d, GemmNN32, ExpShiftSum32, Max32)
		tilePhases(b, d, GemmNN64, ExpShiftSum64, Max64)
	}
}

func tilePhases[T float32 | float64](b *testing.B, d int,
	gemmNN func(m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int),
	expShift func(x []T, scale, shift T) T, maxRow func(x []T) T) {
	const m, n, stride = 72, 256, 256 + 16
	r := rand.New(rand.NewPCG(3, 3))
	q, k, v := make([]T, m*d), make([]T, n*d), make([]T, n*d)
	for _, s := range [][]T{q, k, v} {
		for i := range s {
			s[i] = T(r.NormFloat64())
		}
	}
	var pk PackedNT[T]
	pk.Reset(n, d, k, d)
	pk.Pack(0, n)
	s := make([]T, m*stride)
	pv := make([]T, m*d)
	acc := make([]float64, m*d)
	pk.GemmNT(m, 0, n, q, d, s, stride)
	fresh := append([]T(nil), s...)
	flops := 2 * float64(m*n*d)
	name := fmt.Sprintf("%s/d%d", typeName[T](), d)
	b.Run(name+"/1-QKt", func(b *testing.B) {
		for b.Loop() {
			pk.GemmNT(m, 0, n, q, d, s, stride)
		}
		b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
	b.Run(name+"/2-max", func(b *testing.B) {
		for b.Loop() {
			for i := range m {
				maxRow(s[i*stride : i*stride+n])
			}
		}
	})
	b.Run(name+"/3-exp", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			copy(s, fresh)
			b.StartTimer()
			for i := range m {
				expShift(s[i*stride:i*stride+n], 0.125, 1)
			}
		}
	})
	b.Run(name+"/4-PV", func(b *testing.B) {
		for b.Loop() {
			clear(pv)
			gemmNN(m, d, n, s, stride, v, d, pv, d)
		}
		b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	})
	if pv32, ok := any(pv).([]float32); ok {
		b.Run(name+"/5-accumulate", func(b *testing.B) {
			for b.Loop() {
				Accumulate32(acc, 1, pv32)
			}
		})
	}
}

func typeName[T float32 | float64]() string {
	if _, ok := any(T(0)).(float32); ok {
		return "f32"
	}
	return "f64"
}
