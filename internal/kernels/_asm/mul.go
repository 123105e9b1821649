package main

// genMul emits mulF64AVX512(dst, a, b *float64, n int): dst[i] = a[i]*b[i]
// for i < n, four vectors per step, then single vectors, then the last
// n mod 8 lanes under a mask, so no element past n is read or written; and
// mulSumF64AVX512, the same returning the sum of the products. The
// polynomial method builds its monomial features with them (each feature
// row is its parent row times one variable's row; the sum is the row's
// term of the softmax denominator).
func genMul() {
	genMulSum(false)
	genMulSum(true)
}

// genMulSum emits the product loop, as mulF64AVX512 or, with sum, as
// mulSumF64AVX512 which also returns the sum of the products (four vector
// accumulators, added pairwise, then across lanes).
func genMulSum(sum bool) {
	name, res := "mulF64AVX512", []param(nil)
	if sum {
		name, res = "mulSumF64AVX512", ps("s", "float64")
	}
	f := sig(name, ps("dst", "*float64", "a", "*float64", "b", "*float64", "n", "int"), res)
	text(f)
	acc := func(i, v int) {
		if sum {
			emit("VADDPD Z%d, Z%d, Z%d", v, 4+i, 4+i)
		}
	}
	if sum {
		for i := range 4 {
			emit("VPXORQ Z%d, Z%d, Z%d", 4+i, 4+i, 4+i) // AVX512F, unlike VXORPD
		}
	}
	f.load("dst", "DI", "a", "SI", "b", "DX", "n", "CX")
	label(name + "32")
	emit("CMPQ CX, $32")
	emit("JLT %s8", name)
	for i := range 4 {
		emit("VMOVUPD %d(SI), Z%d", 64*i, i)
	}
	for i := range 4 {
		emit("VMULPD %d(DX), Z%d, Z%d", 64*i, i, i)
	}
	for i := range 4 {
		emit("VMOVUPD Z%d, %d(DI)", i, 64*i)
		acc(i, i)
	}
	emit("ADDQ $256, SI")
	emit("ADDQ $256, DX")
	emit("ADDQ $256, DI")
	emit("SUBQ $32, CX")
	emit("JMP %s32", name)
	label(name + "8")
	emit("CMPQ CX, $8")
	emit("JLT %stail", name)
	emit("VMOVUPD (SI), Z0")
	emit("VMULPD (DX), Z0, Z0")
	emit("VMOVUPD Z0, (DI)")
	acc(0, 0)
	emit("ADDQ $64, SI")
	emit("ADDQ $64, DX")
	emit("ADDQ $64, DI")
	emit("SUBQ $8, CX")
	emit("JMP %s8", name)
	label(name + "tail")
	emit("TESTQ CX, CX")
	emit("JZ %sdone", name)
	emit("MOVQ $1, AX")
	emit("SHLQ CX, AX")
	emit("DECQ AX")
	emit("KMOVW AX, K1")
	emit("VMOVUPD.Z (SI), K1, Z0")
	emit("VMOVUPD.Z (DX), K1, Z1")
	emit("VMULPD Z1, Z0, Z0")
	emit("VMOVUPD Z0, K1, (DI)")
	acc(1, 0) // masked-off lanes are zero
	label(name + "done")
	if sum {
		emit("VADDPD Z5, Z4, Z4")
		emit("VADDPD Z7, Z6, Z6")
		emit("VADDPD Z6, Z4, Z4")
		hreduce("ADD", f64, 4, true, f.fp("s"))
	}
	emit("VZEROUPPER")
	emit("RET\n")
}
