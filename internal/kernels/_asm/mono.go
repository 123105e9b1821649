package main

import "fmt"

// monoMaxCols is the most output columns a monoApply kernel keeps in
// registers (two vectors each: 24 accumulators, with h, x and a broadcast
// in the rest of the 32).
const monoMaxCols = 12

// genMono emits monoApplyF64AVX512_<nc>(y, ldy, s, x, ldx, parent, vari,
// r, h, m1, m2) for nc = 1..monoMaxCols: for up to 16 points (lane masks
// m1 and m2 over two vectors), the monomials h_0 = 1, h_a = h_parent[a] *
// x[vari[a]] (x's variable rows ldx apart, h the caller's r x 16 scratch)
// and y[c] = sum_a s[a*nc + c] h_a for each column c (rows ldy apart),
// summed in order of a with fused multiply-adds. The polynomial method's
// query side: the features stay in L1 and meet their coefficients as they
// are built, instead of a feature matrix written out for a GEMM.
func genMono() {
	for nc := 1; nc <= monoMaxCols; nc++ {
		genMonoCols(nc)
	}
}

func genMonoCols(nc int) {
	name := fmt.Sprintf("monoApplyF64AVX512_%d", nc)
	f := sig(name, ps("y", "*float64", "ldy", "int", "s", "*float64", "x", "*float64", "ldx", "int",
		"parent", "*int32", "vari", "*int32", "r", "int", "h", "*float64", "m1", "int", "m2", "int"), nil)
	text(f)
	f.load("s", "SI", "x", "DX", "ldx", "R9<<3", "parent", "R10", "vari", "R11", "r", "CX", "h", "R12", "m1", "AX")
	emit("KMOVW AX, K1")
	emit("MOVQ %s, AX", f.fp("m2"))
	emit("KMOVW AX, K2")
	// h_0 = 1 and the accumulators start at s[0][c].
	emit("MOVQ $0x3ff0000000000000, AX")
	emit("VPBROADCASTQ AX, Z24")
	emit("VMOVUPD Z24, (R12)")
	emit("VMOVUPD Z24, 64(R12)")
	for c := range nc {
		emit("VBROADCASTSD %d(SI), Z%d", 8*c, 2*c)
		emit("VMOVAPD Z%d, Z%d", 2*c, 2*c+1)
	}
	emit("ADDQ $%d, SI", 8*nc)
	emit("LEAQ 128(R12), DI")
	emit("ADDQ $4, R10")
	emit("ADDQ $4, R11")
	emit("DECQ CX")
	emit("JLE %sstore", name)
	label(name + "loop")
	emit("MOVLQSX (R10), AX")
	emit("MOVLQSX (R11), BX")
	emit("SHLQ $7, AX")
	emit("IMULQ R9, BX")
	emit("VMOVUPD (R12)(AX*1), Z24")
	emit("VMOVUPD 64(R12)(AX*1), Z25")
	// Lanes past the points read nothing (masked, zeroed).
	emit("VMOVUPD.Z (DX)(BX*1), K1, Z26")
	emit("VMOVUPD.Z 64(DX)(BX*1), K2, Z27")
	emit("VMULPD Z26, Z24, Z24")
	emit("VMULPD Z27, Z25, Z25")
	emit("VMOVUPD Z24, (DI)")
	emit("VMOVUPD Z25, 64(DI)")
	for c := range nc {
		emit("VBROADCASTSD %d(SI), Z28", 8*c)
		emit("VFMADD231PD Z24, Z28, Z%d", 2*c)
		emit("VFMADD231PD Z25, Z28, Z%d", 2*c+1)
	}
	emit("ADDQ $%d, SI", 8*nc)
	emit("ADDQ $128, DI")
	emit("ADDQ $4, R10")
	emit("ADDQ $4, R11")
	emit("DECQ CX")
	emit("JNZ %sloop", name)
	label(name + "store")
	emit("MOVQ %s, DI", f.fp("y"))
	emit("MOVQ %s, R8", f.fp("ldy"))
	emit("SHLQ $3, R8")
	for c := range nc {
		emit("VMOVUPD Z%d, K1, (DI)", 2*c)
		emit("VMOVUPD Z%d, K2, 64(DI)", 2*c+1)
		if c < nc-1 {
			emit("ADDQ R8, DI")
		}
	}
	emit("VZEROUPPER")
	emit("RET")
	fmt.Fprintf(&s, "\n")

	// The kernel table, indexed by nc-1.
	if nc == monoMaxCols {
		fmt.Fprintf(&gs, "var monoApplyF64AVX512 = [...]func(y *float64, ldy int, s *float64, x *float64, ldx int, parent *int32, vari *int32, r int, h *float64, m1 int, m2 int){\n")
		for c := 1; c <= monoMaxCols; c++ {
			fmt.Fprintf(&gs, "\tmonoApplyF64AVX512_%d,\n", c)
		}
		fmt.Fprintf(&gs, "}\n\n")
	}
}

// genMonoMoments emits monoMomentsF64AVX512(mom, e1, vt, u, ldu, parent,
// vari, r, h): for a block of 128 points (16 vectors, held in Z16-Z31),
// the monomials h_a of the table as genMono builds them (written to the
// caller's r x 128 scratch h, where children read their parents), and
// mom[a*e1+c] += sum over the points of h_a vt[c] for each of the e1
// rows of vt (128 apart): each a 16-term product accumulated in two
// vectors, then added across lanes. The polynomial method's key moments,
// without a feature matrix between the features and a GEMM whose narrow
// e+1 side runs its slowest microkernel.
func genMonoMoments() {
	name := "monoMomentsF64AVX512"
	f := sig(name, ps("mom", "*float64", "e1", "int", "vt", "*float64", "u", "*float64", "ldu", "int",
		"parent", "*int32", "vari", "*int32", "r", "int", "h", "*float64"), nil)
	text(f)
	f.load("mom", "R8", "vt", "SI", "u", "DX", "ldu", "R9<<3", "parent", "R10")
	emit("ADDQ $4, R10")
	emit("MOVQ %s, R11", f.fp("vari"))
	emit("ADDQ $4, R11")
	emit("MOVQ %s, CX", f.fp("r"))
	emit("DECQ CX")
	emit("MOVQ %s, R12", f.fp("h"))
	// h_0 = 1.
	emit("MOVQ $0x3ff0000000000000, AX")
	emit("VPBROADCASTQ AX, Z16")
	for v := range 16 {
		if v > 0 {
			emit("VMOVAPD Z16, Z%d", 16+v)
		}
		emit("VMOVUPD Z16, %d(R12)", 64*v)
	}
	emit("LEAQ 1024(R12), DI")
	emit("JMP %scols", name)
	label(name + "loop")
	emit("MOVLQSX (R10), AX")
	emit("ADDQ $4, R10")
	emit("MOVLQSX (R11), BX")
	emit("ADDQ $4, R11")
	emit("SHLQ $10, AX")
	emit("IMULQ R9, BX")
	emit("ADDQ R12, AX")
	emit("ADDQ DX, BX")
	for v := range 16 {
		emit("VMOVUPD %d(AX), Z%d", 64*v, 16+v)
		emit("VMULPD %d(BX), Z%d, Z%d", 64*v, 16+v, 16+v)
		emit("VMOVUPD Z%d, %d(DI)", 16+v, 64*v)
	}
	emit("ADDQ $1024, DI")
	label(name + "cols")
	emit("MOVQ SI, BX")
	emit("MOVQ %s, R13", f.fp("e1"))
	// Four rows of vt at a time (two accumulators each), their lane sums
	// gathered into one vector: a quarter of the across-lane work of one
	// row at a time.
	label(name + "quad")
	emit("CMPQ R13, $4")
	emit("JLT %sone", name)
	for i := range 4 {
		emit("VMULPD %d(BX), Z16, Z%d", 1024*i, 2*i)
		emit("VMULPD %d(BX), Z17, Z%d", 1024*i+64, 2*i+1)
	}
	for v := 2; v < 16; v++ {
		for i := range 4 {
			emit("VFMADD231PD %d(BX), Z%d, Z%d", 1024*i+64*v, 16+v, 2*i+v%2)
		}
	}
	for i := range 4 {
		emit("VADDPD Z%d, Z%d, Z%d", 2*i+1, 2*i, 2*i)
		emit("VEXTRACTF64X4 $1, Z%d, Y%d", 2*i, 2*i+1)
		emit("VADDPD Y%d, Y%d, Y%d", 2*i+1, 2*i, 2*i)
	}
	emit("VHADDPD Y2, Y0, Y0") // rows 0, 1: [0 lanes 01, 1 lanes 01, 0 lanes 23, 1 lanes 23]
	emit("VHADDPD Y6, Y4, Y4") // rows 2, 3 likewise
	emit("VPERM2F128 $0x20, Y4, Y0, Y1")
	emit("VPERM2F128 $0x31, Y4, Y0, Y2")
	emit("VADDPD Y2, Y1, Y1")
	emit("VADDPD (R8), Y1, Y1")
	emit("VMOVUPD Y1, (R8)")
	emit("ADDQ $32, R8")
	emit("ADDQ $4096, BX")
	emit("SUBQ $4, R13")
	emit("JMP %squad", name)
	label(name + "one")
	emit("TESTQ R13, R13")
	emit("JZ %snext", name)
	label(name + "col")
	emit("VMULPD (BX), Z16, Z0")
	emit("VMULPD 64(BX), Z17, Z1")
	for v := 2; v < 16; v++ {
		emit("VFMADD231PD %d(BX), Z%d, Z%d", 64*v, 16+v, v%2)
	}
	emit("VADDPD Z1, Z0, Z0")
	emit("VEXTRACTF64X4 $1, Z0, Y1")
	emit("VADDPD Y1, Y0, Y0")
	emit("VEXTRACTF128 $1, Y0, X1")
	emit("VADDPD X1, X0, X0")
	emit("VPERMILPD $1, X0, X1")
	emit("VADDSD X1, X0, X0")
	emit("VADDSD (R8), X0, X0")
	emit("VMOVSD X0, (R8)")
	emit("ADDQ $8, R8")
	emit("ADDQ $1024, BX")
	emit("DECQ R13")
	emit("JNZ %scol", name)
	label(name + "next")
	emit("TESTQ CX, CX")
	emit("JZ %sdone", name)
	emit("DECQ CX")
	emit("JMP %sloop", name)
	label(name + "done")
	emit("VZEROUPPER")
	emit("RET")
	fmt.Fprintf(&s, "\n")
}
