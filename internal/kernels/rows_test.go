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

// TestExp2RowsBF16 checks Exp2RowsBF16, split and rounded, at every
// level and with AVX512_BF16's conversions on and off, against its
// definition (Exp2Rows32, then SplitBF16 or Float32ToBF16 row by row), bit
// for bit, on widths up to 512 with padded strides, and that the entries
// of hi and lo outside the rows are untouched; and Exp2RowsMaxBF16 against
// Exp2RowsBF16, bit for bit, with its rows' maxima in shifts and s as it
// was. The shifts lie up to 4 from the rows' maxima, either side (the
// weights exceed 1 below).
func TestExp2RowsBF16(t *testing.T) {
	r := rand.New(rand.NewPCG(33, 34))
	for _, l := range levels() {
		for _, bf16 := range []bool{true, false} {
			for _, split := range []bool{true, false} {
				for _, cols := range []int{1, 16, 17, 48, 64, 80, 100, 512} {
					for _, rows := range []int{1, 5, 12} {
						ld := cols + r.IntN(20)
						n := (rows-1)*ld + cols + 7
						s := make([]float32, n)
						for i := range s {
							s[i] = float32(r.NormFloat64() * 20)
						}
						shifts := make([]float32, rows)
						const scale = float32(0.18033688)
						for i := range rows {
							m, _ := MaxFinite32(s[i*ld : i*ld+cols])
							shifts[i] = scale*m + float32(r.IntN(9)-4)
						}
						orig := append([]float32(nil), s...)
						want, wantSums := append([]float32(nil), s...), make([]float32, rows)
						wantHi, wantLo := make([]uint16, n), make([]uint16, n)
						hi, lo, sums := make([]uint16, n), make([]uint16, n), make([]float32, rows)
						for i := range n {
							wantHi[i], wantLo[i] = uint16(i), uint16(3*i)
							hi[i], lo[i] = wantHi[i], wantLo[i]
						}
						var loArg []uint16
						if split {
							loArg = lo
						}
						saved := useBF16
						useBF16 = useBF16 && bf16
						atLevel(t, l, func() {
							Exp2Rows32(want, ld, rows, cols, scale, shifts, wantSums)
							for i := range rows {
								if split {
									SplitBF16(wantHi[i*ld:i*ld+cols], wantLo[i*ld:i*ld+cols], want[i*ld:i*ld+cols])
								} else {
									Float32ToBF16(wantHi[i*ld:i*ld+cols], want[i*ld:i*ld+cols])
								}
							}
							Exp2RowsBF16(s, ld, rows, cols, scale, shifts, sums, hi, loArg)
						})
						s2, maxes, sums2 := append([]float32(nil), orig...), append([]float32(nil), shifts...), make([]float32, rows)
						hi2, lo2 := make([]uint16, n), make([]uint16, n)
						for i := range n {
							hi2[i], lo2[i] = uint16(i), uint16(3*i)
						}
						var lo2Arg []uint16
						if split {
							lo2Arg = lo2
						}
						atLevel(t, l, func() { Exp2RowsMaxBF16(s2, ld, rows, cols, scale, maxes, sums2, hi2, lo2Arg) })
						useBF16 = saved
						for i := range n {
							if hi2[i] != wantHi[i] || lo2[i] != wantLo[i] {
								t.Fatalf("Exp2RowsMaxBF16 %s bf16 %v split %v %dx%d: entry %d is %#x, %#x, want %#x, %#x", levelName(l), bf16, split, rows, cols, i, hi2[i], lo2[i], wantHi[i], wantLo[i])
							}
							if math.Float32bits(s2[i]) != math.Float32bits(orig[i]) {
								t.Fatalf("Exp2RowsMaxBF16 %s bf16 %v split %v %dx%d: score %d changed from %g to %g", levelName(l), bf16, split, rows, cols, i, orig[i], s2[i])
							}
						}
						for i := range rows {
							m, _ := MaxFinite32(orig[i*ld : i*ld+cols])
							if maxes[i] != m || math.Float32bits(sums2[i]) != math.Float32bits(wantSums[i]) {
								t.Fatalf("Exp2RowsMaxBF16 %s bf16 %v split %v %dx%d row %d: max %g, sum %g, want %g, %g", levelName(l), bf16, split, rows, cols, i, maxes[i], sums2[i], m, wantSums[i])
							}
						}
						for i := range n {
							if hi[i] != wantHi[i] || lo[i] != wantLo[i] {
								t.Fatalf("%s bf16 %v split %v %dx%d: entry %d is %#x, %#x, want %#x, %#x", levelName(l), bf16, split, rows, cols, i, hi[i], lo[i], wantHi[i], wantLo[i])
							}
						}
						for i := range rows {
							if math.Float32bits(sums[i]) != math.Float32bits(wantSums[i]) {
								t.Fatalf("%s bf16 %v split %v %dx%d row %d: sum %g, want %g", levelName(l), bf16, split, rows, cols, i, sums[i], wantSums[i])
							}
						}
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
