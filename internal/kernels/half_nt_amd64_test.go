//go:build amd64 && gc && !purego

package kernels

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestGemmNTNarrowRows checks the float32 and 16-bit few-row products
// with the wide kernels off, so that more than halfNTRows rows go through
// the narrow kernels in several passes, as on AVX2 (TestGemmNT32FewRows
// and TestGemmNT32Half cover the wide ones).
func TestGemmNTNarrowRows(t *testing.T) {
	defer func() { useWideNT = true }()
	useWideNT = false
	r := rand.New(rand.NewPCG(27, 28))
	defer releaseGuarded()
	for _, sz := range halfNTShapes() {
		m, n, k := sz[0], sz[1], sz[2]
		if m <= halfNTRows {
			continue
		}
		lda, ldb, ldc := k+3, k+1, n+2
		a := to32(randSlice(r, (m-1)*lda+k))
		b := to32(randSlice(r, (n-1)*ldb+k))
		h, hw := randHalf(r, true, (n-1)*ldb+k)
		c0 := nanC(r, m, n, ldc)
		checkHalfProduct(t, fmt.Sprintf("float32 %v", sz), GemmNT32, m, n, k, a, lda, b, ldb,
			func(p, j int) float64 { return float64(b[j*ldb+p]) }, c0, ldc, false)
		checkHalfProduct(t, fmt.Sprintf("bfloat16 %v", sz), GemmNT32BF16, m, n, k, a, lda, h, ldb,
			func(p, j int) float64 { return hw[j*ldb+p] }, c0, ldc, false)
	}
}

// BenchmarkNTRowsWide times GemmNT32 for a few query rows scoring keys
// of 128 entries a 256-key tile at a time, as decoding does, with the
// wide kernels and without (several passes of the narrow ones), the two
// alternating within each iteration. It reports each one's median time
// per pass over the keys and their ratio (wide/narrow). 32768 keys (16
// MiB) come from L3 or memory, 1024 keys from L2.
func BenchmarkNTRowsWide(b *testing.B) {
	defer func() { useWideNT = true }()
	r := rand.New(rand.NewPCG(29, 30))
	const k = 128
	for _, keys := range []int{1024, 32768} {
		bk := to32(randSlice(r, keys*k))
		for _, m := range []int{5, 8, 16} {
			a := to32(randSlice(r, m*k))
			c := make([]float32, m*keyTileBench)
			b.Run(fmt.Sprintf("keys=%d/rows=%d", keys, m), func(b *testing.B) {
				var times [2][]float64
				for b.Loop() {
					for v, wide := range []bool{true, false} {
						useWideNT = wide
						start := time.Now()
						for j := 0; j < keys; j += keyTileBench {
							GemmNT32(m, keyTileBench, k, a, k, bk[j*k:], k, c, keyTileBench)
						}
						times[v] = append(times[v], time.Since(start).Seconds())
					}
				}
				wide, narrow := median(times[0]), median(times[1])
				b.ReportMetric(wide*1e6, "wide-us")
				b.ReportMetric(narrow*1e6, "narrow-us")
				b.ReportMetric(wide/narrow, "wide/narrow")
			})
		}
	}
}

// keyTileBench is the tile of keys BenchmarkNTRowsWide scores per call.
const keyTileBench = 256

func median(x []float64) float64 {
	x = slices.Clone(x)
	slices.Sort(x)
	return x[len(x)/2]
}
