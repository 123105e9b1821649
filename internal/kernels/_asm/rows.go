package main

import "fmt"

// genRows emits the row-block forms of the softmax steps of exact
// attention's float32 forward, which run them on every row of a block of
// scores in one call instead of one call per row (whose set-up, constant
// loads and reductions cost a fifth of a 512-key row's exponentials).
func genRows() {
	genMaxRows()
	genExp2Rows()
	for _, withMax := range []bool{false, true} {
		genExp2RowsBF16(true, withMax)
		genExp2RowsBF16(false, withMax)
	}
}

// genMaxRows emits maxRowsF32AVX512(s *float32, ld int, rows int, cols int,
// out *float32) (finite bool): out[i] = the largest of s[i*ld : i*ld+cols]
// for i < rows, cols a positive multiple of 16, and whether every entry
// read is finite (VFPCLASS, as maxF32AVX512 tests them). The maxima of
// rows with a NaN are unspecified.
func genMaxRows() {
	f := sig("maxRowsF32AVX512", ps("s", "*float32", "ld", "int", "rows", "int", "cols", "int", "out", "*float32"), ps("finite", "bool"))
	text(f)
	f.load("s", "SI", "ld", "R8<<2", "rows", "R9", "cols", "R12", "out", "R11")
	emit("KXORW K4, K4, K4")
	class := func(z int) {
		emit("VFPCLASSPSZ $0x99, Z%d, K3", z)
		emit("KORW K3, K4, K4")
	}
	label("row")
	emit("MOVQ SI, DI")
	emit("MOVQ R12, CX")
	emit("VMOVUPS (DI), Z0")
	for i := 1; i < 4; i++ {
		emit("VMOVAPS Z0, Z%d", i)
	}
	label("loop4")
	emit("CMPQ CX, $64")
	emit("JLT loop1")
	for i := range 4 {
		emit("VMOVUPS %d(DI), Z%d", 64*i, 4+i)
	}
	for i := range 4 {
		emit("VMAXPS Z%d, Z%d, Z%d", 4+i, i, i)
	}
	for i := range 4 {
		class(4 + i)
	}
	emit("ADDQ $256, DI")
	emit("SUBQ $64, CX")
	emit("JMP loop4")
	label("loop1")
	emit("TESTQ CX, CX")
	emit("JZ reduce")
	emit("VMOVUPS (DI), Z4")
	emit("VMAXPS Z4, Z0, Z0")
	class(4)
	emit("ADDQ $64, DI")
	emit("SUBQ $16, CX")
	emit("JMP loop1")
	label("reduce")
	emit("VMAXPS Z1, Z0, Z0")
	emit("VMAXPS Z3, Z2, Z2")
	emit("VMAXPS Z2, Z0, Z0")
	hreduce("MAX", f32, 0, true, "(R11)")
	emit("ADDQ R8, SI")
	emit("ADDQ $4, R11")
	emit("DECQ R9")
	emit("JNZ row")
	emit("KORTESTW K4, K4")
	emit("SETEQ %s", f.fp("finite"))
	emit("VZEROUPPER")
	emit("RET\n")
}

// genExp2Rows emits exp2RowsF32AVX512(s *float32, ld int, rows int, cols
// int, scale float32, shifts *float32, sums *float32): for i < rows,
// exp2ShiftSumF32AVX512 of s[i*ld : i*ld+cols] with shift shifts[i], its
// sum stored in sums[i]; cols a positive multiple of 16. The vectors go
// through the same steps in the same order as exp2ShiftSumF32AVX512's, so
// values and sums are the same bit for bit.
func genExp2Rows() {
	is := avx512
	f := sig("exp2RowsF32AVX512", ps("s", "*float32", "ld", "int", "rows", "int", "cols", "int", "scale", "float32", "shifts", "*float32", "sums", "*float32"), nil)
	text(f)
	r := newExpRows()
	const u = expRowsU
	yr, kr, qr, sum, scale, shift := r.y, r.k, r.q, r.sum, r.scale, r.shift
	f.load("s", "SI", "ld", "R8<<2", "rows", "R9", "cols", "R12", "shifts", "R10", "sums", "R11")
	emit("VBROADCASTSS %s, %s", f.fp("scale"), scale)
	c := exp2Consts()
	label("row")
	emit("VBROADCASTSS (R10), %s", shift)
	emit("MOVQ SI, DI")
	emit("MOVQ R12, CX")
	for i := range u {
		emit("VPXORD %[1]s, %[1]s, %[1]s", sum(i))
	}
	expLoop(is, f32, u, scale, shift, yr, kr, qr, sum, func(ys, ks, qs []string) { exp2Body(is, ys, ks, qs, c, "") })
	label("tail") // cols is a multiple of 16: nothing is left
	label("reduce")
	r.sumRow()
	emit("ADDQ R8, SI")
	r.endRows()
}

// genExp2RowsBF16 emits exp2RowsSplitBF16AVX512(s *float32, ld, rows,
// cols int, scale float32, shifts, sums *float32, hi, lo *uint16) (split)
// or exp2RowsRoundBF16AVX512 (the same without lo): exp2RowsF32AVX512's
// weights and sums, bit for bit, with each weight stored not over the
// score but in bfloat16 (hi, row stride ld like s's; VCVTNEPS2BF16, to
// nearest even) and, split, the remainder weight - hi in lo, as
// splitBF16AVX512 stores them: the AMX path's P for its P V product,
// without the float32 weights' trip through memory. AVX512_BF16.
//
// withMax (exp2RowsMaxSplitBF16AVX512, exp2RowsMaxRoundBF16AVX512) also
// folds each score into four running maxima (VMAXPS from memory, on the
// add pipes the exponential leaves idle) and, once the row is done,
// stores their largest over shifts[i]: a tile whose shifts are earlier
// tiles' maxima learns its own without a pass of its own over the scores.
// Z18-Z21 hold the maxima.
func genExp2RowsBF16(split, withMax bool) {
	is := avx512
	kind := "Round"
	params := ps("s", "*float32", "ld", "int", "rows", "int", "cols", "int", "scale", "float32", "shifts", "*float32", "sums", "*float32", "hi", "*uint16")
	if split {
		kind = "Split"
		params = append(params, ps("lo", "*uint16")...)
	}
	name := "exp2Rows" + kind + "BF16AVX512"
	if withMax {
		name = "exp2RowsMax" + kind + "BF16AVX512"
	}
	mx := func(i int) string { return fmt.Sprintf("Z%d", 18+i) }
	f := sig(name, params, nil)
	text(f)
	r := newExpRows()
	const u = expRowsU
	yr, kr, qr, sum, scale, shift := r.y, r.k, r.q, r.sum, r.scale, r.shift
	f.load("s", "SI", "ld", "R8<<2", "rows", "R9", "cols", "R12", "shifts", "R10", "sums", "R11", "hi", "R13")
	if split {
		f.load("lo", "R14")
	}
	emit("MOVQ %s, AX", f.fp("ld"))
	emit("SHLQ $1, AX") // the bfloat16 rows' stride in bytes
	emit("VBROADCASTSS %s, %s", f.fp("scale"), scale)
	c := exp2Consts()
	block := func(v int) {
		var ys, ks, qs []string
		for i := range v {
			emit("VMULPS %d(DI), %s, %s", i*64, scale, yr(i))
			if withMax {
				emit("VMAXPS %d(DI), %s, %s", i*64, mx(i), mx(i))
			}
			ys, ks, qs = append(ys, yr(i)), append(ks, kr(i)), append(qs, qr(i))
		}
		for i := range v {
			emit("VSUBPS %s, %s, %s", shift, yr(i), yr(i))
		}
		exp2Body(is, ys, ks, qs, c, "")
		// y and k are free now: k's lower half takes the bfloat16 values,
		// y the remainder.
		for i := range v {
			emit("VADDPS %s, %s, %s", qr(i), sum(i), sum(i))
			evex512("VCVTNEPS2BF16", 2, 0x72, u+i, 0, 2*u+i)
			emit("VMOVDQU Y%d, %d(BX)", u+i, 32*i)
			if split {
				emit("VPMOVZXWD Y%d, %s", u+i, yr(i))
				emit("VPSLLD $16, %s, %s", yr(i), yr(i))
				emit("VSUBPS %s, %s, %s", yr(i), qr(i), yr(i))
				evex512("VCVTNEPS2BF16", 2, 0x72, u+i, 0, i)
				emit("VMOVDQU Y%d, %d(DX)", u+i, 32*i)
			}
		}
		emit("ADDQ $%d, DI", v*64)
		emit("ADDQ $%d, BX", v*32)
		if split {
			emit("ADDQ $%d, DX", v*32)
		}
		emit("SUBQ $%d, CX", v*16)
	}
	label("row")
	emit("VBROADCASTSS (R10), %s", shift)
	emit("MOVQ SI, DI")
	emit("MOVQ R13, BX")
	if split {
		emit("MOVQ R14, DX")
	}
	emit("MOVQ R12, CX")
	for i := range u {
		emit("VPXORD %[1]s, %[1]s, %[1]s", sum(i))
	}
	if withMax {
		emit("VMOVUPS (DI), %s", mx(0))
		for i := 1; i < u; i++ {
			emit("VMOVAPS %s, %s", mx(0), mx(i))
		}
	}
	label("loopu")
	emit("CMPQ CX, $%d", u*16)
	emit("JLT loop1")
	block(u)
	emit("JMP loopu")
	label("loop1")
	emit("CMPQ CX, $16")
	emit("JLT reduce") // cols is a multiple of 16: nothing is left
	block(1)
	emit("JMP loop1")
	label("reduce")
	r.sumRow()
	if withMax {
		emit("VMAXPS %s, %s, %s", mx(1), mx(0), mx(0))
		emit("VMAXPS %s, %s, %s", mx(3), mx(2), mx(2))
		// Into Z0 (free now): VEX forms reach only registers below 16.
		emit("VMAXPS %s, %s, Z0", mx(2), mx(0))
		hreduce("MAX", f32, 0, true, "(R10)")
	}
	emit("ADDQ R8, SI")
	emit("ADDQ AX, R13")
	if split {
		emit("ADDQ AX, R14")
	}
	r.endRows()
}

// expRows is the register map of the row-block exponential kernels, u = 4
// vectors a step: y, k and q of vector i, the running sums, the scale and
// the row's shift. The kernels that must give the same values and sums bit
// for bit (genExp2Rows, genExp2RowsBF16) share it and sumRow.
type expRows struct {
	y, k, q, sum func(i int) string
	scale, shift string
}

const expRowsU = 4

func newExpRows() expRows {
	R := func(n int) string { return fmt.Sprintf("Z%d", n) }
	const u = expRowsU
	return expRows{
		y:     func(i int) string { return R(i) },
		k:     func(i int) string { return R(u + i) },
		q:     func(i int) string { return R(2*u + i) },
		sum:   func(i int) string { return R(3*u + i) },
		scale: R(4 * u), shift: R(4*u + 1),
	}
}

// sumRow adds the row's running sums into one and stores it at (R11).
func (r expRows) sumRow() {
	for i := 1; i < expRowsU; i++ {
		emit("VADDPS %s, %s, %s", r.sum(i), r.sum(0), r.sum(0))
	}
	hreduce("ADD", f32, 3*expRowsU, true, "(R11)")
}

// endRows moves to the next row's shift and sum (R10, R11), loops over the
// rows (R9) and returns.
func (r expRows) endRows() {
	emit("ADDQ $4, R10")
	emit("ADDQ $4, R11")
	emit("DECQ R9")
	emit("JNZ row")
	emit("VZEROUPPER")
	emit("RET\n")
}
