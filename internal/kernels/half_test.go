package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// bf16Modes are the settings of useBF16 to test: the AVX512_BF16 path
// where the CPU has it, and the widening path everywhere.
func bf16Modes() []bool {
	if hasBF16 {
		return []bool{true, false}
	}
	return []bool{false}
}

// withBF16 runs f at level l with the AVX512_BF16 path on or off (on:
// whatever the calibration would choose).
func withBF16(t testing.TB, l int, on bool, f func()) {
	t.Helper()
	old, oldCal := useBF16, bf16Calibrated
	useBF16, bf16Calibrated = on, &on
	defer func() { useBF16, bf16Calibrated = old, oldCal }()
	atLevel(t, l, f)
}

func sameBits32(x, y float32) bool {
	return math.Float32bits(x) == math.Float32bits(y)
}

func TestBF16ToFloat32AllValues(t *testing.T) {
	src := make([]uint16, 1<<16+37) // every value, then a tail
	for i := range src {
		src[i] = uint16(i)
	}
	for _, l := range levels() {
		atLevel(t, l, func() {
			dst := make([]float32, len(src))
			BF16ToFloat32(dst, src)
			for i, h := range src {
				if want := math.Float32frombits(uint32(h) << 16); !sameBits32(dst[i], want) {
					t.Fatalf("%s: bfloat16 %#04x gave %g (%#08x), want %g", levelName(l), h, dst[i], math.Float32bits(dst[i]), want)
				}
			}
		})
	}
}

func TestF16ToFloat32AllValues(t *testing.T) {
	// Spot checks of the portable reference, then every value on every level.
	for h, want := range map[uint16]float32{
		0x0000: 0, 0x3c00: 1, 0xc000: -2, 0x7bff: 65504, 0x0001: 1.0 / (1 << 24), 0x03ff: 1023.0 / (1 << 24),
		0x0400: 1.0 / (1 << 14), 0x7c00: float32(math.Inf(1)), 0xfc00: float32(math.Inf(-1)), 0x3555: 0.333251953125,
	} {
		if got := f16ToFloat32(h); got != want {
			t.Errorf("f16ToFloat32(%#04x) = %g, want %g", h, got, want)
		}
	}
	if got := f16ToFloat32(0x8000); math.Float32bits(got) != 0x80000000 {
		t.Errorf("f16ToFloat32(-0) = %g", got)
	}
	if got := f16ToFloat32(0x7e01); math.Float32bits(got) != 0x7fc02000 {
		t.Errorf("f16ToFloat32(NaN 0x7e01) = %#08x, want 0x7fc02000", math.Float32bits(got))
	}
	src := make([]uint16, 1<<16+37)
	for i := range src {
		src[i] = uint16(i)
	}
	for _, l := range levels() {
		atLevel(t, l, func() {
			dst := make([]float32, len(src))
			F16ToFloat32(dst, src)
			for i, h := range src {
				want := f16ToFloat32(h)
				if !sameBits32(dst[i], want) {
					t.Fatalf("%s: float16 %#04x gave %#08x, want %#08x", levelName(l), h, math.Float32bits(dst[i]), math.Float32bits(want))
				}
			}
		})
	}
}

func TestFloat32ToBF16(t *testing.T) {
	// The rounding rule itself.
	for _, c := range []struct {
		x    uint32
		want uint16
	}{
		{0x3f800000, 0x3f80},                // 1
		{0x3f808000, 0x3f80},                // tie, even below
		{0x3f818000, 0x3f82},                // tie, even above
		{0x3f808001, 0x3f81},                // above the tie
		{0x7f7fffff, 0x7f80},                // largest float32 rounds to +Inf
		{0xff800000, 0xff80},                // -Inf
		{0x7f800001, 0x7fc0},                // signalling NaN made quiet
		{0xffc00000, 0xffc0},                // quiet NaN keeps its sign
		{0x00400000, 0x0000},                // subnormal to +0
		{0x807fffff, 0x8000},                // subnormal to -0
		{0x00800000, 0x0080},                // smallest normal
		{0xbf7fffff, 0xbf80},                // -0.99999994 to -1
		{math.Float32bits(3.14159), 0x4049}, // pi
	} {
		if got := bf16FromFloat32(math.Float32frombits(c.x)); got != c.want {
			t.Errorf("bf16FromFloat32(%#08x) = %#04x, want %#04x", c.x, got, c.want)
		}
	}
	r := rand.New(rand.NewPCG(11, 12))
	src := make([]float32, 5000+41)
	for i := range src {
		src[i] = math.Float32frombits(r.Uint32()) // every class: NaN, Inf, subnormal
	}
	for _, l := range levels() {
		for _, on := range bf16Modes() {
			withBF16(t, l, on, func() {
				dst := make([]uint16, len(src))
				Float32ToBF16(dst, src)
				for i, x := range src {
					if want := bf16FromFloat32(x); dst[i] != want {
						t.Fatalf("%s bf16=%v: %#08x gave %#04x, want %#04x", levelName(l), on, math.Float32bits(x), dst[i], want)
					}
				}
			})
		}
	}
}

// randBF16 returns n normal values rounded to bfloat16, and their float64
// values.
func randBF16(r *rand.Rand, n int) ([]uint16, []float64) {
	h, f := make([]uint16, n), make([]float64, n)
	for i := range h {
		h[i] = bf16FromFloat32(float32(r.NormFloat64()))
		f[i] = float64(math.Float32frombits(uint32(h[i]) << 16))
	}
	return h, f
}

// TestGemmBF16 checks both bfloat16 products against float64 products of
// the same (exactly widened) operands on every level, with the
// AVX512_BF16 path on and off: shapes of every size class (odd k
// included), padded strides, operands ending at an unmapped page, and
// entries outside C untouched.
func TestGemmBF16(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	shapes := gemmShapes()
	if testing.Short() {
		shapes = shapes[:30]
	}
	defer releaseGuarded()
	for _, sz := range shapes {
		m, n, k := sz[0], sz[1], sz[2]
		for _, pad := range [][3]int{{0, 0, 0}, {3, 1, 2}} {
			lda, ldb, ldc := k+pad[0], k+pad[1], n+pad[2]
			ldbn := n + pad[1]
			a, af := randBF16(r, (m-1)*lda+k)
			bt, btf := randBF16(r, (n-1)*ldb+k)
			b, bf := randBF16(r, (k-1)*ldbn+n)
			c0 := to32(randSlice(r, (m-1)*ldc+n))
			wantNT, wantNN, bound := make([]float64, len(c0)), make([]float64, len(c0)), make([]float64, len(c0))
			boundNN := make([]float64, len(c0))
			for i := range m {
				for j := range n {
					var s, sa, sn, san float64
					for p := range k {
						x := af[i*lda+p] * btf[j*ldb+p]
						s, sa = s+x, sa+math.Abs(x)
						y := af[i*lda+p] * bf[p*ldbn+j]
						sn, san = sn+y, san+math.Abs(y)
					}
					wantNT[i*ldc+j], bound[i*ldc+j] = s, sa
					wantNN[i*ldc+j], boundNN[i*ldc+j] = float64(c0[i*ldc+j])+sn, san+math.Abs(float64(c0[i*ldc+j]))
				}
			}
			for _, l := range levels() {
				for _, on := range bf16Modes() {
					name := fmt.Sprintf("%s bf16=%v %v ld=%d,%d,%d", levelName(l), on, sz, lda, ldb, ldc)
					withBF16(t, l, on, func() {
						ga, gbt, gb := guarded(a), guarded(bt), guarded(b)
						got := guarded(c0)
						for i := range m {
							for j := range n {
								got[i*ldc+j] = float32(math.NaN())
							}
						}
						GemmNTBF16(m, n, k, ga, lda, gbt, ldb, got, ldc)
						checkBF16(t, "NT "+name, c0, wantNT, bound, got, ldc, n, k)
						got = guarded(c0)
						GemmNNBF16(m, n, k, ga, lda, gb, ldbn, got, ldc)
						checkBF16(t, "NN "+name, c0, wantNN, boundNN, got, ldc, n, k)
					})
				}
			}
		}
	}
}

// checkBF16 allows float32 accumulation error: (k+1) units of rounding of
// the sum of the terms' magnitudes.
func checkBF16(t *testing.T, name string, c0 []float32, want, bound []float64, got []float32, ldc, n, k int) {
	t.Helper()
	for i := range want {
		if i%ldc >= n {
			if !sameBits32(got[i], c0[i]) {
				t.Fatalf("%s: entry %d outside C changed", name, i)
			}
			continue
		}
		tol := float64(k+2)*0x1p-24*bound[i] + 1e-30
		if d := math.Abs(float64(got[i]) - want[i]); !(d <= tol) {
			t.Fatalf("%s: entry %d = %g, want %g (tolerance %g)", name, i, got[i], want[i], tol)
		}
	}
}
