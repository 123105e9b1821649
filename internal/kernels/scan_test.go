package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"
)

// TestColumnScansLevels checks the column scans of both types at every
// dispatch level against plain loops over the whole matrix, bit for bit:
// every width from 1 to 300 (every register block of 1, 2, 4 and 8
// vectors and every tail), row counts around the row block, and NaN (of
// either sign), Inf, signed zeros and subnormals among normal values of
// widely varying magnitude. The matrix ends right before an unmapped page,
// as do the outputs, so a read past either faults.
func TestColumnScansLevels(t *testing.T) {
	testColumnScans(t, ColumnRange32, ColumnMaxAbsBits32)
	testColumnScans(t, ColumnRange64, ColumnMaxAbsBits64)
}

func testColumnScans[T float32 | float64, U uint32 | uint64](t *testing.T, scanRange func([]T, int, []T, []T), scanBits func([]T, int, []U)) {
	r := rand.New(rand.NewPCG(11, uint64(unsafe.Sizeof(T(0)))))
	bitsOf := func(v T) U { return *(*U)(unsafe.Pointer(&v)) }
	negZero, nan := T(math.Copysign(0, -1)), T(math.NaN())
	special := []T{nan, -nan, T(math.Inf(1)), T(math.Inf(-1)), 0, negZero,
		T(math.SmallestNonzeroFloat64), T(math.SmallestNonzeroFloat32), -T(math.SmallestNonzeroFloat32) * 3}
	name := fmt.Sprintf("%T", T(0))
	scanShapes(16, func(d, rows int) {
		x := make([]T, rows*d)
		for i := range x {
			x[i] = T(r.NormFloat64() * math.Pow(10, float64(r.IntN(8)-4)))
		}
		for range 1 + len(x)/50 {
			x[r.IntN(len(x))] = special[r.IntN(len(special))]
		}
		if r.IntN(2) == 0 {
			x[r.IntN(d)] = nan // in the first row: the range must still ignore it
		}
		// Starting ranges: empty, or random values some entries fall outside.
		lo0, hi0, m0 := make([]T, d), make([]T, d), make([]U, d)
		for c := range d {
			lo0[c], hi0[c] = T(math.Inf(1)), T(math.Inf(-1))
			if rows > 2 && c%3 == 1 {
				lo0[c], hi0[c] = T(r.NormFloat64()), T(r.NormFloat64())+10
				m0[c] = bitsOf(T(r.Float64()))
			}
		}
		wlo, whi, wm := append([]T(nil), lo0...), append([]T(nil), hi0...), append([]U(nil), m0...)
		sign := U(1) << (8*unsafe.Sizeof(U(0)) - 1)
		for i, v := range x {
			c := i % d
			if b := bitsOf(v) &^ sign; b > wm[c] {
				wm[c] = b
			}
			if v < wlo[c] {
				wlo[c] = v
			}
			if v > whi[c] {
				whi[c] = v
			}
		}
		for _, l := range levels() {
			gx, lo, hi, m := guarded(x), guarded(lo0), guarded(hi0), guarded(m0)
			atLevel(t, l, func() {
				scanRange(gx, d, lo, hi)
				scanBits(gx, d, m)
			})
			for c := range d {
				if bitsOf(lo[c]) != bitsOf(wlo[c]) || bitsOf(hi[c]) != bitsOf(whi[c]) || m[c] != wm[c] {
					t.Fatalf("%s %s d=%d rows=%d column %d: range [%g, %g] max bits %#x, want [%g, %g] %#x",
						name, levelName(l), d, rows, c, lo[c], hi[c], m[c], wlo[c], whi[c], wm[c])
				}
			}
		}
		releaseGuarded()
	})
}

// TestColumnRangeZeros checks the range scans on narrow rows whose
// columns' least or largest value is a zero of both signs, where the
// result is the zero the plain loop meets first (the vector kernels read
// such rows several to a vector), at every level, bit for bit.
func TestColumnRangeZeros(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	pick := []float32{0, float32(math.Copysign(0, -1)), 1, 2}
	for _, d := range []int{1, 2, 4, 8} {
		for rows := 1; rows <= 40; rows++ {
			for trial := range 4 {
				x := make([]float32, rows*d)
				for i := range x {
					x[i] = pick[r.IntN(len(pick))]
					if trial%2 == 1 {
						x[i] = -x[i] // the largest value a zero
					}
				}
				lo0, hi0 := make([]float32, d), make([]float32, d)
				for c := range d {
					lo0[c], hi0[c] = float32(math.Inf(1)), float32(math.Inf(-1))
				}
				wlo, whi := append([]float32(nil), lo0...), append([]float32(nil), hi0...)
				for i, v := range x {
					if v < wlo[i%d] {
						wlo[i%d] = v
					}
					if v > whi[i%d] {
						whi[i%d] = v
					}
				}
				for _, l := range levels() {
					lo, hi := append([]float32(nil), lo0...), append([]float32(nil), hi0...)
					atLevel(t, l, func() { ColumnRange32(x, d, lo, hi) })
					for c := range d {
						if math.Float32bits(lo[c]) != math.Float32bits(wlo[c]) || math.Float32bits(hi[c]) != math.Float32bits(whi[c]) {
							t.Fatalf("%s d=%d rows=%d column %d: [%g, %g] (sign bits %v %v), want [%g, %g] (%v %v)", levelName(l), d, rows, c,
								lo[c], hi[c], math.Signbit(float64(lo[c])), math.Signbit(float64(hi[c])), wlo[c], whi[c], math.Signbit(float64(wlo[c])), math.Signbit(float64(whi[c])))
						}
					}
				}
			}
		}
	}
}

// TestColumnMaxAbsBits16Levels checks ColumnMaxAbsBits16 at every
// dispatch level against a plain loop, exactly: every width from 1 to 300
// (every register block of 1, 2, 4 and 8 vectors of 32 columns and every
// tail), row counts around the row block, and NaN, Inf, signed zeros and
// subnormals of either sign among normal values, with starting maxima and
// least values both below and above what the rows hold. The rows and the
// maxima end right before an unmapped page, so a read past either faults.
func TestColumnMaxAbsBits16Levels(t *testing.T) {
	r := rand.New(rand.NewPCG(12, 16))
	special := []uint16{0x7fc0, 0xffc0, 0x7f80, 0xff80, 0, 0x8000, 0x0001, 0x8003, 0x007f, 0x0080}
	scanShapes(32, func(d, rows int) {
		x := make([]uint16, rows*d)
		for i := range x {
			v := float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(8)-4)))
			x[i] = uint16(math.Float32bits(v) >> 16)
		}
		for range 1 + len(x)/50 {
			x[r.IntN(len(x))] = special[r.IntN(len(special))]
		}
		m0 := make([]uint16, d)
		for c := range m0 {
			if c%3 == 1 {
				m0[c] = uint16(r.IntN(0x7f90))
			}
		}
		least0 := []uint16{0xffff, 0x3f7f, 0x0002}[r.IntN(3)]
		wm, wleast := append([]uint16(nil), m0...), least0
		for i, v := range x {
			a := v & 0x7fff
			wm[i%d] = max(wm[i%d], a)
			wleast = min(wleast, a-1)
		}
		for _, l := range levels() {
			gx, m := guarded(x), guarded(m0)
			var least uint16
			atLevel(t, l, func() { least = ColumnMaxAbsBits16(gx, d, m, least0) })
			if least != wleast {
				t.Fatalf("%s d=%d rows=%d: least %#x, want %#x", levelName(l), d, rows, least, wleast)
			}
			for c := range d {
				if m[c] != wm[c] {
					t.Fatalf("%s d=%d rows=%d column %d: max bits %#x, want %#x", levelName(l), d, rows, c, m[c], wm[c])
				}
			}
		}
		releaseGuarded()
	})
}

// scanShapes calls f on the scan tests' shapes: every width d from 1 to
// 300, with 1, 2 and scanRowsTest + 1 rows, and around the row block too
// where d is a multiple of the vector width w (or of 37).
func scanShapes(w int, f func(d, rows int)) {
	for d := 1; d <= 300; d++ {
		rowCounts := []int{1, 2, scanRowsTest + 1}
		if d%w == 0 || d%37 == 0 {
			rowCounts = append(rowCounts, scanRowsTest-1, scanRowsTest, 2*scanRowsTest+88)
		}
		for _, rows := range rowCounts {
			f(d, rows)
		}
	}
}

// scanRowsTest is the scans' row block on amd64 (scanRows), the row counts
// around which the tests look.
const scanRowsTest = 256

// BenchmarkColumnScans times the scans of both types at every level on
// 4096 rows of 128 columns (2 MiB of float32, 4 MiB of float64: a decoding
// step's chunk of keys), and the plain loop they replace, in the same run.
func BenchmarkColumnScans(b *testing.B) {
	benchColumnScans(b, ColumnRange32, ColumnMaxAbsBits32)
	benchColumnScans(b, ColumnRange64, ColumnMaxAbsBits64)
}

func benchColumnScans[T float32 | float64, U uint32 | uint64](b *testing.B, scanRange func([]T, int, []T, []T), scanBits func([]T, int, []U)) {
	const rows, d = 4096, 128
	x := make([]T, rows*d)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range x {
		x[i] = T(r.NormFloat64())
	}
	lo, hi, m := make([]T, d), make([]T, d), make([]U, d)
	size := int64(len(x)) * int64(unsafe.Sizeof(T(0)))
	name := fmt.Sprintf("%T", T(0))
	for _, l := range levels() {
		b.Run(name+"/range/"+levelName(l), func(b *testing.B) {
			b.SetBytes(size)
			atLevel(b, l, func() {
				for b.Loop() {
					scanRange(x, d, lo, hi)
				}
			})
		})
		b.Run(name+"/maxabs/"+levelName(l), func(b *testing.B) {
			b.SetBytes(size)
			atLevel(b, l, func() {
				for b.Loop() {
					scanBits(x, d, m)
				}
			})
		})
	}
}
