package anytemp

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/exact"
)

// benchProblem is the workload: Q, K entries N(0, scale^2), V
// N(0, 1), e = d, softmax scale 1, float32, eps 1e-3.
func benchProblem(n, d int, scale float64) *attn.Problem[float32] {
	r := rand.New(rand.NewPCG(uint64(n), uint64(d)))
	f := func(k int, s float64) []float32 {
		x := make([]float32, k)
		for i := range x {
			x[i] = float32(s * r.NormFloat64())
		}
		return x
	}
	return &attn.Problem[float32]{Heads: 1, N: n, M: n, D: d, E: d, Scale: 1, Eps: 1e-3,
		Q: f(n*d, scale), K: f(n*d, scale), V: f(n*d, 1)}
}

// BenchmarkForward times anytemp and exact on the same inputs:
// go test -bench Forward -run XXX ./anytemp/
func BenchmarkForward(b *testing.B) {
	for _, d := range []int{1, 2, 3, 4} {
		for _, scale := range []float64{1, 10} {
			for _, n := range []int{1 << 12, 1 << 14, 1 << 16} {
				if d >= 3 && scale == 1 && n > 1<<14 {
					continue // low temperature in 3-4 dimensions: slower than exact
				}
				p := benchProblem(n, d, scale)
				out := attn.NewOutput(p)
				b.Run(fmt.Sprintf("anytemp/d=%d/scale=%g/n=%d", d, scale, n), func(b *testing.B) {
					c0 := cpuSeconds()
					for b.Loop() {
						if _, err := (Method{Samples: -1}).Forward32(context.Background(), p, out); err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric((cpuSeconds()-c0)/float64(b.N)*1e3, "cpu-ms/op")
				})
				b.Run(fmt.Sprintf("exact/d=%d/scale=%g/n=%d", d, scale, n), func(b *testing.B) {
					c0 := cpuSeconds()
					defer func() { b.ReportMetric((cpuSeconds()-c0)/float64(b.N)*1e3, "cpu-ms/op") }()
					for b.Loop() {
						if _, err := (exact.Method{}).Forward32(context.Background(), p, out); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

// cpuSeconds is the process's user CPU time: on a shared machine it
// varies less than wall time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(0, &ru)
	return float64(ru.Utime.Nano()) / 1e9
}
