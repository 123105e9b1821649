//go:build amd64 && !purego

package kernels

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"
)

// minTime returns the least time of f over reps batches of 4 calls, per call.
func minTime(reps int, f func()) float64 {
	best := 1e9
	for range reps {
		t := time.Now()
		for range 4 {
			f()
		}
		best = min(best, time.Since(t).Seconds()/4)
	}
	return best
}

func TestZZPhases(t *testing.T) {
	if os.Getenv("ZZ") == "" {
		t.Skip()
	}
	const m, n, stride = 72, 256, 256 + 16
	for _, d := range []int{64, 128} {
		r := rand.New(rand.NewPCG(3, 3))
		q, k, v := make([]float32, m*d), make([]float32, n*d), make([]float32, n*d)
		for _, s := range [][]float32{q, k, v} {
			for i := range s {
				s[i] = float32(r.NormFloat64())
			}
		}
		var pk PackedNT[float32]
		pk.Reset(n, d, k, d)
		pk.Pack(0, n)
		s := make([]float32, m*stride)
		pv := make([]float32, m*d)
		acc := make([]float64, m*d)
		pk.GemmNT(m, 0, n, q, d, s, stride)
		fresh := append([]float32(nil), s...)
		flops := 2 * float64(m*n*d)
		reps := 3000
		tq := minTime(reps, func() { pk.GemmNT(m, 0, n, q, d, s, stride) })
		tm := minTime(reps, func() {
			for i := range m {
				Max32(s[i*stride : i*stride+n])
			}
		})
		te := minTime(reps, func() {
			copy(s, fresh)
			for i := range m {
				ExpShiftSum32(s[i*stride:i*stride+n], 0.125, 1)
			}
		})
		tc := minTime(reps, func() { copy(s, fresh) })
		tp := minTime(reps, func() {
			clear(pv)
			GemmNN32(m, d, n, s, stride, v, d, pv, d)
		})
		ta := minTime(reps, func() { Accumulate32(acc, 1, pv) })
		tot := tq + tm + (te - tc) + tp + ta
		fmt.Printf("d=%d QKt %.1fus (%.0f GF/s) max %.1f exp %.1f PV %.1fus (%.0f GF/s) acc %.1f | total %.1fus %.0f GF/s\n",
			d, tq*1e6, flops/tq/1e9, tm*1e6, (te-tc)*1e6, tp*1e6, flops/tp/1e9, ta*1e6, tot*1e6, 2*flops/tot/1e9)
	}
}

func TestZZStream(t *testing.T) {
	if os.Getenv("ZZ") == "" {
		t.Skip()
	}
	const n, stride = 256, 256 + 16
	for _, m := range []int{72, 144} {
		for _, d := range []int{64, 128} {
			for _, keys := range []int{4096, 16384} {
				r := rand.New(rand.NewPCG(3, 3))
				q, k, v := make([]float32, m*d), make([]float32, keys*d), make([]float32, keys*d)
				for _, s := range [][]float32{q, k, v} {
					for i := range s {
						s[i] = float32(r.NormFloat64())
					}
				}
				var pk PackedNT[float32]
				pk.Reset(keys, d, k, d)
				pk.Pack(0, keys)
				s := make([]float32, m*stride)
				pv := make([]float32, m*d)
				tiles := keys / n
				tq := minTime(200, func() {
					for j := 0; j < keys; j += n {
						pk.GemmNT(m, j, n, q, d, s, stride)
					}
				}) / float64(tiles)
				tp := minTime(200, func() {
					for j := 0; j < keys; j += n {
						GemmNN32(m, d, n, s, stride, v[j*d:], d, pv, d)
					}
				}) / float64(tiles)
				flops := 2 * float64(m*n*d)
				fmt.Printf("m=%d d=%d keys=%d: QKt %.0f GF/s PV %.0f GF/s\n", m, d, keys, flops/tq/1e9, flops/tp/1e9)
			}
		}
	}
}

func TestZZBF16(t *testing.T) {
	if os.Getenv("ZZ") == "" {
		t.Skip()
	}
	r := rand.New(rand.NewPCG(1, 1))
	for _, sh := range [][4]int{{1, 72, 256, 64}, {1, 72, 256, 128}, {0, 72, 64, 256}, {0, 72, 128, 256}, {1, 192, 512, 256}, {0, 192, 512, 256}} {
		nt, m, n, k := sh[0] == 1, sh[1], sh[2], sh[3]
		a, _ := randBF16(r, m*k)
		b, _ := randBF16(r, n*k)
		a32, b32 := make([]float32, m*k), make([]float32, n*k)
		BF16ToFloat32(a32, a)
		BF16ToFloat32(b32, b)
		c := make([]float32, m*n)
		ldb := k
		if !nt {
			ldb = n
		}
		var t16, t32 float64
		if nt {
			t16 = minTime(500, func() { GemmNTBF16(m, n, k, a, k, b, ldb, c, n) })
			t32 = minTime(500, func() { GemmNT32(m, n, k, a32, k, b32, ldb, c, n) })
		} else {
			t16 = minTime(500, func() { GemmNNBF16(m, n, k, a, k, b, ldb, c, n) })
			t32 = minTime(500, func() { GemmNN32(m, n, k, a32, k, b32, ldb, c, n) })
		}
		fl := 2 * float64(m*n*k)
		fmt.Printf("nt=%v %dx%dx%d: bf16 %.0f GF/s f32 %.0f GF/s ratio %.2f\n", nt, m, n, k, fl/t16/1e9, fl/t32/1e9, t32/t16)
	}
}

func TestZZBF16Micro(t *testing.T) {
	if os.Getenv("ZZ") == "" {
		t.Skip()
	}
	kp := 128
	a := make([]uint16, 12*2*kp)
	for i := range a {
		a[i] = 0x3f80
	}
	panel := make([]uint32, kp*32)
	for i := range panel {
		panel[i] = 0x3f803f80
	}
	a32 := make([]float32, 12*2*kp)
	p32 := make([]float32, 2*kp*32)
	c := make([]float32, 12*32)
	t16 := minTime(2000, func() { gemmBF16AVX512_12x2(kp, &a[0], 2*kp, &panel[0], 32, &c[0], 32, 16, 0) })
	t32 := minTime(2000, func() { gemmF32AVX512_12x2(2*kp, &a32[0], 2*kp, &p32[0], 32, &c[0], 32, 16, 0) })
	fl := 2 * 12 * 32 * 2 * float64(kp)
	fmt.Printf("micro 12x32x%d: bf16 %.0f GF/s, f32 %.0f GF/s\n", 2*kp, fl/t16/1e9, fl/t32/1e9)
}

func TestZZPhases64(t *testing.T) {
	if os.Getenv("ZZ") == "" {
		t.Skip()
	}
	const m, n, stride = 72, 256, 256 + 16
	for _, d := range []int{64, 128} {
		r := rand.New(rand.NewPCG(3, 3))
		q, k, v := make([]float64, m*d), make([]float64, n*d), make([]float64, n*d)
		for _, s := range [][]float64{q, k, v} {
			for i := range s {
				s[i] = r.NormFloat64()
			}
		}
		var pk PackedNT[float64]
		pk.Reset(n, d, k, d)
		pk.Pack(0, n)
		s := make([]float64, m*stride)
		acc := make([]float64, m*d)
		pk.GemmNT(m, 0, n, q, d, s, stride)
		fresh := append([]float64(nil), s...)
		flops := 2 * float64(m*n*d)
		reps := 2000
		tq := minTime(reps, func() { pk.GemmNT(m, 0, n, q, d, s, stride) })
		tm := minTime(reps, func() {
			for i := range m {
				Max64(s[i*stride : i*stride+n])
			}
		})
		te := minTime(reps, func() {
			copy(s, fresh)
			for i := range m {
				ExpShiftSum64(s[i*stride:i*stride+n], 0.125, 1)
			}
		})
		tc := minTime(reps, func() { copy(s, fresh) })
		tp := minTime(reps, func() {
			GemmNN64(m, d, n, s, stride, v, d, acc, d)
		})
		tot := tq + tm + (te - tc) + tp
		fmt.Printf("f64 d=%d QKt %.1fus (%.0f GF/s) max %.1f exp %.1f PV %.1fus (%.0f GF/s) | total %.1fus %.0f GF/s\n",
			d, tq*1e6, flops/tq/1e9, tm*1e6, (te-tc)*1e6, tp*1e6, flops/tp/1e9, tot*1e6, 2*flops/tot/1e9)
	}
}
