package main

import "fmt"

// genDots emits dotsF64AVX512(c, a, b *float64, ldb, k, n int):
// c[j] = sum_{t<k} a[t] b[j*ldb+t] for j < n (k, n >= 1), the dot
// products of one row of Taylor coefficients with the moment columns of a
// node in anytemp. Eight columns at a time, one accumulator each, a
// vector of a loaded once per eight fused multiply-adds, the last k mod 8
// terms under a mask (nothing past a row is read); the eight accumulators
// are summed across lanes together (a transpose by unpacks and 128-bit
// shuffles) into one vector of eight results. Nine columns left (e+1 for
// e a multiple of 8) go in one pass, fewer one by one.
func genDots() {
	name := "dotsF64AVX512"
	f := sig(name, ps("c", "*float64", "a", "*float64", "b", "*float64", "ldb", "int", "k", "int", "n", "int"), nil)
	text(f)
	f.load("c", "DI", "a", "SI", "b", "DX", "ldb", "R8")
	emit("SHLQ $3, R8") // column stride in bytes
	emit("MOVQ %s, R9", f.fp("n"))
	emit("MOVQ %s, R11", f.fp("k"))
	emit("MOVQ R11, CX")
	emit("ANDQ $7, CX") // terms in the masked tail
	emit("MOVQ CX, R10")
	emit("MOVQ $1, AX")
	emit("SHLQ CX, AX")
	emit("DECQ AX")
	emit("KMOVW AX, K1")
	emit("MOVQ R11, CX")
	emit("SHRQ $3, CX") // full vectors

	// chunks emits the k loop for accumulators Z0..Z(cols-1), column j at
	// ptr[j%4] (+ 4 ldb for j >= 4).
	ptrs := []string{"R14", "BX", "R12", "R13"}
	col := func(j int) string {
		if j == 8 {
			return "(R14)(R8*8)"
		}
		if j >= 4 {
			return fmt.Sprintf("(%s)(R8*4)", ptrs[j-4])
		}
		return fmt.Sprintf("(%s)", ptrs[j])
	}
	acc := func(j int) int {
		if j == 8 {
			return 10 // Z8 and Z9 hold a and B vectors
		}
		return j
	}
	chunks := func(lbl string, cols int) {
		for j := range cols {
			emit("VPXORQ Z%d, Z%d, Z%d", acc(j), acc(j), acc(j))
		}
		emit("MOVQ SI, AX")
		emit("MOVQ DX, R14")
		if cols > 1 {
			emit("LEAQ (DX)(R8*1), BX")
			emit("LEAQ (DX)(R8*2), R12")
			emit("LEAQ (BX)(R8*2), R13")
		}
		emit("MOVQ CX, R11")
		emit("TESTQ R11, R11")
		emit("JZ %stail%s", name, lbl)
		label(name + "loop" + lbl)
		emit("VMOVUPD (AX), Z8")
		for j := range cols {
			emit("VFMADD231PD %s, Z8, Z%d", col(j), acc(j))
		}
		emit("ADDQ $64, AX")
		for _, p := range ptrs[:min(cols, 4)] {
			emit("ADDQ $64, %s", p)
		}
		emit("DECQ R11")
		emit("JNZ %sloop%s", name, lbl)
		label(name + "tail" + lbl)
		emit("TESTQ R10, R10")
		emit("JZ %sred%s", name, lbl)
		emit("VMOVUPD.Z (AX), K1, Z8")
		for j := range cols {
			emit("VMOVUPD.Z %s, K1, Z9", col(j))
			emit("VFMADD231PD Z9, Z8, Z%d", acc(j))
		}
		label(name + "red" + lbl)
	}

	// sum8 adds up the lanes of Z0..Z7 and stores column j's sum at
	// j*8(DI): pairs interleaved and added, then 128-bit lanes shuffled
	// and added twice, leaving column j's sum in lane j.
	sum8 := func() {
		for p := range 4 {
			a, b := 2*p, 2*p+1
			emit("VUNPCKLPD Z%d, Z%d, Z%d", b, a, 16+2*p)
			emit("VUNPCKHPD Z%d, Z%d, Z%d", b, a, 17+2*p)
			emit("VADDPD Z%d, Z%d, Z%d", 17+2*p, 16+2*p, 16+2*p)
		}
		emit("VSHUFF64X2 $0x88, Z18, Z16, Z24")
		emit("VSHUFF64X2 $0xDD, Z18, Z16, Z25")
		emit("VADDPD Z25, Z24, Z24")
		emit("VSHUFF64X2 $0x88, Z22, Z20, Z26")
		emit("VSHUFF64X2 $0xDD, Z22, Z20, Z27")
		emit("VADDPD Z27, Z26, Z26")
		emit("VSHUFF64X2 $0x88, Z26, Z24, Z28")
		emit("VSHUFF64X2 $0xDD, Z26, Z24, Z29")
		emit("VADDPD Z29, Z28, Z28")
		emit("VMOVUPD Z28, (DI)")
	}

	label(name + "block8")
	emit("CMPQ R9, $9")
	emit("JEQ %sblock9", name)
	emit("CMPQ R9, $8")
	emit("JLT %sone", name)
	chunks("8", 8)
	sum8()
	emit("ADDQ $64, DI")
	emit("LEAQ (DX)(R8*8), DX")
	emit("SUBQ $8, R9")
	emit("JMP %sblock8", name)

	// Exactly nine columns left (e+1 for e a multiple of 8: the values and
	// the ones column): the ninth in the same pass, in Z10.
	label(name + "block9")
	chunks("9", 9)
	sum8()
	hreduce("ADD", f64, 10, true, "64(DI)")
	emit("JMP %sdone", name)

	label(name + "one")
	emit("TESTQ R9, R9")
	emit("JZ %sdone", name)
	chunks("1", 1)
	hreduce("ADD", f64, 0, true, "(DI)")
	emit("ADDQ $8, DI")
	emit("ADDQ R8, DX")
	emit("DECQ R9")
	emit("JMP %sone", name)
	label(name + "done")
	emit("VZEROUPPER")
	emit("RET\n")
}
