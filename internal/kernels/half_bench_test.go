package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkGemmBF16 compares, on the attention tile shapes, the bfloat16
// products on VDPBF16PS ("dot", where the CPU has AVX512_BF16), the
// bfloat16 products widened to float32 ("widen") and the float32 products
// of the same values ("f32"), in GFLOP/s. Run e.g.
// `go test -run - -bench GemmBF16 -count 5 ./internal/kernels/`.
func BenchmarkGemmBF16(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, sh := range []struct {
		nt      bool
		m, n, k int
	}{{true, 72, 256, 64}, {true, 72, 256, 128}, {false, 72, 64, 256}, {false, 72, 128, 256}} {
		m, n, k := sh.m, sh.n, sh.k
		a, _ := randBF16(r, m*k)
		bb, _ := randBF16(r, n*k)
		a32, b32 := make([]float32, m*k), make([]float32, n*k)
		BF16ToFloat32(a32, a)
		BF16ToFloat32(b32, bb)
		c := make([]float32, m*n)
		ldb, op := k, "NT"
		if !sh.nt {
			ldb, op = n, "NN"
		}
		name := fmt.Sprintf("%s/m%dn%dk%d", op, m, n, k)
		report := func(b *testing.B) {
			b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		}
		for _, dot := range bf16Modes() {
			mode := "widen"
			if dot {
				mode = "dot"
			}
			b.Run(name+"/"+mode, func(b *testing.B) {
				withBF16(b, maxLevel, dot, func() {
					for b.Loop() {
						if sh.nt {
							GemmNTBF16(m, n, k, a, k, bb, ldb, c, n)
						} else {
							GemmNNBF16(m, n, k, a, k, bb, ldb, c, n)
						}
					}
				})
				report(b)
			})
		}
		b.Run(name+"/f32", func(b *testing.B) {
			for b.Loop() {
				if sh.nt {
					GemmNT32(m, n, k, a32, k, b32, ldb, c, n)
				} else {
					GemmNN32(m, n, k, a32, k, b32, ldb, c, n)
				}
			}
			report(b)
		})
	}
}
