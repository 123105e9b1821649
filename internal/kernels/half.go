package kernels

import "math"

// Half-precision storage. A bfloat16 is the high 16 bits of a float32 (8
// exponent bits, 7 mantissa bits); an IEEE float16 has 5 exponent and 10
// mantissa bits. Both are passed as their bits in uint16 slices.
//
// The bfloat16 products GemmNTBF16 and GemmNNBF16 multiply bfloat16
// operands and accumulate in float32: every product of two bfloat16 values
// is exact in float32, so the only rounding is the float32 accumulation's,
// as in a float32 GEMM of the widened operands. With AVX512_BF16 they run
// on VDPBF16PS, which multiplies and adds two pairs per float32 lane.

// BF16ToFloat32 sets dst[i] to the float32 value of the bfloat16 src[i]
// (exact). len(dst) must be at least len(src).
func BF16ToFloat32(dst []float32, src []uint16) {
	if len(dst) < len(src) {
		panic("kernels: BF16ToFloat32: dst shorter than src")
	}
	bf16ToF32(dst[:len(src)], src)
}

// F16ToFloat32 sets dst[i] to the float32 value of the IEEE half-precision
// src[i]: exact for every number (subnormals included) and the
// infinities; a NaN keeps its sign and payload and is made quiet, as
// F16C's VCVTPH2PS does. len(dst) must
// be at least len(src).
func F16ToFloat32(dst []float32, src []uint16) {
	if len(dst) < len(src) {
		panic("kernels: F16ToFloat32: dst shorter than src")
	}
	f16ToF32(dst[:len(src)], src)
}

// Float32ToBF16 sets dst[i] to src[i] rounded to bfloat16, to nearest with
// ties to even, as AVX512_BF16's VCVTNEPS2BF16 rounds: a NaN becomes a
// quiet NaN of the same sign, and subnormal inputs become zero of the same
// sign. len(dst) must be at least len(src).
func Float32ToBF16(dst []uint16, src []float32) {
	if len(dst) < len(src) {
		panic("kernels: Float32ToBF16: dst shorter than src")
	}
	f32ToBF16(dst[:len(src)], src)
}

// GemmNTBF16 sets C = A B^T for bfloat16 A (m x k) and B (n x k), with
// float32 products and sums, C m x n.
func GemmNTBF16(m, n, k int, a []uint16, lda int, b []uint16, ldb int, c []float32, ldc int) {
	gemmBF16(true, m, n, k, a, lda, b, ldb, c, ldc)
}

// GemmNNBF16 adds A B to C for bfloat16 A (m x k) and B (k x n), with
// float32 products and sums, C m x n. In attention, A is the tile of
// probabilities P rounded to bfloat16 and B the values.
func GemmNNBF16(m, n, k int, a []uint16, lda int, b []uint16, ldb int, c []float32, ldc int) {
	gemmBF16(false, m, n, k, a, lda, b, ldb, c, ldc)
}

// BF16Dot reports whether the bfloat16 products run on AVX512_BF16's dot
// product instruction (VDPBF16PS) on this machine; otherwise they widen
// their operands to float32 and use the float32 kernels. Where the CPU has
// the instruction, the first call measures which of the two is faster
// (about 0.1 ms) and keeps that choice.
func BF16Dot() bool { return bf16Dot() }

func bf16ToF32Go(dst []float32, src []uint16) {
	for i, h := range src {
		dst[i] = math.Float32frombits(uint32(h) << 16)
	}
}

func f16ToF32Go(dst []float32, src []uint16) {
	for i, h := range src {
		dst[i] = f16ToFloat32(h)
	}
}

// f16ToFloat32 widens one IEEE half-precision value.
func f16ToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	man := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f && man != 0: // NaN, made quiet as VCVTPH2PS does
		return math.Float32frombits(sign | 0xff<<23 | (man|0x200)<<13)
	case exp == 0x1f: // Inf
		return math.Float32frombits(sign | 0xff<<23)
	case exp != 0:
		return math.Float32frombits(sign | (exp+127-15)<<23 | man<<13)
	case man == 0:
		return math.Float32frombits(sign)
	}
	// Subnormal: man * 2^-24, exact in float32.
	v := float32(man) * (1.0 / (1 << 24))
	if sign != 0 {
		v = -v
	}
	return v
}

func f32ToBF16Go(dst []uint16, src []float32) {
	for i, x := range src {
		dst[i] = bf16FromFloat32(x)
	}
}

// bf16FromFloat32 rounds one float32 as VCVTNEPS2BF16 does.
func bf16FromFloat32(x float32) uint16 {
	u := math.Float32bits(x)
	switch {
	case u&0x7fffffff > 0x7f800000: // NaN: keep the sign, make it quiet
		return uint16(u>>16) | 0x40
	case u&0x7f800000 == 0: // zero or subnormal: zero of the same sign
		return uint16(u>>16) & 0x8000
	}
	return uint16((u + 0x7fff + (u>>16)&1) >> 16)
}

// gemmBF16Go widens A and B to float32 and runs the portable float32
// products.
func gemmBF16Go(nt bool, m, n, k int, a []uint16, lda int, b []uint16, ldb int, c []float32, ldc int) {
	na, nb := (m-1)*lda+k, (n-1)*ldb+k
	if !nt {
		nb = (k-1)*ldb + n
	}
	a32, b32 := widenBF16(a, na), widenBF16(b, nb)
	if nt {
		gemmNTGo(m, n, k, a32, lda, b32, ldb, c, ldc)
		return
	}
	gemmNNGo(m, n, k, a32, lda, b32, ldb, c, ldc)
}

// widenBF16 returns the first need values of x (or all of x, if shorter:
// the products then panic on the short operand as they would in float32)
// as float32.
func widenBF16(x []uint16, need int) []float32 {
	x = x[:max(0, min(need, len(x)))]
	w := make([]float32, len(x))
	bf16ToF32(w, x)
	return w
}
