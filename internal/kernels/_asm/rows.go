package main

import "fmt"

// genRows emits the row-block forms of the softmax steps of exact
// attention's float32 forward, which run them on every row of a block of
// scores in one call instead of one call per row (whose set-up, constant
// loads and reductions cost a fifth of a 512-key row's exponentials).
func genRows() {
	genMaxRows()
	genExp2Rows()
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
	R := func(n int) string { return fmt.Sprintf("Z%d", n) }
	const u = 4
	yr := func(i int) string { return R(i) }
	kr := func(i int) string { return R(u + i) }
	qr := func(i int) string { return R(2*u + i) }
	sum := func(i int) string { return R(3*u + i) }
	scale, shift := R(4*u), R(4*u+1)
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
	for i := 1; i < u; i++ {
		emit("VADDPS %s, %s, %s", sum(i), sum(0), sum(0))
	}
	hreduce("ADD", f32, 3*u, true, "(R11)")
	emit("ADDQ R8, SI")
	emit("ADDQ $4, R10")
	emit("ADDQ $4, R11")
	emit("DECQ R9")
	emit("JNZ row")
	emit("VZEROUPPER")
	emit("RET\n")
}
