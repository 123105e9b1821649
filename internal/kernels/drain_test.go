package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestDrainScaled32 checks every level against the formula, rounded as
// documented, bit for bit: lengths around the vector blocks, both modes,
// and special values (signed zeros, infinities, NaN, float32 overflow and
// subnormal results); sum and part must be left zero.
func TestDrainScaled32(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	specials := []float64{0, math.Copysign(0, -1), math.Inf(1), math.Inf(-1), math.NaN(), 1e39, -1e39, 1e-41, 3e38}
	pick := func(i int) float64 {
		if r.IntN(4) == 0 {
			return specials[r.IntN(len(specials))]
		}
		return r.NormFloat64() * math.Exp2(float64(r.IntN(20)-10))
	}
	defer releaseGuarded()
	for _, n := range []int{0, 1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 100, 257} {
		for _, add := range []bool{false, true} {
			for _, scale := range []float64{1, 0.0883883476483184, -3} {
				dst0, sum0, part0 := make([]float32, n), make([]float64, n), make([]float32, n)
				for i := range n {
					dst0[i], sum0[i], part0[i] = float32(pick(i)), pick(i), float32(pick(i))
				}
				for _, l := range levels() {
					atLevel(t, l, func() {
						dst, sum, part := guarded(dst0), guarded(sum0), guarded(part0)
						DrainScaled32(dst, add, scale, sum, part)
						for i := range n {
							y := float64(scale * (sum0[i] + float64(part0[i])))
							if add {
								y = float64(dst0[i]) + y
							}
							want := float32(y)
							if got := dst[i]; math.Float32bits(got) != math.Float32bits(want) && !(got != got && want != want) {
								t.Fatalf("%s n=%d add=%v scale=%g: %d: %g, want %g (dst %g sum %g part %g)",
									levelName(l), n, add, scale, i, got, want, dst0[i], sum0[i], part0[i])
							}
							if math.Float64bits(sum[i]) != 0 || math.Float32bits(part[i]) != 0 {
								t.Fatalf("%s n=%d: %d: sum %g, part %g left", levelName(l), n, i, sum[i], part[i])
							}
						}
					})
				}
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("no panic for different lengths")
		}
	}()
	DrainScaled32(make([]float32, 3), false, 1, make([]float64, 3), make([]float32, 4))
}
