package main

// genMul emits mulF64AVX512(dst, a, b *float64, n int): dst[i] = a[i]*b[i]
// for i < n, four vectors per step, then single vectors, then the last
// n mod 8 lanes under a mask, so no element past n is read or written.
// The polynomial method builds its monomial features with it (each feature
// row is its parent row times one variable's row).
func genMul() {
	f := sig("mulF64AVX512", ps("dst", "*float64", "a", "*float64", "b", "*float64", "n", "int"), nil)
	text(f)
	emit("MOVQ %s, DI", f.fp("dst"))
	emit("MOVQ %s, SI", f.fp("a"))
	emit("MOVQ %s, DX", f.fp("b"))
	emit("MOVQ %s, CX", f.fp("n"))
	label("mul32")
	emit("CMPQ CX, $32")
	emit("JLT mul8")
	for i := range 4 {
		emit("VMOVUPD %d(SI), Z%d", 64*i, i)
	}
	for i := range 4 {
		emit("VMULPD %d(DX), Z%d, Z%d", 64*i, i, i)
	}
	for i := range 4 {
		emit("VMOVUPD Z%d, %d(DI)", i, 64*i)
	}
	emit("ADDQ $256, SI")
	emit("ADDQ $256, DX")
	emit("ADDQ $256, DI")
	emit("SUBQ $32, CX")
	emit("JMP mul32")
	label("mul8")
	emit("CMPQ CX, $8")
	emit("JLT multail")
	emit("VMOVUPD (SI), Z0")
	emit("VMULPD (DX), Z0, Z0")
	emit("VMOVUPD Z0, (DI)")
	emit("ADDQ $64, SI")
	emit("ADDQ $64, DX")
	emit("ADDQ $64, DI")
	emit("SUBQ $8, CX")
	emit("JMP mul8")
	label("multail")
	emit("TESTQ CX, CX")
	emit("JZ muldone")
	emit("MOVQ $1, AX")
	emit("SHLQ CX, AX")
	emit("DECQ AX")
	emit("KMOVW AX, K1")
	emit("VMOVUPD.Z (SI), K1, Z0")
	emit("VMOVUPD.Z (DX), K1, Z1")
	emit("VMULPD Z1, Z0, Z0")
	emit("VMOVUPD Z0, K1, (DI)")
	label("muldone")
	emit("VZEROUPPER")
	emit("RET\n")
}
