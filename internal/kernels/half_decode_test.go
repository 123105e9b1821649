package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// randHalf returns n random 16-bit values of format bf (bfloat16, else
// float16) and their float64 values: normal numbers of either sign with
// magnitudes from 2^-6 to 2^6, with zeros, float16 subnormals and
// bfloat16's smallest normals mixed in.
func randHalf(r *rand.Rand, bf bool, n int) ([]uint16, []float64) {
	h, f := make([]uint16, n), make([]float64, n)
	for i := range h {
		sign := uint16(r.IntN(2)) << 15
		switch {
		case r.IntN(16) == 0:
			h[i] = sign
		case r.IntN(16) == 0 && !bf:
			h[i] = sign | uint16(1+r.IntN(0x3ff)) // subnormal
		case r.IntN(16) == 0:
			h[i] = sign | 1<<7 | uint16(r.IntN(0x80)) // exponent 1
		case bf:
			h[i] = sign | uint16(127-6+r.IntN(13))<<7 | uint16(r.IntN(0x80))
		default:
			h[i] = sign | uint16(15-6+r.IntN(13))<<10 | uint16(r.IntN(0x400))
		}
		if bf {
			f[i] = float64(math.Float32frombits(uint32(h[i]) << 16))
		} else {
			f[i] = float64(f16ToFloat32(h[i]))
		}
	}
	return h, f
}

// halfBShapes are the 16-bit-B product's shapes: decoding's (GQA groups
// of 1 to 8 query heads against a block of 256 keys of 128 entries, and
// the probabilities against its values), partial blocks, every row count
// and tail around the microkernels' blocks, and random ones.
func halfBShapes() [][3]int {
	shapes := [][3]int{
		{4, 256, 128}, {4, 128, 256}, {1, 256, 128}, {1, 128, 256}, {8, 256, 64}, {8, 64, 256},
		{4, 37, 128}, {4, 128, 37}, {6, 64, 3}, {7, 65, 5}, {12, 80, 9}, {13, 15, 4},
		{1, 1, 1}, {2, 17, 1}, {3, 31, 2}, {5, 33, 7}, {1, 48, 8}, {2, 49, 6},
	}
	r := rand.New(rand.NewPCG(17, 18))
	for range 30 {
		shapes = append(shapes, [3]int{1 + r.IntN(14), 1 + r.IntN(140), 1 + r.IntN(40)})
	}
	return shapes
}

// TestGemmNN32Half checks GemmNN32F16 and GemmNN32BF16 against float64
// products of the same (exactly widened) operands on every level: shapes
// of every size class, padded strides, operands ending right before an
// unmapped page, and entries outside C untouched.
func TestGemmNN32Half(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	defer releaseGuarded()
	for _, bf := range []bool{false, true} {
		gemm := GemmNN32F16
		if bf {
			gemm = GemmNN32BF16
		}
		for _, sz := range halfBShapes() {
			m, n, k := sz[0], sz[1], sz[2]
			for _, pad := range [][3]int{{0, 0, 0}, {3, 1, 2}, {5, 256 - n%256, 16}} {
				lda, ldb, ldc := k+pad[0], n+pad[1], n+pad[2]
				a := to32(randSlice(r, (m-1)*lda+k))
				b, bw := randHalf(r, bf, (k-1)*ldb+n)
				c0 := to32(randSlice(r, (m-1)*ldc+n))
				checkHalfProduct(t, fmt.Sprintf("bf16=%v %v ld=%d,%d,%d", bf, sz, lda, ldb, ldc), gemm, m, n, k, a, lda, b, ldb,
					func(p, j int) float64 { return bw[p*ldb+j] }, c0, ldc, true)
			}
		}
	}
}

// TestGemmNN32HalfSpecials: infinities and NaNs in B reach C as in a
// float32 product of the widened B.
func TestGemmNN32HalfSpecials(t *testing.T) {
	for _, bf := range []bool{false, true} {
		inf, nan := uint16(0x7c00), uint16(0x7e00)
		gemm := GemmNN32F16
		if bf {
			inf, nan, gemm = 0x7f80, 0x7fc0, GemmNN32BF16
		}
		const m, n, k = 2, 40, 3
		a := []float32{1, 1, 1, 0, 1, 1}
		b := make([]uint16, k*n)
		b[0], b[n+1], b[2*n+35] = inf, nan, inf|0x8000
		for _, l := range levels() {
			atLevel(t, l, func() {
				c := make([]float32, m*n)
				gemm(m, n, k, a, k, b, n, c, n)
				if !math.IsInf(float64(c[0]), 1) || !math.IsNaN(float64(c[1])) || !math.IsInf(float64(c[35]), -1) || c[2] != 0 {
					t.Errorf("%s bf16=%v: row 0 = %v, want +Inf, NaN, 0..., -Inf at 35", levelName(l), bf, c[:n])
				}
				// Row 1 skips B's first row (a = 0 there): 0 * Inf is NaN.
				if !math.IsNaN(float64(c[n])) || !math.IsNaN(float64(c[n+1])) || !math.IsInf(float64(c[n+35]), -1) {
					t.Errorf("%s bf16=%v: row 1 = %v, want NaN, NaN, ..., -Inf at 35", levelName(l), bf, c[n:])
				}
			})
		}
	}
}
