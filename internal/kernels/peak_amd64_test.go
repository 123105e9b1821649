//go:build amd64 && gc && !purego

package kernels

import "testing"

// BenchmarkInstructionPeak measures the issue rate of 512-bit FMAs (float32
// and float64) and of VDPBF16PS on one core, in GFLOP/s: 24 independent
// instructions per round on registers only, the limit no microkernel can
// pass (a float32 FMA is 32 flops, a float64 one 16, a VDPBF16PS 64).
func BenchmarkInstructionPeak(b *testing.B) {
	if maxLevel < levelAVX512 {
		b.Skip("no AVX-512")
	}
	const rounds = 10000
	for _, c := range []struct {
		name  string
		flops float64
		f     func(n int)
		ok    bool
	}{
		{"fma-f32", 32, peakFMAF32AVX512, true},
		{"fma-f64", 16, peakFMAF64AVX512, true},
		{"vdpbf16ps", 64, peakDPBF16AVX512, hasBF16},
	} {
		b.Run(c.name, func(b *testing.B) {
			if !c.ok {
				b.Skip("no AVX512_BF16")
			}
			for b.Loop() {
				c.f(rounds)
			}
			b.ReportMetric(24*rounds*c.flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
