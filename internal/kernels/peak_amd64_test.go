//go:build amd64 && gc && !purego

package kernels

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"unsafe"

	"github.com/fastattn/fastattn/internal/timing"
)

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

// BenchmarkKernelIssueRatio measures the GEMM microkernels against the FMA
// issue rate in the same moments, as a ratio, so that a shared machine's
// changing clock and neighbours cancel: each iteration times the
// register-only FMA loop of BenchmarkInstructionPeak and then, best of a
// few calls each (timing.Best), the strips kernel on one 6-row strip
// whose operands stay in L1 (k = 64), and exact attention's two tile
// products as exact runs them (288 queries; 512 keys at d = 64, 256 at
// d = 128; keys packed): Q K^T and P V (float32 with its float64
// accumulation). It reports the median of the per-iteration ratios
// ("x-issue"). Run with -benchtime 30x or more.
func BenchmarkKernelIssueRatio(b *testing.B) {
	if maxLevel < levelAVX512 {
		b.Skip("no AVX-512")
	}
	b.Run("f32", func(b *testing.B) { kernelIssueRatio(b, peakFMAF32AVX512, 32, GemmNNAccumulate32) })
	b.Run("f64", func(b *testing.B) {
		kernelIssueRatio(b, peakFMAF64AVX512, 16, func(m, n, k int, a []float64, lda int, bb []float64, ldb int, _ []float64, _ int, dst []float64, ldd int, _ []float64, _ []float64) {
			GemmNN64(m, n, k, a, lda, bb, ldb, dst, ldd)
		})
	})
}

func kernelIssueRatio[T float32 | float64](b *testing.B, peak func(int), flopsPerFMA float64,
	pv func(m, n, k int, a []T, lda int, b []T, ldb int, scratch []T, ldc int, dst []float64, ldd int, alphas []float64, next []T)) {
	r := rand.New(rand.NewPCG(3, 4))
	// One strip in L1: A 6 x 64, B a 64 x 64-float32 (32-float64) panel.
	const k = 64
	var zero T
	nr := 64 / int(unsafe.Sizeof(zero)) * 4
	sa, sb, sc := normals[T](r, 6*k), normals[T](r, k*nr), make([]T, 6*nr)
	strip := func() {
		for range 50 {
			if s32, ok := any(sa).([]float32); ok {
				gemmStripsF32AVX512(1, k, &s32[0], k, &any(sb).([]float32)[0], nr, &any(sc).([]float32)[0], nr, 0, nil, 0)
			} else {
				gemmStripsF64AVX512(1, k, &any(sa).([]float64)[0], k, &any(sb).([]float64)[0], nr, &any(sc).([]float64)[0], nr, 0, nil, 0)
			}
		}
	}
	stripFlops := 50 * 2 * 6 * float64(nr) * k
	for _, d := range []int{64, 128} {
		m, n, stride := 288, 256, 512+16
		if d == 64 {
			n = 512
		}
		q, keys, v := normals[T](r, m*d), normals[T](r, n*d), normals[T](r, n*d)
		var pk PackedNT[T]
		pk.Reset(n, d, keys, d)
		pk.Pack(0, n)
		s := make([]T, m*stride)
		for i := range s {
			s[i] = T(r.Float64())
		}
		scratch, acc, alphas := make([]T, m*d), make([]float64, m*d), make([]float64, m)
		for i := range alphas {
			alphas[i] = 1
		}
		tileFlops := 2 * float64(m*n*d)
		b.Run(fmt.Sprintf("d=%d", d), func(b *testing.B) {
			var rStrip, rQK, rPV []float64
			for b.Loop() {
				issue := 24 * 2000 * flopsPerFMA / timing.Best(5, func() { peak(2000) })
				rStrip = append(rStrip, stripFlops/timing.Best(5, strip)/issue)
				rQK = append(rQK, tileFlops/timing.Best(3, func() { pk.GemmNT(m, 0, n, q, d, s, stride) })/issue)
				rPV = append(rPV, tileFlops/timing.Best(3, func() { pv(m, d, n, s, stride, v, d, scratch, d, acc, d, alphas, nil) })/issue)
			}
			for _, x := range []struct {
				name string
				r    []float64
			}{{"strip-L1", rStrip}, {"QKt", rQK}, {"PV", rPV}} {
				slices.Sort(x.r)
				b.ReportMetric(x.r[len(x.r)/2], x.name+"-x-issue")
			}
		})
	}
}
