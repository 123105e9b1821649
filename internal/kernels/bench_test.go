package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// The benchmarks run every dispatch level on the attention tile shapes:
// scores S = Q K^T with 64 queries, n keys and head size d (GemmNT), then
// S V with value width e = d (GemmNN), and the exponential of the tile.
// Run e.g. `go test -run - -bench . -benchtime 200ms ./internal/kernels/`.

var (
	ntShapes = [][3]int{ // m, n, k
		{64, 128, 16}, {64, 128, 32}, {64, 128, 64}, {64, 128, 128},
		{64, 256, 16}, {64, 256, 32}, {64, 256, 64}, {64, 256, 128},
	}
	nnShapes = [][3]int{ // m, n = e, k = keys
		{64, 16, 128}, {64, 32, 128}, {64, 64, 128}, {64, 128, 128},
		{64, 16, 256}, {64, 32, 256}, {64, 64, 256}, {64, 128, 256},
	}
	bigShapes = [][3]int{{512, 512, 512}, {1000, 300, 1500}}
)

func benchGemm[T float32 | float64](b *testing.B, nt bool, m, n, k int, f func(m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int)) {
	r := rand.New(rand.NewPCG(1, 1))
	a := make([]T, m*k)
	bb := make([]T, n*k)
	c := make([]T, m*n)
	for i := range a {
		a[i] = T(r.NormFloat64())
	}
	for i := range bb {
		bb[i] = T(r.NormFloat64())
	}
	ldb := n
	if nt {
		ldb = k
	}
	b.ResetTimer()
	for b.Loop() {
		f(m, n, k, a, k, bb, ldb, c, n)
	}
	b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

func BenchmarkGemm(b *testing.B) {
	type op struct {
		name   string
		nt     bool
		shapes [][3]int
	}
	for _, o := range []op{{"NT", true, append(ntShapes, bigShapes...)}, {"NN", false, append(nnShapes, bigShapes...)}} {
		for _, l := range levels() {
			for _, sz := range o.shapes {
				m, n, k := sz[0], sz[1], sz[2]
				name := fmt.Sprintf("%s/%s/m%dn%dk%d", o.name, levelName(l), m, n, k)
				b.Run(name+"/f32", func(b *testing.B) {
					atLevel(b, l, func() {
						if o.nt {
							benchGemm(b, true, m, n, k, GemmNT32)
						} else {
							benchGemm(b, false, m, n, k, GemmNN32)
						}
					})
				})
				b.Run(name+"/f64", func(b *testing.B) {
					atLevel(b, l, func() {
						if o.nt {
							benchGemm(b, true, m, n, k, GemmNT64)
						} else {
							benchGemm(b, false, m, n, k, GemmNN64)
						}
					})
				})
			}
		}
	}
}

// BenchmarkExpShiftSum times one 256-key row of scores; the metric is
// exponentials per second.
func BenchmarkExpShiftSum(b *testing.B) {
	const n = 256
	r := rand.New(rand.NewPCG(2, 2))
	src := make([]float64, n)
	for i := range src {
		src[i] = -10 * r.Float64()
	}
	for _, l := range levels() {
		b.Run(levelName(l)+"/f32", func(b *testing.B) {
			x := to32(src)
			atLevel(b, l, func() {
				for b.Loop() {
					ExpShiftSum32(x, 1, 1)
				}
			})
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gexp/s")
		})
		b.Run(levelName(l)+"/f64", func(b *testing.B) {
			x := append([]float64(nil), src...)
			atLevel(b, l, func() {
				for b.Loop() {
					ExpShiftSum64(x, 1, 1)
				}
			})
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gexp/s")
		})
	}
}

// BenchmarkTile is one full attention tile as exact attention runs it:
// S = Q K^T (64 x 256 x d), a row max and exp-sum per row, then P V
// accumulated into a 64 x d buffer. GFLOP/s counts the two products.
func BenchmarkTile(b *testing.B) {
	const m, n = 64, 256
	for _, l := range levels() {
		for _, d := range []int{16, 64, 128} {
			b.Run(fmt.Sprintf("%s/d%d/f32", levelName(l), d), func(b *testing.B) {
				r := rand.New(rand.NewPCG(3, 3))
				q, k, v := make([]float32, m*d), make([]float32, n*d), make([]float32, n*d)
				for _, s := range [][]float32{q, k, v} {
					for i := range s {
						s[i] = float32(r.NormFloat64())
					}
				}
				s := make([]float32, m*n)
				pv := make([]float32, m*d)
				atLevel(b, l, func() {
					for b.Loop() {
						GemmNT32(m, n, d, q, d, k, d, s, n)
						for i := range m {
							row := s[i*n : (i+1)*n]
							mx := Max32(row)
							ExpShiftSum32(row, 0.125, 0.125*mx)
						}
						GemmNN32(m, d, n, s, n, v, d, pv, d)
					}
				})
				b.ReportMetric(4*float64(m*n*d)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
