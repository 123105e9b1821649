package kernels

import (
	"fmt"
	"testing"
)

// BenchmarkDecodeHalf streams a decoding step's products over 32768
// row-major keys and values of 128 entries (8 MiB each in 16 bits, past
// L2), a tile of 256 at a time, for a GQA group of 4 query rows: the
// scores with GemmNT32F16 and P V with GemmNN32F16, with and without
// prefetching the next operand (the tile's values during the scores, the
// next tile's keys during P V), in GB/s of 16-bit keys and values read.
// Run e.g. `go test -run - -bench DecodeHalf ./internal/kernels/`.
func BenchmarkDecodeHalf(b *testing.B) {
	const m, n, d, tile = 4, 32768, 128, 256
	keys, vals := make([]uint16, n*d), make([]uint16, n*d)
	for i := range keys {
		keys[i], vals[i] = 0x3c00+uint16(i%512), 0x3800+uint16(i%256)
	}
	q, s, pv := make([]float32, m*d), make([]float32, m*tile), make([]float32, m*d)
	for i := range q {
		q[i] = 1e-3
	}
	for _, next := range []bool{false, true} {
		b.Run(fmt.Sprintf("next=%v", next), func(b *testing.B) {
			for b.Loop() {
				for j := 0; j < n; j += tile {
					kt, vt := keys[j*d:(j+tile)*d], vals[j*d:(j+tile)*d]
					var nv, nk []uint16
					if next {
						nv = vt
						if j+tile < n {
							nk = keys[(j+tile)*d : (j+2*tile)*d]
						}
					}
					GemmNT32F16Next(m, tile, d, q, d, kt, d, s, tile, nv)
					GemmNN32F16Next(m, d, tile, s, tile, vt, d, pv, d, nk)
				}
			}
			b.ReportMetric(float64(4*n*d)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}
