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
	emit("MOVQ %s, SI", f.fp("s"))
	emit("MOVQ %s, DX", f.fp("x"))
	emit("MOVQ %s, R9", f.fp("ldx"))
	emit("SHLQ $3, R9")
	emit("MOVQ %s, R10", f.fp("parent"))
	emit("MOVQ %s, R11", f.fp("vari"))
	emit("MOVQ %s, CX", f.fp("r"))
	emit("MOVQ %s, R12", f.fp("h"))
	emit("MOVQ %s, AX", f.fp("m1"))
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
