package kernels

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"
)

// TestSoftmaxGradRow64 checks the float64 backward row against
// ExpShiftSum64 followed by the products in Go, bit for bit, on every
// level and every length up to 40 (and longer rows), with arguments down
// to the underflow range.
func TestSoftmaxGradRow64(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for _, l := range levels() {
		atLevel(t, l, func() {
			for _, n := range append(seq(41), 63, 64, 65, 79, 300, 1000) {
				s, ds := make([]float64, n), make([]float64, n)
				for i := range s {
					s[i] = 40 * r.NormFloat64()
					ds[i] = r.NormFloat64()
				}
				scale, lse, delta := 0.3, 5.0+r.Float64(), r.NormFloat64()
				want, wantD := append([]float64(nil), s...), make([]float64, n)
				ExpShiftSum64(want, scale, lse)
				for i, p := range want {
					wantD[i] = p * (ds[i] - delta)
				}
				SoftmaxGradRow64(s, ds, scale, lse, delta)
				for i := range n {
					if s[i] != want[i] || ds[i] != wantD[i] {
						t.Fatalf("%s n=%d: entry %d: (%g, %g), want (%g, %g)", levelName(l), n, i, s[i], ds[i], want[i], wantD[i])
					}
				}
			}
		})
	}
}

// TestSoftmaxGradRowsMatchPerRow checks SoftmaxGradRows32 against
// SoftmaxGradRow32 row by row, bit for bit, at every level, on blocks of
// every shape around the vector width (masked tails) with padded strides
// and a different lse and delta per row, and that nothing outside the
// rows is written.
func TestSoftmaxGradRowsMatchPerRow(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	for _, l := range levels() {
		for _, cols := range []int{1, 7, 15, 16, 17, 31, 48, 63, 64, 65, 100, 256, 300} {
			for _, rows := range []int{1, 3, 48} {
				ld := cols + r.IntN(20)
				size := (rows-1)*ld + cols + 5
				s, ds := make([]float32, size), make([]float32, size)
				for i := range s {
					s[i], ds[i] = float32(30*r.NormFloat64()), float32(r.NormFloat64())
				}
				lse, delta := make([]float64, rows), make([]float64, rows)
				for i := range rows {
					lse[i], delta[i] = 20*r.NormFloat64(), r.NormFloat64()
					if i%7 == 3 { // a row the assembly leaves to the portable path
						lse[i] = 1e6 + 3e5*r.Float64()
					}
				}
				scale := 0.125
				want, wantD := append([]float32(nil), s...), append([]float32(nil), ds...)
				atLevel(t, l, func() {
					for i := range rows {
						SoftmaxGradRow32(want[i*ld:i*ld+cols], wantD[i*ld:i*ld+cols], scale, lse[i], delta[i])
					}
					SoftmaxGradRows32(s, ds, ld, rows, cols, scale, lse, delta)
				})
				for i := range s {
					if !sameBits32(s[i], want[i]) || !sameBits32(ds[i], wantD[i]) {
						t.Fatalf("%s %dx%d (ld %d): entry %d is (%g, %g), want (%g, %g)", levelName(l), rows, cols, ld, i, s[i], ds[i], want[i], wantD[i])
					}
				}
			}
		}
	}
}

func TestSoftmaxGradRowsBadDimensions(t *testing.T) {
	s, l := make([]float32, 100), make([]float64, 4)
	for _, c := range []struct{ ld, rows, cols, nl int }{{10, 4, 11, 4}, {30, 4, 20, 4}, {25, 4, 25, 3}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("ld %d, %d x %d, %d lse: no panic", c.ld, c.rows, c.cols, c.nl)
				}
			}()
			SoftmaxGradRows32(s, s, c.ld, c.rows, c.cols, 1, l[:c.nl], l)
		}()
	}
	SoftmaxGradRows32(nil, nil, 0, 0, 5, 1, nil, nil) // empty: nothing to do
}

// exactArg returns scale*x - lse rounded once to float64.
func exactArg(scale float64, x float32, lse float64) float64 {
	a := new(big.Float).SetPrec(300).SetFloat64(scale)
	a.Mul(a, new(big.Float).SetFloat64(float64(x)))
	a.Sub(a, new(big.Float).SetFloat64(lse))
	u, _ := a.Float64()
	return u
}

// spacing32 is the gap between float32 values at v > 0 (subnormal ones
// included).
func spacing32(v float64) float64 {
	f := float32(v)
	return float64(math.Nextafter32(f, float32(math.Inf(1))) - f)
}

// TestSoftmaxGradRowsPrecision sweeps P = exp(scale x - lse) against
// math.Exp of the exact argument (formed in big.Float), at every level,
// for arguments u from 0 down past the float32 underflow (where results
// may be 0) and log-sum-exps up to 10^6: the error must stay within
// SoftmaxGradRows32's documented bound, and dS must be (ds -
// float32(delta)) P in float32 exactly. It logs the largest error in ulps
// per range of |u| (overall and where |u| <= |lse|), next to what the
// argument rounded to float32 and ExpShiftSum32 (the former step) gave on
// the same entries.
func TestSoftmaxGradRowsPrecision(t *testing.T) {
	n := 1 << 14
	if testing.Short() {
		n = 1 << 12
	}
	r := rand.New(rand.NewPCG(43, 44))
	configs := []struct{ scale, lse float64 }{
		{0.125, 0}, {0.125, 3.7}, {0.08838834764831845, -2.5}, {0.3, 41.3}, {0.125, 75}, {0.2, 150},
		{0.125, 1e3}, {0.125, -1e3}, {1, 12345.678}, {0.125, 1e5}, {0.0883, -1e5}, {0.125, 2.6e5}, {0.125, 1e6}, {0.25, 1e8},
	}
	bins := []float64{1, 10, 87.3, 104}
	for _, l := range levels() {
		worst, worstIn, worstOld := make([]float64, len(bins)), make([]float64, len(bins)), make([]float64, len(bins))
		for _, cf := range configs {
			const rows = 3
			cols := n/rows + 5 // not a multiple of the vector width
			s, ds := make([]float32, rows*cols), make([]float32, rows*cols)
			lse, delta := make([]float64, rows), make([]float64, rows)
			us := make([]float64, len(s)) // the exact arguments
			for i := range rows {
				lse[i], delta[i] = cf.lse+0.37*float64(i), r.NormFloat64()
				for j := range cols {
					var u float64
					switch j % 4 {
					case 0:
						u = -1e-3 * r.Float64()
					case 1:
						u = -104 * r.Float64() * float64(1+j%8/4) // into the underflow, and past 2^-150
					default:
						u = -20 * r.Float64()
					}
					x := float32((lse[i] + u) / cf.scale)
					s[i*cols+j], ds[i*cols+j] = x, float32(r.NormFloat64())
					us[i*cols+j] = exactArg(cf.scale, x, lse[i])
				}
			}
			x0, ds0 := append([]float32(nil), s...), append([]float32(nil), ds...)
			old := make([]float32, len(s))
			for i := range old {
				old[i] = float32(float64(cf.scale*float64(x0[i])) - lse[i/cols])
			}
			atLevel(t, l, func() {
				SoftmaxGradRows32(s, ds, cols, rows, cols, cf.scale, lse, delta)
				ExpShiftSum32(old, 1, 0)
			})
			for k, u := range us {
				lse := lse[k/cols]
				want, got := math.Exp(u), float64(s[k])
				// The argument's error: 2^-24 |u| beyond |u| = |lse|,
				// about 2^-24 (the 0.7, in units of P) within.
				au := math.Abs(u) * (1 + 0x1p-20)
				if au <= math.Abs(lse) {
					au = 0
				}
				tol := want*0x1p-24*(au+0.7+0x1p-20*math.Abs(lse)) + 2.5*spacing32(want)
				if want < 0x1p-126 {
					tol += 0x1p-149
					if got == 0 {
						continue
					}
				}
				if !(math.Abs(got-want) <= tol) {
					t.Fatalf("%s scale %g lse %g: x = %g (u = %g): P = %g, want %g (error %.3g ulp, bound %.3g)",
						levelName(l), cf.scale, lse, x0[k], u, got, want, math.Abs(got-want)/spacing32(want), tol/spacing32(want))
				}
				if d := (ds0[k] - float32(delta[k/cols])) * s[k]; !sameBits32(ds[k], d) {
					t.Fatalf("%s: dS = %g, want (%g - %g)*%g = %g", levelName(l), ds[k], ds0[k], float32(delta[k/cols]), s[k], d)
				}
				if want < 0x1p-126 {
					continue
				}
				for b, top := range bins {
					if -u < top {
						worst[b] = max(worst[b], math.Abs(got-want)/spacing32(want))
						if math.Abs(u) <= math.Abs(lse) {
							worstIn[b] = max(worstIn[b], math.Abs(got-want)/spacing32(want))
						}
						worstOld[b] = max(worstOld[b], math.Abs(float64(old[k])-want)/spacing32(want))
						break
					}
				}
			}
		}
		lo := 0.0
		for b, top := range bins {
			t.Logf("%s: |u| in [%g, %g): max error %.2f ulp, %.2f where |u| <= |lse| (argument rounded to float32 + ExpShiftSum32: %.2f)",
				levelName(l), lo, top, worst[b], worstIn[b], worstOld[b])
			lo = top
		}
	}
}

// BenchmarkSoftmaxGrad times the backward's softmax step on a block of 48
// rows of 256 keys, one call per row against one call for the block, in
// nanoseconds per row.
func BenchmarkSoftmaxGrad(b *testing.B) {
	const rows, cols, ld = 48, 256, 272
	r := rand.New(rand.NewPCG(5, 5))
	src := make([]float32, rows*ld)
	for i := range src {
		src[i] = float32(r.NormFloat64())
	}
	lse, delta := make([]float64, rows), make([]float64, rows)
	for i := range lse {
		lse[i], delta[i] = 6, 0.5
	}
	s, ds := make([]float32, len(src)), make([]float32, len(src))
	for _, l := range levels() {
		for _, block := range []bool{false, true} {
			b.Run(fmt.Sprintf("%s/block=%v", levelName(l), block), func(b *testing.B) {
				atLevel(b, l, func() {
					for b.Loop() {
						copy(s, src)
						copy(ds, src)
						if block {
							SoftmaxGradRows32(s, ds, ld, rows, cols, 0.125, lse, delta)
							continue
						}
						for i := range rows {
							SoftmaxGradRow32(s[i*ld:i*ld+cols], ds[i*ld:i*ld+cols], 0.125, lse[i], delta[i])
						}
					}
				})
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
			})
		}
	}
}

// TestSoftmaxGradRowAllocs checks that the per-row call allocates
// nothing (its lse and delta stay on the stack).
func TestSoftmaxGradRowAllocs(t *testing.T) {
	s, ds := make([]float32, 100), make([]float32, 100)
	for _, l := range levels() {
		atLevel(t, l, func() {
			if a := testing.AllocsPerRun(10, func() { SoftmaxGradRow32(s, ds, 0.125, 3, 0.5) }); a != 0 {
				t.Errorf("%s: %g allocations per call", levelName(l), a)
			}
		})
	}
}
