package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// packedPaths are the ways GemmPackedBF16 can run, all tested where this
// machine has them: AMX tiles where it grants them, VDPBF16PS where the
// CPU has AVX512_BF16, and portable Go everywhere.
func packedPaths() []string {
	paths := []string{"portable"}
	if hasBF16 {
		paths = append(paths, "dot")
	}
	if AMX() {
		paths = append(paths, "amx")
	}
	return paths
}

// withPackedPath runs f with GemmPackedBF16 on the named path.
func withPackedPath(t testing.TB, path string, f func()) {
	t.Helper()
	old := amxOff
	amxOff = path != "amx"
	defer func() { amxOff = old }()
	if path == "amx" {
		f()
		return
	}
	withBF16(t, maxLevel, path == "dot", f)
}

func TestLevelsAMX(t *testing.T) {
	t.Logf("AMX bfloat16 tiles: %v; packed bfloat16 products on hardware: %v", AMX(), PackedBF16Fast())
}

// TestGemmPackedBF16 checks both packings on both paths against float64
// sums of the same products: every product is exact in float32, so the
// result must be within (k+2)·2^-24 of the sum of the terms' magnitudes.
// Entries of C outside the m x n block must stay untouched.
func TestGemmPackedBF16(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	shapes := [][3]int{
		{1, 1, 1}, {16, 16, 32}, {32, 32, 64}, {48, 48, 96}, {15, 17, 31}, {17, 33, 33}, {33, 47, 65},
		{64, 256, 128}, {64, 128, 256}, {64, 64, 256}, {72, 80, 64}, {3, 300, 7}, {100, 5, 200}, {31, 16, 32},
	}
	for range 20 {
		shapes = append(shapes, [3]int{1 + r.IntN(70), 1 + r.IntN(70), 1 + r.IntN(150)})
	}
	for _, sz := range shapes {
		m, n, k := sz[0], sz[1], sz[2]
		for _, pad := range [][2]int{{0, 0}, {5, 3}} {
			lda, ldb, ldc := k+pad[0], k+pad[1], n+pad[1]
			a := bf16s(r, m*lda)
			bt := bf16s(r, n*ldb)         // B^T, n x k
			bn := make([]uint16, k*(n+1)) // the same B, k x n, stride n+1
			for j := range n {
				for x := range k {
					bn[x*(n+1)+j] = bt[j*ldb+x]
				}
			}
			pnt := make([]uint16, PackedBF16Len(n, k))
			pnn := make([]uint16, PackedBF16Len(n, k))
			PackBF16NT(pnt, n, k, bt, ldb)
			PackBF16NN(pnn, k, n, bn, n+1)
			for i := range pnt {
				if pnt[i] != pnn[i] {
					t.Fatalf("%dx%dx%d: the NT and NN packings of one B differ at %d", m, n, k, i)
				}
			}
			c0 := make([]float32, m*ldc)
			for i := range c0 {
				c0[i] = float32(r.Float64()*2 - 1)
			}
			for _, path := range packedPaths() {
				for _, acc := range []bool{false, true} {
					c := append([]float32(nil), c0...)
					withPackedPath(t, path, func() { GemmPackedBF16(m, n, k, a, lda, pnt, c, ldc, acc) })
					for i := range m {
						for j := 0; j < ldc; j++ {
							got := c[i*ldc+j]
							if j >= n {
								if !sameBits32(got, c0[i*ldc+j]) {
									t.Fatalf("%s %dx%dx%d: C[%d,%d] outside the product changed", path, m, n, k, i, j)
								}
								continue
							}
							var want, mag float64
							if acc {
								want, mag = float64(c0[i*ldc+j]), math.Abs(float64(c0[i*ldc+j]))
							}
							for x := range k {
								p := float64(bf16Value(a[i*lda+x])) * float64(bf16Value(bt[j*ldb+x]))
								want += p
								mag += math.Abs(p)
							}
							if tol := float64(k+2) * 0x1p-24 * mag; math.Abs(float64(got)-want) > tol {
								t.Fatalf("%s %dx%dx%d acc=%v: C[%d,%d] = %g, want %g (tolerance %.3g)", path, m, n, k, acc, i, j, got, want, tol)
							}
						}
					}
				}
			}
		}
	}
}

// TestGemmPackedBF16Guarded runs aligned shapes (A read in place, C
// written in place) with every operand ending right before an unmapped
// page: the tile loads and stores must stay inside them.
func TestGemmPackedBF16Guarded(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	for _, sz := range [][3]int{{16, 16, 32}, {48, 80, 96}, {64, 256, 128}, {20, 40, 70}} {
		m, n, k := sz[0], sz[1], sz[2]
		a := guarded(bf16s(r, m*k))
		bt := bf16s(r, n*k)
		bp := make([]uint16, PackedBF16Len(n, k))
		PackBF16NT(bp, n, k, bt, k)
		bp = guarded(bp)
		want := make([]float32, m*n)
		withPackedPath(t, "portable", func() { GemmPackedBF16(m, n, k, a, k, bp, want, n, false) })
		for _, path := range packedPaths() {
			c := guarded(make([]float32, m*n))
			withPackedPath(t, path, func() { GemmPackedBF16(m, n, k, a, k, bp, c, n, false) })
			for i := range c {
				if d := math.Abs(float64(c[i] - want[i])); d > float64(k+2)*0x1p-24*float64(k)*16 {
					t.Fatalf("%s %dx%dx%d: entry %d = %g, portable %g", path, m, n, k, i, c[i], want[i])
				}
			}
		}
	}
	releaseGuarded()
}

// BenchmarkGemmPackedBF16 compares, in one run, the packed bfloat16
// product on each hardware path here (AMX, VDPBF16PS) on exact attention's
// tile shapes (Q K^T: 64 queries x 256 keys x d; P V: 64 x d x 256 keys)
// with the float32 GEMM (GemmNT32, GemmNN32) on the same shapes, in
// GFLOP/s per core.
func BenchmarkGemmPackedBF16(b *testing.B) {
	if !PackedBF16Fast() {
		b.Skip("no hardware bfloat16 products here")
	}
	r := rand.New(rand.NewPCG(1, 2))
	for _, d := range []int{64, 128} {
		for _, sh := range []struct {
			name    string
			m, n, k int
		}{{"qk", 64, 256, d}, {"pv", 64, d, 256}} {
			m, n, k := sh.m, sh.n, sh.k
			flops := 2 * float64(m*n*k)
			a := bf16s(r, m*k)
			bt := bf16s(r, n*k)
			bp := make([]uint16, PackedBF16Len(n, k))
			PackBF16NT(bp, n, k, bt, k)
			c := make([]float32, m*n)
			a32, b32 := make([]float32, m*k), make([]float32, n*k)
			BF16ToFloat32(a32, a)
			BF16ToFloat32(b32, bt)
			for _, path := range packedPaths()[1:] {
				b.Run(fmt.Sprintf("%s-d%d/%s", sh.name, d, path), func(b *testing.B) {
					withPackedPath(b, path, func() {
						for b.Loop() {
							GemmPackedBF16(m, n, k, a, k, bp, c, n, false)
						}
					})
					b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
			b.Run(fmt.Sprintf("%s-d%d/float32", sh.name, d), func(b *testing.B) {
				for b.Loop() {
					if sh.name == "qk" {
						GemmNT32(m, n, k, a32, k, b32, k, c, n)
					} else {
						GemmNN32(m, n, k, a32, k, b32, n, c, n)
					}
				}
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// bf16s returns n random normal values rounded to bfloat16.
func bf16s(r *rand.Rand, n int) []uint16 {
	x, _ := randBF16(r, n)
	return x
}

// TestGemmPackedBF16Concurrent runs products on many goroutines at once
// (more than GOMAXPROCS, so threads switch between them and signals for
// preemption arrive during the products): every result must be bit for
// bit the one computed alone, so no tile state leaks between threads or
// is lost to a signal.
func TestGemmPackedBF16Concurrent(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	const m, n, k = 64, 96, 160
	a := bf16s(r, m*k)
	bp := make([]uint16, PackedBF16Len(n, k))
	PackBF16NT(bp, n, k, bf16s(r, n*k), k)
	want := make([]float32, m*n)
	GemmPackedBF16(m, n, k, a, k, bp, want, n, false)
	rounds := 300
	if testing.Short() {
		rounds = 50
	}
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			c := make([]float32, m*n)
			for x := range rounds {
				GemmPackedBF16(m, n, k, a, k, bp, c, n, false)
				for i := range c {
					if !sameBits32(c[i], want[i]) {
						errs <- fmt.Errorf("goroutine %d round %d: entry %d = %g, want %g", g, x, i, c[i], want[i])
						return
					}
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// TestSplitBF16 checks the split on every class of float32 (NaN, Inf,
// subnormal, random bits) against the portable rule, on the AVX512_BF16
// path and off it, and the 2^-16 relative accuracy of hi + lo on normal
// numbers.
func TestSplitBF16(t *testing.T) {
	r := rand.New(rand.NewPCG(27, 28))
	src := make([]float32, 3000+45)
	for i := range src {
		if i%2 == 0 {
			src[i] = math.Float32frombits(r.Uint32())
		} else {
			src[i] = float32(r.Float64()) // probabilities
		}
	}
	for _, on := range bf16Modes() {
		withBF16(t, level, on, func() {
			hi, lo := make([]uint16, len(src)), make([]uint16, len(src))
			SplitBF16(hi, lo, src)
			for i, x := range src {
				wh := bf16FromFloat32(x)
				wl := bf16FromFloat32(x - bf16Value(wh))
				if hi[i] != wh || lo[i] != wl {
					t.Fatalf("bf16 path %v: %g (%#08x) split into %#04x + %#04x, want %#04x + %#04x", on, x, math.Float32bits(x), hi[i], lo[i], wh, wl)
				}
				if a := math.Abs(float64(x)); a >= 0x1p-100 && a < 0x1p120 {
					if d := math.Abs(float64(x) - float64(bf16Value(hi[i])) - float64(bf16Value(lo[i]))); d > 0x1p-16*a {
						t.Fatalf("%g: hi + lo off by %g", x, d)
					}
				}
			}
		})
	}
}

// TestGemmPackedBF16Prefix multiplies by the first k rows of a B packed
// for a greater depth, on both paths, against the float64 sums over those
// rows only.
func TestGemmPackedBF16Prefix(t *testing.T) {
	r := rand.New(rand.NewPCG(29, 30))
	for _, sz := range [][4]int{{16, 16, 32, 64}, {64, 128, 96, 512}, {64, 64, 100, 512}, {20, 40, 7, 70}, {33, 17, 64, 65}} {
		m, n, k, kp := sz[0], sz[1], sz[2], sz[3]
		a := bf16s(r, m*k)
		b := bf16s(r, kp*n) // kp x n
		bp := make([]uint16, PackedBF16Len(n, kp))
		PackBF16NN(bp, kp, n, b, n)
		for _, path := range packedPaths() {
			for _, acc := range []bool{false, true} {
				c := make([]float32, m*n)
				for i := range c {
					c[i] = 1
				}
				withPackedPath(t, path, func() { GemmPackedBF16Prefix(m, n, k, kp, a, k, bp, c, n, acc) })
				for i := range m {
					for j := range n {
						var want, mag float64
						if acc {
							want, mag = 1, 1
						}
						for x := range k {
							p := float64(bf16Value(a[i*k+x])) * float64(bf16Value(b[x*n+j]))
							want += p
							mag += math.Abs(p)
						}
						if d := math.Abs(float64(c[i*n+j]) - want); d > float64(k+2)*0x1p-24*mag {
							t.Fatalf("%s %v: %dx%dx%d of %d: C[%d,%d] = %g, want %g", path, sz, m, n, k, kp, i, j, c[i*n+j], want)
						}
					}
				}
			}
		}
	}
}

// TestPackBF16Layout checks both packings entry by entry against the
// layout's definition, into buffers holding garbage (the packings must
// write every entry, the zeros beyond n and k included).
func TestPackBF16Layout(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	shapes := [][2]int{{1, 1}, {16, 32}, {17, 33}, {512, 64}, {64, 512}, {15, 31}, {100, 7}, {3, 200}}
	for range 20 {
		shapes = append(shapes, [2]int{1 + r.IntN(90), 1 + r.IntN(150)})
	}
	for _, sz := range shapes {
		n, k := sz[0], sz[1]
		ldb := k + 3
		bt := bf16s(r, n*ldb) // B^T, n x k
		bn := make([]uint16, k*(n+2))
		for j := range n {
			for x := range k {
				bn[x*(n+2)+j] = bt[j*ldb+x]
			}
		}
		ks := (k + 31) / 32
		want := make([]uint16, PackedBF16Len(n, k))
		for j := range n {
			for x := range k {
				want[j/16*ks*512+x/32*512+x%32/2*32+2*(j%16)+x%2] = bt[j*ldb+x]
			}
		}
		for name, pack := range map[string]func([]uint16){
			"NT": func(dst []uint16) { PackBF16NT(dst, n, k, bt, ldb) },
			"NN": func(dst []uint16) { PackBF16NN(dst, k, n, bn, n+2) },
		} {
			// Every level (the assembly packs whole panels' pairs), into
			// an aligned buffer and one 2 bytes off (which the assembly,
			// storing pairs as uint32, leaves to Go).
			for _, l := range levels() {
				for _, off := range []int{0, 1} {
					got := make([]uint16, len(want)+1)[off:][:len(want)]
					for i := range got {
						got[i] = 0xffff
					}
					atLevel(t, l, func() { pack(got) })
					for i := range want {
						if got[i] != want[i] {
							t.Fatalf("Pack%s %dx%d at %s, offset %d: entry %d = %#x, want %#x", name, n, k, levelName(l), off, i, got[i], want[i])
						}
					}
				}
			}
		}
	}
}

// BenchmarkPackBF16 packs one tile of attention's bfloat16 keys (512 x d,
// PackBF16NT) and values (PackBF16NN) at every level: the assembly packs
// whole panels at AVX-512, Go the rest and everything below it. Run e.g.
// `go test -run - -bench PackBF16 ./internal/kernels/`.
func BenchmarkPackBF16(b *testing.B) {
	const rows = 512
	for _, d := range []int{64, 128} {
		src := make([]uint16, rows*d)
		for i := range src {
			src[i] = 0x3f80 + uint16(i%64)
		}
		dst := make([]uint16, PackedBF16Len(rows, d))
		for _, l := range levels() {
			for _, c := range []struct {
				name string
				pack func()
			}{
				{"keys", func() { PackBF16NT(dst, rows, d, src, d) }},
				{"values", func() { PackBF16NN(dst, rows, d, src, d) }},
			} {
				b.Run(fmt.Sprintf("d=%d/%s/%s", d, levelName(l), c.name), func(b *testing.B) {
					atLevel(b, l, func() {
						for b.Loop() {
							c.pack()
						}
					})
				})
			}
		}
	}
}
