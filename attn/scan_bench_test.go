package attn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// BenchmarkScans times the certified calls' scans of keys and values
// (d = 128, float32 and float64) in cache (64 KiB) and from memory
// (32 MiB).
func BenchmarkScans(b *testing.B) {
	benchScans[float32](b)
	benchScans[float64](b)
}

func benchScans[T Float](b *testing.B) {
	size := int(unsafe.Sizeof(T(0)))
	for _, bytes := range []int{64 << 10, 32 << 20} {
		x := make([]T, bytes/size)
		r := rand.New(rand.NewPCG(1, 2))
		for i := range x {
			x[i] = T(r.NormFloat64())
		}
		lo, hi, acc := make([]float64, 128), make([]float64, 128), make([]float64, 128)
		for i := range lo {
			lo[i], hi[i] = math.Inf(1), math.Inf(-1)
		}
		name := fmt.Sprintf("%T/%dKiB", T(0), bytes>>10)
		b.Run("RowRange/"+name, func(b *testing.B) {
			b.SetBytes(int64(bytes))
			for b.Loop() {
				RowRange(x, lo, hi)
			}
		})
		b.Run("MaxAbsRows/"+name, func(b *testing.B) {
			b.SetBytes(int64(bytes))
			for b.Loop() {
				MaxAbsRows(x, acc)
			}
		})
	}
}
