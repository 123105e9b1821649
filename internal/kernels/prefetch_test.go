package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestGemmNext checks the prefetching products (GemmNNNext64,
// GemmNNNext32, GemmNT32Next, GemmNT64Next) at every level against the plain ones: the prefetch must not change a bit of the result, whatever
// next is (empty, shorter or longer than the operands, unaligned, or
// ending right before an unmapped page).
func TestGemmNext(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	shapes := [][3]int{{1, 1, 1}, {7, 9, 8}, {72, 128, 256}, {144, 64, 256}, {13, 70, 300}, {400, 50, 30}}
	defer releaseGuarded()
	for _, sz := range shapes {
		m, n, k := sz[0], sz[1], sz[2]
		a := randSlice(r, m*k)
		b := randSlice(r, k*n)
		c0 := randSlice(r, m*n)
		for _, l := range levels() {
			atLevel(t, l, func() {
				for _, nextLen := range []int{0, 1, 17, 1000, 70000} {
					name := fmt.Sprintf("%s m=%d n=%d k=%d next=%d", levelName(l), m, n, k, nextLen)
					next := guarded(randSlice(r, nextLen))
					next32 := guarded(to32(randSlice(r, nextLen)))
					want, got := append([]float64(nil), c0...), guarded(c0)
					GemmNN64(m, n, k, a, k, b, n, want, n)
					GemmNNNext64(m, n, k, guarded(a), k, guarded(b), n, got, n, next)
					want32, got32 := to32(c0), guarded(to32(c0))
					GemmNN32(m, n, k, to32(a), k, to32(b), n, want32, n)
					GemmNNNext32(m, n, k, guarded(to32(a)), k, guarded(to32(b)), n, got32, n, next32)
					for i := range want {
						if got[i] != want[i] || got32[i] != want32[i] {
							t.Fatalf("%s: entry %d = %g, %g; without prefetch %g, %g", name, i, got[i], got32[i], want[i], want32[i])
						}
					}
					// C = A B^T, b read as n rows of k: in place for
					// few rows of A, packed for more.
					wantNT, gotNT := to32(c0), guarded(to32(c0))
					GemmNT32(m, n, k, to32(a), k, to32(b), k, wantNT, n)
					GemmNT32Next(m, n, k, guarded(to32(a)), k, guarded(to32(b)), k, gotNT, n, next32)
					wantNT64, gotNT64 := slices.Clone(c0), guarded(c0)
					GemmNT64(m, n, k, a, k, b, k, wantNT64, n)
					GemmNT64Next(m, n, k, guarded(a), k, guarded(b), k, gotNT64, n, next)
					for i := range wantNT {
						if gotNT[i] != wantNT[i] || gotNT64[i] != wantNT64[i] {
							t.Fatalf("%s: NT entry %d = %g, %g; without prefetch %g, %g", name, i, gotNT[i], gotNT64[i], wantNT[i], wantNT64[i])
						}
					}
				}
			})
		}
	}
}

// TestPackedNTNext checks GemmNTNext against GemmNT (bit-identical) and
// Rows against the rows GemmNT reads, at every level.
func TestPackedNTNext(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	defer releaseGuarded()
	for _, sz := range [][3]int{{5, 3, 7}, {144, 1000, 128}, {72, 300, 64}} {
		m, n, k := sz[0], sz[1], sz[2]
		ldb := k + 3
		a := to32(randSlice(r, m*k))
		b := to32(randSlice(r, (n-1)*ldb+k))
		for _, l := range levels() {
			atLevel(t, l, func() {
				var p PackedNT[float32]
				p.Reset(n, k, b, ldb)
				p.Pack(0, n)
				for j0 := 0; j0 < n; j0 += 256 {
					nb := min(256, n-j0)
					name := fmt.Sprintf("%s m=%d n=%d k=%d j0=%d", levelName(l), m, n, k, j0)
					want := make([]float32, m*nb)
					p.GemmNT(m, j0, nb, a, k, want, nb)
					got := guarded(make([]float32, m*nb))
					var next []float32
					if j1 := min(j0+2*256, n); j0+256 < j1 {
						next = p.Rows(j0+256, j1)
					}
					p.GemmNTNext(m, j0, nb, guarded(a), k, got, nb, guarded(next))
					for i := range want {
						if got[i] != want[i] {
							t.Fatalf("%s: entry %d = %g, GemmNT %g", name, i, got[i], want[i])
						}
					}
					rows := p.Rows(j0, j0+nb)
					if p.Align() == 1 {
						if len(rows) != (nb-1)*ldb+k || &rows[0] != &b[j0*ldb] {
							t.Fatalf("%s: Rows is not B's rows in place", name)
						}
						continue
					}
					// Every row's k entries lie in its panel within Rows.
					if w := (nb + p.Align() - 1) / p.Align() * p.Align() * k; len(rows) != w {
						t.Fatalf("%s: Rows has %d entries, the panels %d", name, len(rows), w)
					}
				}
				for _, bad := range [][2]int{{-1, 3}, {0, n + 1}, {5, 4}} {
					func() {
						defer func() {
							if recover() == nil {
								t.Fatalf("Rows(%d, %d) of %d rows did not panic", bad[0], bad[1], n)
							}
						}()
						p.Rows(bad[0], bad[1])
					}()
				}
			})
		}
	}
}

// TestGemmNNSet checks GemmNNSet32 at every level: C = A B whatever C
// held (NaN here), bit-identical to GemmNN32 into a zeroed C, and entries
// between C's rows untouched.
func TestGemmNNSet(t *testing.T) {
	r := rand.New(rand.NewPCG(25, 26))
	defer releaseGuarded()
	for _, sz := range [][3]int{{1, 1, 1}, {7, 9, 8}, {144, 128, 256}, {13, 70, 300}, {400, 50, 30}, {5, 6, 0}} {
		m, n, k := sz[0], sz[1], sz[2]
		ldc := n + 3
		a := to32(randSlice(r, m*k))
		b := to32(randSlice(r, k*n))
		for _, l := range levels() {
			atLevel(t, l, func() {
				want := make([]float32, (m-1)*ldc+n)
				GemmNN32(m, n, k, a, k, b, n, want, ldc)
				got := guarded(make([]float32, len(want)))
				for i := range got {
					if i%ldc < n {
						got[i] = float32(math.NaN())
					} else {
						got[i] = 7
					}
				}
				GemmNNSet32(m, n, k, guarded(a), k, guarded(b), n, got, ldc, b)
				for i := range want {
					if i%ldc >= n {
						if got[i] != 7 {
							t.Fatalf("%s %v: entry %d outside C changed", levelName(l), sz, i)
						}
						continue
					}
					if got[i] != want[i] {
						t.Fatalf("%s %v: entry %d = %g, GemmNN32 into zeros %g", levelName(l), sz, i, got[i], want[i])
					}
				}
			})
		}
	}
}

// TestPrefetchL2 checks that PrefetchL2 neither faults (on slices that end
// right before an unmapped page, where a prefetch rounded past the end
// would land) nor changes what it prefetches.
func TestPrefetchL2(t *testing.T) {
	defer releaseGuarded()
	r := rand.New(rand.NewPCG(23, 24))
	for _, n := range []int{0, 1, 15, 16, 17, 1000, 3072} {
		x := randSlice(r, n)
		g32, g64 := guarded(to32(x)), guarded(x)
		PrefetchL2(g32)
		PrefetchL2(g64)
		PrefetchL2(g64[:0])
		for i, v := range x {
			if g64[i] != v || g32[i] != float32(v) {
				t.Fatalf("n=%d: entry %d changed", n, i)
			}
		}
	}
}
