package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestRowsMatchPerRow checks MaxRows32 and Exp2Rows32 against
// MaxFinite32 and Exp2ShiftSum32 row by row, bit for bit, at every level,
// on blocks of rows of every width up to 100 (whole vectors or not) with
// padded strides, and that entries outside the rows are untouched.
func TestRowsMatchPerRow(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	for _, l := range levels() {
		for _, cols := range []int{1, 15, 16, 17, 32, 48, 64, 80, 96, 100, 256, 512} {
			for _, rows := range []int{1, 5, 12} {
				ld := cols + r.IntN(20)
				s := make([]float32, (rows-1)*ld+cols+7)
				for i := range s {
					s[i] = float32(r.NormFloat64() * 20)
				}
				orig := append([]float32(nil), s...)
				out := make([]float32, rows)
				var fin bool
				atLevel(t, l, func() { fin = MaxRows32(s, ld, rows, cols, out) })
				if !fin {
					t.Fatalf("%s %dx%d: finite scores reported non-finite", levelName(l), rows, cols)
				}
				shifts, sums := make([]float32, rows), make([]float32, rows)
				const scale = float32(0.18033688)
				for i := range rows {
					m, _ := MaxFinite32(orig[i*ld : i*ld+cols])
					if out[i] != m {
						t.Fatalf("%s %dx%d row %d: max %g, want %g", levelName(l), rows, cols, i, out[i], m)
					}
					shifts[i] = scale * m
				}
				want := append([]float32(nil), orig...)
				wantSums := make([]float32, rows)
				atLevel(t, l, func() {
					for i := range rows {
						wantSums[i] = Exp2ShiftSum32(want[i*ld:i*ld+cols], scale, shifts[i])
					}
					Exp2Rows32(s, ld, rows, cols, scale, shifts, sums)
				})
				for i := range s {
					if math.Float32bits(s[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%s %dx%d: entry %d is %g, want %g", levelName(l), rows, cols, i, s[i], want[i])
					}
				}
				for i := range rows {
					if math.Float32bits(sums[i]) != math.Float32bits(wantSums[i]) {
						t.Fatalf("%s %dx%d row %d: sum %g, want %g", levelName(l), rows, cols, i, sums[i], wantSums[i])
					}
				}
			}
		}
	}
}

// TestMaxRowsNonFinite checks that a NaN or an infinity anywhere in the
// rows, and only there, makes MaxRows32 report non-finite entries.
func TestMaxRowsNonFinite(t *testing.T) {
	const rows, cols, ld = 4, 96, 100
	for _, l := range levels() {
		for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
			for _, at := range []int{0, 17, 2*ld + 95, 3*ld + 63} {
				s := make([]float32, rows*ld)
				for i := range s {
					s[i] = float32(i % 7)
				}
				s[3*ld+cols] = bad // outside the rows: not read
				out := make([]float32, rows)
				var fin bool
				atLevel(t, l, func() { fin = MaxRows32(s, ld, rows, cols, out) })
				if !fin {
					t.Fatalf("%s: %g outside the rows reported", levelName(l), bad)
				}
				s[at] = bad
				atLevel(t, l, func() { fin = MaxRows32(s, ld, rows, cols, out) })
				if fin {
					t.Fatalf("%s: %g at %d not reported", levelName(l), bad, at)
				}
			}
		}
	}
}
