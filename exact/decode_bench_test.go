package exact

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

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
