package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// exp2Args is a dense sweep of [-126, 0] (every float32 whose bit pattern
// is a multiple of step), random arguments, and the edges of the
// polynomial's interval.
func exp2Args(step uint32) []float32 {
	var xs []float32
	for u := uint32(0); u <= math.Float32bits(126); u += step {
		xs = append(xs, -math.Float32frombits(u))
	}
	r := rand.New(rand.NewPCG(21, 22))
	for range 1 << 16 {
		xs = append(xs, -126*r.Float32())
	}
	return append(xs, 0, -126, float32(math.Copysign(0, -1)), -1e-30, -0.5, -0.49999997, -0.50000006, -1.5, -125.5)
}

func TestExp2Ulp(t *testing.T) {
	step := uint32(97)
	if testing.Short() {
		step = 997
	}
	checkUlp32(t, "exp2", "[-126, 0]", exp2Args(step), func(xs []float32) { Exp2ShiftSum32(xs, 1, 0) }, math.Exp2)
}

// TestExp2ShiftScale checks the argument's rounding (float32(scale*x) -
// shift, no FMA), every tail length, and the special values.
func TestExp2ShiftScale(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	for _, l := range levels() {
		for n := range 70 {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(r.NormFloat64() * 30)
			}
			scale := float32(0.18033688) // log2(e)/8
			var mx float32 = -1e30
			for _, v := range x {
				mx = max(mx, v)
			}
			shift := scale * mx
			got := append([]float32(nil), x...)
			var sum float32
			atLevel(t, l, func() { sum = Exp2ShiftSum32(got, scale, shift) })
			var want64 float64
			for i, v := range x {
				y := float32(scale*v) - shift
				want := float32(math.Exp2(float64(y)))
				want64 += float64(want)
				if want < 0x1p-126 {
					if got[i] != 0 && ulp32(got[i], want) > 2 {
						t.Fatalf("%s n=%d: 2^%g = %g, want 0 or %g", levelName(l), n, y, got[i], want)
					}
					continue
				}
				if ulp32(got[i], want) > 2 {
					t.Fatalf("%s n=%d: 2^%g = %g, want %g", levelName(l), n, y, got[i], want)
				}
				if v == mx && got[i] != 1 {
					t.Fatalf("%s n=%d: the largest entry's weight is %g, want exactly 1", levelName(l), n, got[i])
				}
			}
			if math.Abs(float64(sum)-want64) > 1e-5*want64+1e-30 {
				t.Fatalf("%s n=%d: sum %g, want %g", levelName(l), n, sum, want64)
			}
		}
		negZero := float32(math.Copysign(0, -1))
		cases := []float32{0, negZero, -1, -126, -149, -149.5, -150, -200, -1e30, float32(math.Inf(-1)), float32(math.NaN())}
		xs := append([]float32(nil), cases...)
		atLevel(t, l, func() { Exp2ShiftSum32(xs[:len(xs)-1], 1, 0) })
		atLevel(t, l, func() { Exp2ShiftSum32(xs[len(xs)-1:], 1, 0) })
		for i, x := range cases {
			got, want := xs[i], math.Exp2(float64(x))
			switch {
			case x != x:
				if got == got {
					t.Errorf("%s: 2^NaN = %g", levelName(l), got)
				}
			case want < 0x1p-126:
				if !(got >= 0 && float64(got) <= want*1.01+1.5e-45) {
					t.Errorf("%s: 2^%g = %g, want 0 or about %g", levelName(l), x, got, want)
				}
			case ulp32(got, float32(want)) > 2:
				t.Errorf("%s: 2^%g = %g, want %g", levelName(l), x, got, want)
			}
		}
	}
}

// BenchmarkExp2ShiftSum times one 512-key row as BenchmarkExpShiftSum
// does, base e against base 2, in 10^9 exponentials per second.
func BenchmarkExp2ShiftSum(b *testing.B) {
	const n = 512
	r := rand.New(rand.NewPCG(2, 2))
	src := make([]float32, n)
	for i := range src {
		src[i] = -10 * r.Float32()
	}
	for _, l := range levels() {
		for _, base2 := range []bool{false, true} {
			name := levelName(l) + "/exp"
			f := ExpShiftSum32
			if base2 {
				name, f = levelName(l)+"/exp2", Exp2ShiftSum32
			}
			b.Run(name, func(b *testing.B) {
				x := append([]float32(nil), src...)
				atLevel(b, l, func() {
					for b.Loop() {
						copy(x, src)
						f(x, 1, 1)
					}
				})
				b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "Gexp/s")
			})
		}
	}
}
