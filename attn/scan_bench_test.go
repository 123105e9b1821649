package attn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// BenchmarkScans times the certified calls' scans of keys and values
// (d = 128 float32) in cache (64 KiB) and from memory (32 MiB).
func BenchmarkScans(b *testing.B) {
	for _, n := range []int{16 << 10, 8 << 20} {
		x := make([]float32, n)
		r := rand.New(rand.NewPCG(1, 2))
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		lo, hi, acc := make([]float64, 128), make([]float64, 128), make([]float64, 128)
		for i := range lo {
			lo[i], hi[i] = math.Inf(1), math.Inf(-1)
		}
		b.Run(fmt.Sprintf("RowRange/%dKiB", n*4>>10), func(b *testing.B) {
			b.SetBytes(int64(n * 4))
			for b.Loop() {
				RowRange(x, lo, hi)
			}
		})
		b.Run(fmt.Sprintf("MaxAbsRows/%dKiB", n*4>>10), func(b *testing.B) {
			b.SetBytes(int64(n * 4))
			for b.Loop() {
				MaxAbsRows(x, acc)
			}
		})
	}
}
