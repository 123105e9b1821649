package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// halfNTShapes are the NT product's (m, n, k): decoding's (GQA groups of
// 1 to 24 query rows against a tile of 256 keys of 128 entries), every row
// count around the kernels' 4 and 8 (a narrow kernel's rows and a wide
// one's), key counts below and around the blocks of 4 and 2, k around the
// vectors of 16, and random ones.
func halfNTShapes() [][3]int {
	shapes := [][3]int{
		{4, 256, 128}, {1, 256, 128}, {2, 256, 64}, {8, 256, 128}, {3, 255, 128}, {5, 257, 96},
		{4, 1, 128}, {4, 3, 16}, {1, 4, 1}, {7, 5, 15}, {6, 6, 17}, {9, 7, 31}, {4, 9, 33},
		{1, 1, 1}, {2, 2, 2}, {13, 61, 80}, {12, 64, 48}, {16, 256, 128}, {6, 5, 128}, {24, 256, 128}, {21, 37, 70},
	}
	r := rand.New(rand.NewPCG(21, 22))
	for range 30 {
		shapes = append(shapes, [3]int{1 + r.IntN(14), 1 + r.IntN(140), 1 + r.IntN(150)})
	}
	return shapes
}

// TestGemmNT32Half checks GemmNT32F16 and GemmNT32BF16 against float64
// products of the same (exactly widened) operands on every level: every
// shape class, padded strides, operands ending right before an unmapped
// page, and entries outside C untouched.
func TestGemmNT32Half(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	defer releaseGuarded()
	for _, bf := range []bool{false, true} {
		gemm := GemmNT32F16
		if bf {
			gemm = GemmNT32BF16
		}
		for _, sz := range halfNTShapes() {
			m, n, k := sz[0], sz[1], sz[2]
			for _, pad := range [][3]int{{0, 0, 0}, {3, 1, 2}, {5, 16, 256}} {
				lda, ldb, ldc := k+pad[0], k+pad[1], n+pad[2]
				a := to32(randSlice(r, (m-1)*lda+k))
				b, bw := randHalf(r, bf, (n-1)*ldb+k)
				c0 := nanC(r, m, n, ldc)
				checkHalfProduct(t, fmt.Sprintf("bf16=%v %v ld=%d,%d,%d", bf, sz, lda, ldb, ldc), gemm, m, n, k, a, lda, b, ldb,
					func(p, j int) float64 { return bw[j*ldb+p] }, c0, ldc, false)
			}
		}
	}
}

// nanC returns an m x n C, row stride ldc, whose entries are NaN (a
// product that sets C must overwrite every one) and whose entries between
// rows are random (it must leave them alone).
func nanC(r *rand.Rand, m, n, ldc int) []float32 {
	c := to32(randSlice(r, (m-1)*ldc+n))
	for i := range m {
		for j := range n {
			c[i*ldc+j] = float32(math.NaN())
		}
	}
	return c
}

// checkHalfProduct runs gemm on every level on copies of a, b and c0
// ending right before an unmapped page, and checks C against the float64
// product of a and B (entry (p, j) of B, p along k, is bAt(p, j)), added
// to c0 or (add false) over it, within float32 rounding, and that entries
// outside C are untouched.
func checkHalfProduct[B uint16 | float32](t *testing.T, name string, gemm func(m, n, k int, a []float32, lda int, b []B, ldb int, c []float32, ldc int),
	m, n, k int, a []float32, lda int, b []B, ldb int, bAt func(p, j int) float64, c0 []float32, ldc int, add bool) {
	t.Helper()
	want, bound := make([]float64, len(c0)), make([]float64, len(c0))
	for i := range m {
		for j := range n {
			var s, sa float64
			if add {
				s, sa = float64(c0[i*ldc+j]), math.Abs(float64(c0[i*ldc+j]))
			}
			for p := range k {
				x := float64(a[i*lda+p]) * bAt(p, j)
				s, sa = s+x, sa+math.Abs(x)
			}
			want[i*ldc+j], bound[i*ldc+j] = s, sa
		}
	}
	for _, l := range levels() {
		atLevel(t, l, func() {
			ga, gb, got := guarded(a), guarded(b), guarded(c0)
			gemm(m, n, k, ga, lda, gb, ldb, got, ldc)
			checkBF16(t, levelName(l)+" "+name, c0, want, bound, got, ldc, n, k)
		})
	}
}

// TestGemmNT64FewRows checks GemmNT64 on the shapes of the few-row
// kernels, whose float64 twins it runs (reading B in place) for 5 to
// NTInPlaceRows64 rows of A, and MultiDot64's kernel for fewer, against
// float64 sums within their rounding, on every level: padded strides,
// guarded pages, entries outside C untouched.
func TestGemmNT64FewRows(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	defer releaseGuarded()
	for _, sz := range halfNTShapes() {
		m, n, k := sz[0], sz[1], sz[2]
		lda, ldb, ldc := k+3, k+1, n+2
		a := randSlice(r, (m-1)*lda+k)
		b := randSlice(r, (n-1)*ldb+k)
		c0 := randSlice(r, (m-1)*ldc+n)
		for _, l := range levels() {
			atLevel(t, l, func() {
				got := guarded(c0)
				for i := range m {
					for j := range n {
						got[i*ldc+j] = math.NaN()
					}
				}
				GemmNT64(m, n, k, guarded(a), lda, guarded(b), ldb, got, ldc)
				for x := range got {
					i, j := x/ldc, x%ldc
					if j >= n {
						if got[x] != c0[x] {
							t.Fatalf("%s %v: entry %d outside C changed", levelName(l), sz, x)
						}
						continue
					}
					var want, mag float64
					for p := range k {
						want += a[i*lda+p] * b[j*ldb+p]
						mag += math.Abs(a[i*lda+p] * b[j*ldb+p])
					}
					if d := math.Abs(got[x] - want); !(d <= float64(k+1)*0x1p-52*mag) {
						t.Fatalf("%s %v: C[%d][%d] = %g, want %g", levelName(l), sz, i, j, got[x], want)
					}
				}
			})
		}
	}
}

// TestGemmNT32FewRows checks GemmNT32 on the shapes of the 16-bit
// kernels, whose float32 twins it runs for up to NTInPlaceRows rows of A
// (reading B in place), as TestGemmNT32Half does: every level, padded
// strides, guarded pages, entries outside C untouched; and that
// infinities and NaNs in B reach the scores of their key.
func TestGemmNT32FewRows(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	defer releaseGuarded()
	for _, sz := range halfNTShapes() {
		m, n, k := sz[0], sz[1], sz[2]
		for _, pad := range [][3]int{{0, 0, 0}, {3, 1, 2}, {5, 16, 256}} {
			lda, ldb, ldc := k+pad[0], k+pad[1], n+pad[2]
			a := to32(randSlice(r, (m-1)*lda+k))
			b := to32(randSlice(r, (n-1)*ldb+k))
			c0 := nanC(r, m, n, ldc)
			checkHalfProduct(t, fmt.Sprintf("%v ld=%d,%d,%d", sz, lda, ldb, ldc), GemmNT32, m, n, k, a, lda, b, ldb,
				func(p, j int) float64 { return float64(b[j*ldb+p]) }, c0, ldc, false)
		}
	}
	const m, n, k = 3, 9, 40
	a := make([]float32, m*k)
	for x := range a {
		a[x] = 1
	}
	b := make([]float32, n*k)
	inf := float32(math.Inf(1))
	b[2*k+39], b[5*k], b[8*k+17] = inf, float32(math.NaN()), -inf
	for _, l := range levels() {
		atLevel(t, l, func() {
			c := make([]float32, m*n)
			GemmNT32(m, n, k, a, k, b, k, c, n)
			for x, v := range c {
				want := map[int]float64{2: math.Inf(1), 5: math.NaN(), 8: math.Inf(-1)}[x%n]
				if got := float64(v); got != want && !(math.IsNaN(got) && x%n == 5) {
					t.Errorf("%s: C[%d][%d] = %v, want %v", levelName(l), x/n, x%n, v, want)
				}
			}
		})
	}
}

// TestGemmNT32HalfSpecials: infinities and NaNs in B reach C as in a
// float32 product of the widened B, in the key and row they belong to.
func TestGemmNT32HalfSpecials(t *testing.T) {
	for _, bf := range []bool{false, true} {
		inf, nan := uint16(0x7c00), uint16(0x7e00)
		gemm := GemmNT32F16
		if bf {
			inf, nan, gemm = 0x7f80, 0x7fc0, GemmNT32BF16
		}
		const m, n, k = 2, 7, 20
		a := make([]float32, m*k)
		for p := range k {
			a[p], a[k+p] = 1, 1
		}
		a[k+19] = 0 // row 1 skips entry 19: 0 * Inf is NaN
		b := make([]uint16, n*k)
		b[1*k+19], b[3*k+2], b[6*k+5] = inf, nan, inf|0x8000
		for _, l := range levels() {
			atLevel(t, l, func() {
				c := make([]float32, m*n)
				gemm(m, n, k, a, k, b, k, c, n)
				for i := range m {
					for j := range n {
						x := float64(c[i*n+j])
						var ok bool
						switch {
						case j == 1 && i == 0:
							ok = math.IsInf(x, 1)
						case j == 1 || j == 3:
							ok = math.IsNaN(x)
						case j == 6:
							ok = math.IsInf(x, -1)
						default:
							ok = x == 0
						}
						if !ok {
							t.Errorf("%s bf16=%v: C[%d][%d] = %v", levelName(l), bf, i, j, x)
						}
					}
				}
			})
		}
	}
}

// TestHalfNext checks the prefetching 16-bit products at every level
// against the plain ones (P V a group of halfNextKeys rows of B at a time,
// as it sums): bit for bit, whatever next is (empty, shorter or
// longer than the operands, ending right before an unmapped page).
func TestHalfNext(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	defer releaseGuarded()
	for _, bf := range []bool{false, true} {
		nt, ntNext, nn, nnNext := GemmNT32F16, GemmNT32F16Next, GemmNN32F16, GemmNN32F16Next
		if bf {
			nt, ntNext, nn, nnNext = GemmNT32BF16, GemmNT32BF16Next, GemmNN32BF16, GemmNN32BF16Next
		}
		for _, sz := range [][3]int{{1, 1, 1}, {4, 256, 128}, {4, 70, 33}, {9, 131, 65}, {2, 3, 300}} {
			m, n, k := sz[0], sz[1], sz[2]
			a := to32(randSlice(r, m*max(n, k)))
			b, _ := randHalf(r, bf, n*k)
			c0 := to32(randSlice(r, m*max(n, k)))
			for _, l := range levels() {
				atLevel(t, l, func() {
					for _, nextLen := range []int{0, 1, 17, 1000, 70000} {
						name := fmt.Sprintf("%s bf16=%v %v next=%d", levelName(l), bf, sz, nextLen)
						next, _ := randHalf(r, bf, nextLen)
						next = guarded(next)
						want, got := append([]float32(nil), c0...), guarded(c0)
						nt(m, n, k, a, k, b, k, want, n)
						ntNext(m, n, k, guarded(a), k, guarded(b), k, got, n, next)
						want2, got2 := append([]float32(nil), c0...), guarded(c0)
						// The prefetching P V adds to C halfNextKeys rows
						// of B at a time.
						for p := 0; p < n; p += halfNextKeys {
							nn(m, k, min(halfNextKeys, n-p), a[p:], n, b[p*k:], k, want2, k)
						}
						nnNext(m, k, n, guarded(a), n, guarded(b), k, got2, k, next)
						for i := range want {
							if !sameBits32(got[i], want[i]) || !sameBits32(got2[i], want2[i]) {
								t.Fatalf("%s: entry %d = %g, %g; without prefetch %g, %g", name, i, got[i], got2[i], want[i], want2[i])
							}
						}
					}
				})
			}
		}
	}
}

// TestGemmNTRowsSameBits checks what exact's forward and backward rely on
// (scoresInPlace there): reading B in place, GemmNT32 and GemmNT32F16 give
// each entry of C the same bits whatever the call it is computed in: the
// whole product, every stretch of rows against every stretch of keys (one
// key, fewer keys than a kernel's block, a few blocks and a remainder), on
// every level. So does GemmNT64 for calls of 5 to NTInPlaceRows64 rows
// (fewer go through MultiDot64, which sums in another order).
func TestGemmNTRowsSameBits(t *testing.T) {
	r := rand.New(rand.NewPCG(33, 34))
	const m, n = NTInPlaceRows, 37
	for _, k := range []int{1, 7, 16, 45, 128} {
		a := randSlice(r, m*k)
		b := randSlice(r, n*k)
		b16, _ := randHalf(r, false, n*k)
		a32, b32 := to32(a), to32(b)
		for _, l := range levels() {
			atLevel(t, l, func() {
				whole32, whole16, whole64 := make([]float32, m*n), make([]float32, m*n), make([]float64, m*n)
				GemmNT32(m, n, k, a32, k, b32, k, whole32, n)
				GemmNT32F16(m, n, k, a32, k, b16, k, whole16, n)
				GemmNT64(NTInPlaceRows64, n, k, a, k, b, k, whole64, n)
				for rows := 1; rows <= m; rows += 5 {
					for i0 := 0; i0+rows <= m; i0 += rows {
						for _, w := range []int{1, 2, 3, 5, 9, 14} {
							for j0 := 0; j0 < n; j0 += w {
								cols := min(w, n-j0)
								c32, c16, c64 := make([]float32, rows*cols), make([]float32, rows*cols), make([]float64, rows*cols)
								GemmNT32(rows, cols, k, a32[i0*k:], k, b32[j0*k:], k, c32, cols)
								GemmNT32F16(rows, cols, k, a32[i0*k:], k, b16[j0*k:], k, c16, cols)
								GemmNT64(rows, cols, k, a[i0*k:], k, b[j0*k:], k, c64, cols)
								for i := range rows {
									for j := range cols {
										x := (i0+i)*n + j0 + j
										if c32[i*cols+j] != whole32[x] || c16[i*cols+j] != whole16[x] || (rows > 4 && i0+rows <= NTInPlaceRows64 && c64[i*cols+j] != whole64[x]) {
											t.Fatalf("%s k=%d: C[%d][%d] from rows %d+%d, keys %d+%d is %g, %g, %g; from the whole product %g, %g, %g",
												levelName(l), k, i0+i, j0+j, i0, rows, j0, cols, c32[i*cols+j], c16[i*cols+j], c64[i*cols+j], whole32[x], whole16[x], whole64[x])
										}
									}
								}
							}
						}
					}
				}
			})
		}
	}
}
