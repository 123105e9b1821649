package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestMonoApply64Levels checks MonoApply64 at every dispatch level against
// a direct evaluation of each monomial, for every column count the vector
// kernels cover and one beyond, point counts 1..16 (both lane masks), and
// canaries past each output row and after the last.
func TestMonoApply64Levels(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	const d = 5
	parent, vari := gradedTable(d, 3)
	rk := len(parent)
	table := NewMonoTable(parent, vari, d)
	for _, l := range levels() {
		atLevel(t, l, func() {
			for _, nc := range []int{1, 2, 5, 9, 12, 13} {
				for cnt := 1; cnt <= MonoApplyBlock; cnt++ {
					for _, rr := range []int{1, 6, rk} {
						ldx, ldy := cnt+3, cnt+2
						x := uniformSlice(r, d*ldx)
						s := randSlice(r, rr*nc)
						y := constSlice(nc*ldy+1, 42)
						h := make([]float64, rk*MonoApplyBlock)
						MonoApply64(y, ldy, s, nc, x, ldx, cnt, table, rr, h)
						for c := range nc {
							for i := range ldy {
								got := y[c*ldy+i]
								if i >= cnt {
									if got != 42 {
										t.Fatalf("level %s, nc %d, cnt %d: canary y[%d][%d] = %g", levelName(l), nc, cnt, c, i, got)
									}
									continue
								}
								var want, abs float64
								mono := make([]float64, rr)
								for a := range rr {
									mono[a] = 1
									if a > 0 {
										mono[a] = mono[parent[a]] * x[int(vari[a])*ldx+i]
									}
									want += s[a*nc+c] * mono[a]
									abs += math.Abs(s[a*nc+c] * mono[a])
								}
								if math.Abs(got-want) > 1e-14*abs {
									t.Fatalf("level %s, nc %d, cnt %d, r %d: y[%d][%d] = %.17g, want %.17g", levelName(l), nc, cnt, rr, c, i, got, want)
								}
							}
						}
						if y[nc*ldy] != 42 {
							t.Fatalf("level %s, nc %d, cnt %d: canary after the last row overwritten", levelName(l), nc, cnt)
						}
					}
				}
			}
		})
	}
}

// TestMonoMoments64Levels checks MonoMoments64 at every dispatch level
// against direct sums of each monomial, for several weight-row counts and
// prefixes of the table, with a canary after the moments, adding to what
// the moments held.
func TestMonoMoments64Levels(t *testing.T) {
	r := rand.New(rand.NewPCG(23, 24))
	const d, w = 4, MonoMomentsBlock
	parent, vari := gradedTable(d, 4)
	rk := len(parent)
	table := NewMonoTable(parent, vari, d)
	for _, l := range levels() {
		atLevel(t, l, func() {
			for _, e1 := range []int{1, 2, 4, 7, 8, 9, 17} {
				for _, rr := range []int{1, 5, rk} {
					ldu := w + 5
					u := uniformSlice(r, d*ldu)
					vt := randSlice(r, e1*w)
					mom := constSlice(rr*e1+1, 0.5)
					h := make([]float64, rk*w)
					MonoMoments64(mom, e1, vt, u, ldu, table, rr, h)
					if mom[rr*e1] != 0.5 {
						t.Fatalf("level %s, e1 %d, r %d: canary overwritten", levelName(l), e1, rr)
					}
					for a := range rr {
						for c := range e1 {
							want, abs := 0.5, 0.5
							for j := range w {
								m := 1.0
								for b := a; b > 0; b = int(parent[b]) {
									m *= u[int(vari[b])*ldu+j]
								}
								want += m * vt[c*w+j]
								abs += math.Abs(m * vt[c*w+j])
							}
							if got := mom[a*e1+c]; math.Abs(got-want) > 1e-13*abs {
								t.Fatalf("level %s, e1 %d, r %d: mom[%d][%d] = %.17g, want %.17g", levelName(l), e1, rr, a, c, got, want)
							}
						}
					}
				}
			}
		})
	}
}

// gradedTable is the monomial table in d variables up to degree g as the
// polynomial method builds it: parents first, each child one variable
// more, at or after its parent's last.
func gradedTable(d, g int) (parent, vari []int32) {
	parent, vari = []int32{0}, []int32{0}
	last := []int{-1}
	lo, hi := 0, 1
	for range g {
		for p := lo; p < hi; p++ {
			for v := max(last[p], 0); v < d; v++ {
				parent, vari, last = append(parent, int32(p)), append(vari, int32(v)), append(last, v)
			}
		}
		lo, hi = hi, len(parent)
	}
	return parent, vari
}

// uniformSlice returns n entries uniform in [-1, 1).
func uniformSlice(r *rand.Rand, n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = 2*r.Float64() - 1
	}
	return x
}

// constSlice returns n copies of v (canaries, or sums to add to).
func constSlice(n int, v float64) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = v
	}
	return x
}
