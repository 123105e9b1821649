package kernels

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
)

// levels returns every dispatch level this machine can run, lowest first.
func levels() []int {
	var ls []int
	for l := levelGo; l <= maxLevel; l++ {
		ls = append(ls, l)
	}
	return ls
}

// atLevel runs f with the dispatch forced to l.
func atLevel(t testing.TB, l int, f func()) {
	t.Helper()
	old := level
	level = l
	defer func() { level = old }()
	f()
}

func TestLevels(t *testing.T) {
	t.Logf("dispatch: max level %s; AVX512_BF16: %v; bfloat16 products on VDPBF16PS: %v", levelName(maxLevel), hasBF16, BF16Dot())
}

// gemmShapes are the shapes every level is checked on: degenerate and odd
// sizes, sizes around every vector width and microkernel block, the
// attention tiles, and sizes past the cache blocks (kcBlock, mcBlock,
// ncBlock).
func gemmShapes() [][3]int {
	shapes := [][3]int{
		{1, 1, 1}, {1, 7, 3}, {5, 3, 1}, {17, 33, 9}, {64, 64, 64}, {31, 129, 67}, {3, 300, 128},
		{2, 1, 5}, {1, 2, 16}, {7, 9, 8}, {12, 32, 4}, {13, 33, 5}, {6, 16, 7}, {11, 17, 3},
		{64, 128, 16}, {64, 256, 32}, {64, 200, 64}, {64, 64, 128}, {64, 16, 256}, {64, 48, 200},
		{50, 20, 257}, {200, 40, 30}, {9, 600, 20}, {25, 70, 520},
		{40, 100, 256}, {30, 70, 512}, {400, 50, 30}, {390, 33, 260}, // copied A, packed NN B
	}
	r := rand.New(rand.NewPCG(7, 8))
	for range 40 {
		shapes = append(shapes, [3]int{1 + r.IntN(40), 1 + r.IntN(70), 1 + r.IntN(40)})
	}
	return shapes
}

func TestGemmLevels(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, sz := range gemmShapes() {
		m, n, k := sz[0], sz[1], sz[2]
		for _, pad := range [][3]int{{0, 0, 0}, {3, 1, 2}, {37, 129, 64}} {
			lda, ldb, ldc := k+pad[0], k+pad[1], n+pad[2]
			ldbn := n + pad[1]
			a := randSlice(r, (m-1)*lda+k)
			bt := randSlice(r, (n-1)*ldb+k)
			b := randSlice(r, (k-1)*ldbn+n)
			c0 := randSlice(r, (m-1)*ldc+n)
			wantNT := append([]float64(nil), c0...)
			gonumGemm(blas.Trans, m, n, k, a, lda, bt, ldb, wantNT, ldc, 0)
			wantNN := append([]float64(nil), c0...)
			gonumGemm(blas.NoTrans, m, n, k, a, lda, b, ldbn, wantNN, ldc, 1)
			a32, bt32, b32 := to32(a), to32(bt), to32(b)
			defer releaseGuarded()
			for _, l := range levels() {
				name := fmt.Sprintf("%s %v ld=%d,%d,%d", levelName(l), sz, lda, ldb, ldc)
				atLevel(t, l, func() {
					// Guarded slices end at an unmapped page, so a read or
					// write past an operand's last element faults.
					ga, gbt, gb := guarded(a), guarded(bt), guarded(b)
					ga32, gbt32, gb32 := guarded(a32), guarded(bt32), guarded(b32)

					// NT overwrites C: start from NaN garbage inside C.
					got := guarded(c0)
					got32 := guarded(to32(c0))
					for i := range m {
						for j := range n {
							got[i*ldc+j] = math.NaN()
							got32[i*ldc+j] = float32(math.NaN())
						}
					}
					GemmNT64(m, n, k, ga, lda, gbt, ldb, got, ldc)
					GemmNT32(m, n, k, ga32, lda, gbt32, ldb, got32, ldc)
					checkClose2(t, "NT "+name, c0, wantNT, got, got32, ldc, n, k)

					got = guarded(c0)
					got32 = guarded(to32(c0))
					GemmNN64(m, n, k, ga, lda, gb, ldbn, got, ldc)
					GemmNN32(m, n, k, ga32, lda, gb32, ldbn, got32, ldc)
					checkClose2(t, "NN "+name, c0, wantNN, got, got32, ldc, n, k)
				})
			}
		}
	}
}

// checkClose2 compares with gonum inside C and requires every entry outside
// C (between rows, when ldc > n) to be untouched.
func checkClose2(t *testing.T, name string, c0, want, got []float64, got32 []float32, ldc, n, k int) {
	t.Helper()
	for i := range want {
		if i%ldc >= n {
			if got[i] != c0[i] || got32[i] != float32(c0[i]) {
				t.Fatalf("%s: entry %d outside C changed", name, i)
			}
			continue
		}
		tol64 := 1e-13 * float64(k+1)
		tol32 := 2e-6 * float64(k+1)
		if d := math.Abs(got[i] - want[i]); !(d <= tol64*(1+math.Abs(want[i]))) {
			t.Fatalf("%s float64: entry %d = %g, gonum %g", name, i, got[i], want[i])
		}
		if d := math.Abs(float64(got32[i]) - want[i]); !(d <= tol32*(1+math.Abs(want[i]))) {
			t.Fatalf("%s float32: entry %d = %g, gonum %g", name, i, got32[i], want[i])
		}
	}
}

// TestGemmAsmVsGo compares each assembly level with the portable code on
// the attention shapes, where both must agree to rounding.
func TestGemmAsmVsGo(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, d := range []int{16, 32, 64, 128} {
		for _, n := range []int{128, 256} {
			m := 64
			q, kk, v := to32(randSlice(r, m*d)), to32(randSlice(r, n*d)), to32(randSlice(r, n*d))
			ref := make([]float32, m*n)
			atLevel(t, levelGo, func() { GemmNT32(m, n, d, q, d, kk, d, ref, n) })
			refNN := make([]float32, m*d)
			atLevel(t, levelGo, func() { GemmNN32(m, d, n, ref, n, v, d, refNN, d) })
			for _, l := range levels()[1:] {
				got := make([]float32, m*n)
				gotNN := make([]float32, m*d)
				atLevel(t, l, func() {
					GemmNT32(m, n, d, q, d, kk, d, got, n)
					GemmNN32(m, d, n, ref, n, v, d, gotNN, d)
				})
				for i := range got {
					if math.Abs(float64(got[i]-ref[i])) > 1e-5*float64(d) {
						t.Fatalf("%s NT d=%d n=%d: %d: %g vs go %g", levelName(l), d, n, i, got[i], ref[i])
					}
				}
				for i := range gotNN {
					if math.Abs(float64(gotNN[i]-refNN[i])) > 1e-5*float64(n)*(1+math.Abs(float64(refNN[i]))) {
						t.Fatalf("%s NN d=%d n=%d: %d: %g vs go %g", levelName(l), d, n, i, gotNN[i], refNN[i])
					}
				}
			}
		}
	}
}

// ulp32 is the distance in representable float32 values between two
// non-negative finite floats.
func ulp32(a, b float32) int64 {
	d := int64(math.Float32bits(a)) - int64(math.Float32bits(b))
	if d < 0 {
		d = -d
	}
	return d
}

// exp32Args is a dense sweep of [-87, 0]: every float32 whose bit pattern
// is a multiple of step, plus random arguments.
func exp32Args(step uint32) []float32 {
	var xs []float32
	lim := math.Float32bits(87)
	for u := uint32(0); u <= lim; u += step {
		xs = append(xs, -math.Float32frombits(u))
	}
	r := rand.New(rand.NewPCG(11, 12))
	for range 1 << 16 {
		xs = append(xs, -87*r.Float32())
	}
	return append(xs, 0, -87, float32(math.Copysign(0, -1)), -1e-30, -0.34657359, -0.34657362)
}

func TestExp32Ulp(t *testing.T) {
	step := uint32(97)
	if testing.Short() {
		step = 997
	}
	checkUlp32(t, "exp", "[-87, 0]", exp32Args(step), func(xs []float32) { ExpShiftSum32(xs, 1, 0) }, math.Exp)
}

// checkUlp32 runs kernel on a copy of args at every level and fails if a
// result is more than 2 ulp from ref's, computed in float64 and rounded.
func checkUlp32(t *testing.T, name, span string, args []float32, kernel func(xs []float32), ref func(float64) float64) {
	t.Helper()
	for _, l := range levels() {
		xs := append([]float32(nil), args...)
		atLevel(t, l, func() { kernel(xs) })
		var worst int64
		var worstX float32
		for i, x := range args {
			if d := ulp32(xs[i], float32(ref(float64(x)))); d > worst {
				worst, worstX = d, x
			}
		}
		t.Logf("%s: float32 %s max error %d ulp (at %g) over %d args in %s", levelName(l), name, worst, worstX, len(args), span)
		if worst > 2 {
			t.Errorf("%s: float32 %s error %d ulp at %g", levelName(l), name, worst, worstX)
		}
	}
}

func TestExp32Special(t *testing.T) {
	negZero := float32(math.Copysign(0, -1))
	cases := []float32{-87.5, -88, -90, -100, -103.9, -104, -105, -110, -200, -1e30, -math.MaxFloat32,
		float32(math.Inf(-1)), 0, negZero, 1, 10, 88, 88.7, 89, 100, float32(math.Inf(1)), float32(math.NaN())}
	for _, l := range levels() {
		xs := append([]float32(nil), cases...)
		atLevel(t, l, func() { ExpShiftSum32(xs[:len(xs)-1], 1, 0) })
		atLevel(t, l, func() { ExpShiftSum32(xs[len(xs)-1:], 1, 0) })
		for i, x := range cases {
			got := xs[i]
			want := math.Exp(float64(x))
			switch {
			case x != x:
				if got == got {
					t.Errorf("%s: exp(NaN) = %g", levelName(l), got)
				}
			case x < -87:
				// 0 or a subnormal no larger than the true value rounded up.
				if !(got >= 0 && float64(got) <= math.Max(want*1.01, 0)+1.5e-45) {
					t.Errorf("%s: exp(%g) = %g, want 0 or about %g", levelName(l), x, got, want)
				}
			case want > math.MaxFloat32:
				if !math.IsInf(float64(got), 1) {
					t.Errorf("%s: exp(%g) = %g, want +Inf", levelName(l), x, got)
				}
			default:
				if ulp32(got, float32(want)) > 2 {
					t.Errorf("%s: exp(%g) = %g, want %g", levelName(l), x, got, float32(want))
				}
			}
		}
	}
}

func TestExp64(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	var args []float64
	for i := range 200000 {
		args = append(args, -708*float64(i)/200000)
	}
	for range 100000 {
		args = append(args, -708*r.Float64(), -r.Float64(), -1e-10*r.Float64())
	}
	args = append(args, 0, math.Copysign(0, -1), -0.34657359027997264, -0.3465735902799727, -708.39)
	for _, l := range levels() {
		xs := append([]float64(nil), args...)
		atLevel(t, l, func() { ExpShiftSum64(xs, 1, 0) })
		var worst, worstX float64
		for i, x := range args {
			want := math.Exp(x)
			if e := math.Abs(xs[i]-want) / want; e > worst {
				worst, worstX = e, x
			}
		}
		t.Logf("%s: float64 exp max relative error %.3g (at %g)", levelName(l), worst, worstX)
		if worst > 1e-15 {
			t.Errorf("%s: float64 exp relative error %g at %g", levelName(l), worst, worstX)
		}
	}
}

func TestExp64Special(t *testing.T) {
	cases := []float64{-709, -720, -744, -745, -745.2, -746, -800, -1e300, math.Inf(-1), 0, 1, 700, 710, 1000, math.Inf(1), math.NaN()}
	for _, l := range levels() {
		xs := append([]float64(nil), cases...)
		atLevel(t, l, func() { ExpShiftSum64(xs[:len(xs)-1], 1, 0) })
		atLevel(t, l, func() { ExpShiftSum64(xs[len(xs)-1:], 1, 0) })
		for i, x := range cases {
			got, want := xs[i], math.Exp(x)
			switch {
			case x != x:
				if got == got {
					t.Errorf("%s: exp(NaN) = %g", levelName(l), got)
				}
			case want < 0x1p-1022:
				// The subnormal range: 0 (AVX-512 flushes it) or the true
				// value to within its last unit.
				if !(got >= 0 && got <= want+0x1p-1074) {
					t.Errorf("%s: exp(%g) = %g, want %g", levelName(l), x, got, want)
				}
			case math.IsInf(want, 1):
				if !math.IsInf(got, 1) {
					t.Errorf("%s: exp(%g) = %g, want +Inf", levelName(l), x, got)
				}
			default:
				if math.Abs(got-want) > 1e-15*want {
					t.Errorf("%s: exp(%g) = %g, want %g", levelName(l), x, got, want)
				}
			}
		}
	}
}

// TestExpShiftSumLengths checks every tail length, the sum, and that
// nothing past the slice is touched.
func TestExpShiftSumLengths(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for n := range 70 {
		x := randSlice(r, n)
		for _, l := range levels() {
			atLevel(t, l, func() {
				y64 := guarded(x)
				y32 := guarded(to32(x))
				s64 := ExpShiftSum64(y64, 1.5, 4)
				s32 := ExpShiftSum32(y32, 1.5, 4)
				var w64, w32 float64
				for i, v := range x {
					e := math.Exp(1.5*v - 4)
					w64 += e
					if math.Abs(y64[i]-e) > 1e-15*e {
						t.Fatalf("%s n=%d: exp64[%d] = %g, want %g", levelName(l), n, i, y64[i], e)
					}
					e32 := math.Exp(float64(float32(1.5)*float32(v) - 4))
					w32 += e32
					if math.Abs(float64(y32[i])-e32) > 2.5e-7*e32 {
						t.Fatalf("%s n=%d: exp32[%d] = %g, want %g", levelName(l), n, i, y32[i], e32)
					}
				}
				if math.Abs(s64-w64) > 1e-14*w64 || math.Abs(float64(s32)-w32) > 1e-6*w32 {
					t.Fatalf("%s n=%d: sums %g %g, want %g %g", levelName(l), n, s64, s32, w64, w32)
				}
			})
		}
	}
}

func TestMaxLevels(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	negZero := math.Copysign(0, -1)
	for n := range 70 {
		x := randSlice(r, n)
		for _, l := range levels() {
			atLevel(t, l, func() {
				want := maxGo(x)
				if got := Max64(guarded(x)); got != want {
					t.Fatalf("%s n=%d: Max64 %g, want %g", levelName(l), n, got, want)
				}
				if got := Max32(guarded(to32(x))); got != float32(want) {
					t.Fatalf("%s n=%d: Max32 %g, want %g", levelName(l), n, got, want)
				}
				if n == 0 {
					return
				}
				for _, special := range []float64{math.NaN(), math.Inf(1)} {
					y := append([]float64(nil), x...)
					y[r.IntN(n)] = special
					if got, want := Max64(y), maxGo(y); !(got == want || got != got && want != want) {
						t.Fatalf("%s n=%d: Max64 %g, want %g", levelName(l), n, got, want)
					}
					if got, want := Max32(to32(y)), maxGo(to32(y)); !(got == want || got != got && want != want) {
						t.Fatalf("%s n=%d: Max32 %g, want %g", levelName(l), n, got, want)
					}
				}
				// Signed zeros: the max builtin returns +0 if present.
				z := make([]float64, n)
				for i := range z {
					z[i] = -1 - float64(i)
				}
				z[r.IntN(n)] = negZero
				if got := Max64(z); got != 0 || !math.Signbit(got) {
					t.Fatalf("%s n=%d: Max64 of -0s = %g", levelName(l), n, got)
				}
				z[r.IntN(n)] = 0
				got := Max64(z)
				if want := maxGo(z); math.Signbit(got) != math.Signbit(want) {
					t.Fatalf("%s n=%d: Max64 sign of zero", levelName(l), n)
				}
				if got, want := Max32(to32(z)), maxGo(to32(z)); math.Signbit(float64(got)) != math.Signbit(float64(want)) {
					t.Fatalf("%s n=%d: Max32 sign of zero", levelName(l), n)
				}
			})
		}
	}
}

var exp32All = flag.Bool("exp32all", false, "check the float32 exponential on every float32 in [-87, 0] (slow)")

// TestExp32Exhaustive checks every float32 argument in [-87, 0] when run
// with -exp32all.
func TestExp32Exhaustive(t *testing.T) {
	if !*exp32All {
		t.Skip("run with -exp32all")
	}
	lim := math.Float32bits(87)
	const chunk = 1 << 16
	buf := make([]float32, chunk)
	for _, l := range levels() {
		var worst int64
		var worstX float32
		for u0 := uint32(0); u0 <= lim; u0 += chunk {
			n := min(chunk, int(lim-u0)+1)
			for i := range n {
				buf[i] = -math.Float32frombits(u0 + uint32(i))
			}
			atLevel(t, l, func() { ExpShiftSum32(buf[:n], 1, 0) })
			for i := range n {
				x := -math.Float32frombits(u0 + uint32(i))
				if d := ulp32(buf[i], float32(math.Exp(float64(x)))); d > worst {
					worst, worstX = d, x
				}
			}
		}
		t.Logf("%s: float32 exp max error %d ulp (at %g) over all of [-87, 0]", levelName(l), worst, worstX)
		if worst > 2 {
			t.Errorf("%s: float32 exp error %d ulp at %g", levelName(l), worst, worstX)
		}
	}
}

func TestImplementation(t *testing.T) {
	if got, want := Implementation(), levelName(maxLevel); got != want {
		t.Fatalf("Implementation() = %q, want %q", got, want)
	}
}
