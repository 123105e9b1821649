package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
)

// TestPackedNT checks PackedNT.GemmNT against GemmNT's packed product at
// every level (for few rows GemmNT reads B in place instead): the same
// microkernels on the same panels, so the results must be identical.
// B is packed by two goroutines at once, and the products cover tiles at
// every aligned offset, including the ragged last one.
func TestPackedNT(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	shapes := [][3]int{ // m, n (rows of B), k
		{1, 1, 1}, {3, 5, 7}, {12, 32, 64}, {13, 33, 64}, {72, 256, 64}, {72, 700, 64},
		{64, 300, 128}, {7, 100, 16}, {40, 90, 257}, {25, 70, 520}, {72, 513, 8}, {1, 1000, 64},
	}
	for _, sz := range shapes {
		m, n, k := sz[0], sz[1], sz[2]
		for _, pad := range []int{0, 3} {
			lda, ldb, ldc := k+pad, k+2*pad, 300+pad
			a := randSlice(r, (m-1)*lda+k)
			b := randSlice(r, (n-1)*ldb+k)
			a32, b32 := to32(a), to32(b)
			defer releaseGuarded()
			for _, l := range levels() {
				atLevel(t, l, func() {
					var p64 PackedNT[float64]
					var p32 PackedNT[float32]
					p64.Reset(n, k, guarded(b), ldb)
					p32.Reset(n, k, guarded(b32), ldb)
					packHalves(&p64, n)
					packHalves(&p32, n)
					ga, ga32 := guarded(a), guarded(a32)
					for _, tile := range []int{p64.Align(), 4 * p64.Align(), 256} {
						for j0 := 0; j0 < n; j0 += tile {
							nb := min(tile, n-j0)
							name := fmt.Sprintf("%s m=%d n=%d k=%d pad=%d j0=%d nb=%d", levelName(l), m, n, k, pad, j0, nb)
							want := make([]float64, (m-1)*ldc+nb)
							gemmNT64Packed(m, nb, k, a, lda, b[j0*ldb:], ldb, want, ldc)
							got := guarded(make([]float64, len(want)))
							p64.GemmNT(m, j0, nb, ga, lda, got, ldc)
							for i := range want {
								if got[i] != want[i] {
									t.Fatalf("%s float64: entry %d = %g, GemmNT64 %g", name, i, got[i], want[i])
								}
							}
						}
					}
					for j0 := 0; j0 < n; j0 += 256 {
						nb := min(256, n-j0)
						name := fmt.Sprintf("%s m=%d n=%d k=%d pad=%d j0=%d", levelName(l), m, n, k, pad, j0)
						want := make([]float32, (m-1)*ldc+nb)
						gemmNT32Packed(m, nb, k, a32, lda, b32[j0*ldb:], ldb, want, ldc)
						got := guarded(make([]float32, len(want)))
						p32.GemmNT(m, j0, nb, ga32, lda, got, ldc)
						for i := range want {
							if got[i] != want[i] {
								t.Fatalf("%s float32: entry %d = %g, GemmNT32 %g", name, i, got[i], want[i])
							}
						}
					}
				})
			}
		}
	}
}

// packHalves packs p's n rows in two goroutines, split at an aligned row.
func packHalves[T float32 | float64](p *PackedNT[T], n int) {
	mid := (n / 2) / p.Align() * p.Align()
	var wg sync.WaitGroup
	wg.Go(func() { p.Pack(0, mid) })
	wg.Go(func() { p.Pack(mid, n) })
	wg.Wait()
}

// TestPackedNTReuse checks that a PackedNT reset to a smaller and then a
// larger matrix, and one reset at another level, give correct products.
func TestPackedNTReuse(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	var p PackedNT[float32]
	for _, sz := range [][2]int{{300, 64}, {40, 16}, {600, 128}} {
		n, k := sz[0], sz[1]
		b := to32(randSlice(r, n*k))
		a := to32(randSlice(r, 5*k))
		for _, l := range levels() {
			atLevel(t, l, func() {
				p.Reset(n, k, b, k)
				p.Pack(0, n)
			})
			// Used at the top level, packed at l: the PackedNT keeps its kernels.
			want := make([]float32, 5*n)
			got := make([]float32, 5*n)
			atLevel(t, l, func() { gemmNT32Packed(5, n, k, a, k, b, k, want, n) })
			p.GemmNT(5, 0, n, a, k, got, n)
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("%s n=%d k=%d: entry %d = %g, want %g", levelName(l), n, k, i, got[i], want[i])
				}
			}
		}
	}
}

func TestPackedNTPanics(t *testing.T) {
	var p PackedNT[float64]
	b := make([]float64, 100*8)
	p.Reset(100, 8, b, 8)
	for name, f := range map[string]func(){
		"short b":       func() { p.Reset(101, 8, b, 8) },
		"unaligned":     func() { p.Pack(1, 100) },
		"past the end":  func() { p.GemmNT(1, 0, 101, make([]float64, 8), 8, make([]float64, 101), 101) },
		"reversed rows": func() { p.Pack(50, 10) },
	} {
		if p.Align() == 1 && name == "unaligned" {
			continue
		}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}

// TestAccumulate32 checks every level against float64 arithmetic, for
// lengths around the vector blocks, alpha = 1 (exact sums) and not.
func TestAccumulate32(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	for _, n := range []int{0, 1, 3, 4, 5, 15, 16, 17, 33, 64, 100} {
		for _, alpha := range []float64{1, 0, 0.375, 1e-300} {
			dst0 := randSlice(r, n)
			src := to32(randSlice(r, n))
			defer releaseGuarded()
			for _, l := range levels() {
				atLevel(t, l, func() {
					dst := guarded(dst0)
					Accumulate32(dst, alpha, guarded(src))
					for i := range dst {
						want := alpha*dst0[i] + float64(src[i])
						if alpha == 1 && dst[i] != want {
							t.Fatalf("%s n=%d alpha=1: %d: %g, want %g", levelName(l), n, i, dst[i], want)
						}
						if math.Abs(dst[i]-want) > 1e-15*(math.Abs(want)+math.Abs(alpha*dst0[i])) {
							t.Fatalf("%s n=%d alpha=%g: %d: %g, want %g", levelName(l), n, alpha, i, dst[i], want)
						}
					}
				})
			}
		}
	}
	defer func() {
		if recover() == nil {
			t.Error("no panic for different lengths")
		}
	}()
	Accumulate32(make([]float64, 3), 1, make([]float32, 4))
}
