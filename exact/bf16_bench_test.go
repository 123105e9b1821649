package exact

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
	"github.com/fastattn/fastattn/internal/kernels"
)

// BenchmarkBF16Prefill times, in one run, exact prefill (one head, n = m,
// d = e in {64, 128}, n in {4096, 16384}) on bfloat16 queries, keys and
// values on hardware bfloat16 products (AMX tiles, or VDPBF16PS) against
// the float32 prefill on the same (widened) values. The calls alternate;
// each path's best wall time over the b.N rounds gives its GFLOP/s
// (4nmd): float32, bf16 (P split, the default eps 1e-3) and bf16r (P
// rounded once, eps 0.05), and the ratios bf16/float32 and bf16r/float32.
// On a machine other jobs share, the ratios of the best process CPU times
// (…-cpu) are the steadier measure.
func BenchmarkBF16Prefill(b *testing.B) {
	if !kernels.PackedBF16Fast() {
		b.Skip("no hardware bfloat16 products here")
	}
	for _, d := range []int{64, 128} {
		for _, n := range []int{4096, 16384} {
			b.Run(fmt.Sprintf("d=%d/n=%d", d, n), func(b *testing.B) {
				ph := attntest.ToHalf(attntest.To32(attntest.Case{Heads: 1, N: n, M: n, D: d, E: d}.Generate(1)), attn.BFloat16)
				ph.Eps = 1e-3
				loose := *ph
				loose.Eps = 0.05
				p32 := attntest.Widened(ph)
				o16 := &attn.Output[float32]{O16: make([]uint16, n*d), LSE: make([]float64, n)}
				o32 := attn.NewOutput(p32)
				flops := Flops(p32)
				wall, cpus := map[string]float64{}, map[string]float64{}
				time1 := func(name string, f func() (attn.Stats, error), arith string) {
					c0, start := cpu(), time.Now()
					st, err := f()
					el, c := time.Since(start).Seconds(), cpu()-c0
					if err != nil {
						b.Fatal(err)
					}
					if a, _ := st.Details["arithmetic"].(string); arith != "" && a != arith {
						b.Fatalf("%s ran %q, want %q", name, a, arith)
					}
					if t, ok := wall[name]; !ok || el < t {
						wall[name] = el
					}
					if t, ok := cpus[name]; !ok || c < t {
						cpus[name] = c
					}
				}
				ctx := context.Background()
				for b.Loop() {
					time1("float32", func() (attn.Stats, error) { return Method{}.Forward32(ctx, p32, o32) }, "")
					time1("bf16", func() (attn.Stats, error) { return Method{}.Forward32(ctx, ph, o16) }, bf16Split.String())
					time1("bf16r", func() (attn.Stats, error) { return Method{}.Forward32(ctx, &loose, o16) }, bf16Rounded.String())
				}
				round := func(x float64) float64 { return math.Round(100*x) / 100 }
				for _, name := range []string{"float32", "bf16", "bf16r"} {
					b.ReportMetric(flops/wall[name]/1e9, name+"-GFLOP/s")
				}
				for _, name := range []string{"bf16", "bf16r"} {
					b.ReportMetric(round(wall["float32"]/wall[name]), name+"/float32")
					b.ReportMetric(round(cpus["float32"]/cpus[name]), name+"/float32-cpu")
				}
			})
		}
	}
}

// BenchmarkBF16TilePhases times each step of one bfloat16 tile
// (bf16QueryTile x bf16KeyTile, 64 queries x 512 keys, d = e in {64, 128})
// on one core: microseconds per step, best of many batches of 4 calls.
// The tile's softmax runs either as maxrows then exp2rows (a tile's first,
// or one whose rows have seen no key yet) or as exp2rowsmax alone
// (lagShifts), each with P rounded; max, exp, round and split are the
// per-row steps of the other rows.
func BenchmarkBF16TilePhases(b *testing.B) {
	if !kernels.PackedBF16Fast() {
		b.Skip("no hardware bfloat16 products here")
	}
	const rows, cols = bf16QueryTile, bf16KeyTile
	for _, d := range []int{64, 128} {
		b.Run(fmt.Sprintf("d=%d", d), func(b *testing.B) {
			ph := attntest.ToHalf(attntest.To32(attntest.Case{Heads: 1, N: rows, M: cols, D: d, E: d}.Generate(3)), attn.BFloat16)
			kp := make([]uint16, kernels.PackedBF16Len(cols, d))
			vp := make([]uint16, kernels.PackedBF16Len(d, cols))
			kernels.PackBF16NT(kp, cols, d, ph.K16, d)
			kernels.PackBF16NN(vp, cols, d, ph.V16, d)
			s := make([]float32, rows*cols)
			hi, lo := make([]uint16, rows*cols), make([]uint16, rows*cols)
			pv := make([]float32, rows*d)
			acc := make([]float64, rows*d)
			scale := float32(ph.Scale)
			// The row-block steps' shifts: the rows' maxima, as a tile's
			// first would take them (exp2rowsmax overwrites its copy).
			kernels.GemmPackedBF16(rows, cols, d, ph.Q16, d, kp, s, cols, false)
			shifts, lagged, sums := make([]float32, rows), make([]float32, rows), make([]float32, rows)
			kernels.MaxRows32(s, cols, rows, cols, shifts)
			for r := range shifts {
				shifts[r] *= scale
			}
			phases := []struct {
				name string
				f    func()
			}{
				{"qk", func() { kernels.GemmPackedBF16(rows, cols, d, ph.Q16, d, kp, s, cols, false) }},
				// These three leave the scores as they are.
				{"maxrows", func() { kernels.MaxRows32(s, cols, rows, cols, sums) }},
				{"exp2rows", func() { kernels.Exp2RowsBF16(s, cols, rows, cols, scale, shifts, sums, hi, nil) }},
				{"exp2rowsmax", func() {
					copy(lagged, shifts)
					kernels.Exp2RowsMaxBF16(s, cols, rows, cols, scale, lagged, sums, hi, nil)
				}},
				{"max", func() {
					for r := range rows {
						kernels.Max32(s[r*cols : (r+1)*cols])
					}
				}},
				{"exp", func() {
					for r := range rows {
						kernels.ExpShiftSum32(s[r*cols:(r+1)*cols], scale, 0)
					}
				}},
				{"round", func() { kernels.Float32ToBF16(hi, s) }},
				{"split", func() { kernels.SplitBF16(hi, lo, s) }},
				{"pv", func() { kernels.GemmPackedBF16(rows, d, cols, hi, cols, vp, pv, d, false) }},
				{"accumulate", func() {
					for r := range rows {
						kernels.Accumulate32(acc[r*d:(r+1)*d], 1, pv[r*d:(r+1)*d])
					}
				}},
			}
			best := make([]time.Duration, len(phases))
			for b.Loop() {
				for x, ph := range phases {
					start := time.Now()
					for range 4 {
						ph.f()
					}
					if el := time.Since(start) / 4; best[x] == 0 || el < best[x] {
						best[x] = el
					}
				}
			}
			for x, ph := range phases {
				b.ReportMetric(float64(best[x].Nanoseconds())/1e3, ph.name+"-µs")
			}
			flops := 2 * float64(rows*cols*d)
			for x, ph := range phases {
				if ph.name == "qk" || ph.name == "pv" {
					b.ReportMetric(flops/best[x].Seconds()/1e9, ph.name+"-GFLOP/s")
				}
			}
		})
	}
}
