package main

import "fmt"

// genStrips emits gemmStrips<dt>AVX512(strips int, k int, a *T, lda int,
// b *T, ldb int, c *T, ldc int, acc int, pf *byte, lines int), T float32
// or float64: the AVX-512 6x4 microkernel (gemm<dt>AVX512_6x4, adding to
// C when acc != 0, else storing over it) run on strips consecutive strips
// of 6 rows of A and C against one panel of B (k rows of 4 vectors, 64
// floats or 32 doubles, row stride ldb), in one call instead of one per
// strip, with the microkernel's order of operations; before
// each strip it prefetches lines cache lines from pf on into L2, as the
// driver's prefetcher does between calls. At d = 64 a strip of Q K^T is 64
// steps of the k loop, so the per-call cost of the Go driver (the call,
// its argument spills, the prefetch call) was a noticeable part of it.
// The loop state lives in the argument slots (a, c, pf, strips), which
// the callee owns in ABI0.
//
// With fused (float32 only) it emits gemmStripsAccF32AVX512, which takes
// three more arguments, dst *float64, ldd int and alpha *float64, and
// instead of storing each strip's results into C adds them to the float64
// rows of dst: dst[i][j] = alpha[i]*dst[i][j] + float64(result[i][j]) in
// one FMA, what Accumulate32 does with the stored results, so the tile of
// P V never goes through memory in float32 (C is still read when acc != 0).
func genStrips(dt dtype, fused bool) {
	typeSize["*byte"] = 8
	const mr, nv = 6, 4
	ptr, sh, sf := "*"+dt.gotyp, fmt.Sprint(dt.shift), dt.sfx
	args := ps("strips", "int", "k", "int", "a", ptr, "lda", "int", "b", ptr, "ldb", "int",
		"c", ptr, "ldc", "int", "acc", "int", "pf", "*byte", "lines", "int")
	name := "gemmStrips" + dt.name + "AVX512"
	if fused {
		if dt != f32 {
			panic("genStrips: fused is float32 only")
		}
		typeSize["*float64"] = 8
		args = append(args, ps("dst", "*float64", "ldd", "int", "alpha", "*float64")...)
		name = "gemmStripsAccF32AVX512"
	}
	f := sig(name, args, nil)
	text(f)
	acc := func(i, v int) string { return fmt.Sprintf("Z%d", i*nv+v) }
	breg := func(v int) string { return fmt.Sprintf("Z%d", mr*nv+v) }
	bc := fmt.Sprintf("Z%d", mr*nv+nv)
	label("strip")
	// The prefetch of this strip's share of the next operands.
	f.load("pf", "AX", "lines", "BX")
	emit("TESTQ BX, BX")
	emit("JLE compute")
	label("pfloop")
	emit("PREFETCHT1 (AX)")
	emit("ADDQ $64, AX")
	emit("DECQ BX")
	emit("JNZ pfloop")
	emit("MOVQ AX, %s", f.fp("pf"))
	label("compute")
	f.load("k", "CX", "a", "SI", "lda", "R8<<"+sh, "b", "DX", "ldb", "R9<<"+sh)
	emit("LEAQ (R8)(R8*2), R11")
	emit("LEAQ (R8)(R8*4), AX")
	emit("LEAQ (SI)(AX*1), R12")
	for i := range mr {
		for v := range nv {
			emit("VPXORD %[1]s, %[1]s, %[1]s", acc(i, v))
		}
	}
	aBases := [3]string{"SI", "R12", "R13"}
	step := func(u int) {
		for v := range nv {
			emit("VMOVU%s %d(DX), %s", sf, v*64, breg(v))
		}
		emit("ADDQ R9, DX")
		for i := range mr {
			emit("%s %s, %s", dt.bcast, rowAddr(i, u*dt.size, aBases, "R8", "R11"), bc)
			for v := range nv {
				emit("VFMADD231%s %s, %s, %s", sf, breg(v), bc, acc(i, v))
			}
		}
	}
	advanceA := func(elems int) {
		emit("ADDQ $%d, SI", elems*dt.size)
		emit("ADDQ $%d, R12", elems*dt.size)
	}
	kLoop(step, advanceA)
	label("store")
	f.load("c", "DI", "ldc", "R10<<"+sh)
	emit("LEAQ (R10)(R10*2), R11")
	emit("LEAQ (R10)(R10*4), AX")
	emit("LEAQ (DI)(AX*1), R12")
	cBases := [3]string{"DI", "R12", "R13"}
	emit("MOVQ %s, BX", f.fp("acc"))
	emit("TESTQ BX, BX")
	emit("JZ over")
	for i := range mr {
		for v := range nv {
			emit("VADD%s %s, %s, %s", sf, rowAddr(i, v*64, cBases, "R10", "R11"), acc(i, v), acc(i, v))
		}
	}
	label("over")
	if fused {
		// Row i's 64 results in four vectors of 16 floats: each half
		// widened to 8 doubles, then dst = alpha[i]*dst + result.
		f.load("dst", "DI", "ldd", "R13<<3", "alpha", "BX")
		emit("LEAQ (R13)(R13*2), R11")
		emit("LEAQ (R13)(R13*4), AX")
		emit("LEAQ (DI)(AX*1), R12")
		for i := range mr {
			emit("VBROADCASTSD %d(BX), Z28", 8*i)
			for v := range nv {
				emit("VCVTPS2PD Y%s, Z29", acc(i, v)[1:])
				emit("VEXTRACTF64X4 $1, %s, Y30", acc(i, v))
				emit("VCVTPS2PD Y30, Z30")
				for h, src := range []string{"Z29", "Z30"} {
					addr := rowAddr(i, v*128+h*64, cBases, "R13", "R11")
					emit("VMOVUPD %s, Z31", addr)
					emit("VFMADD213PD %s, Z28, Z31", src)
					emit("VMOVUPD Z31, %s", addr)
				}
			}
		}
		// dst and alpha move down 6 rows.
		emit("LEAQ (R13)(R13*2), AX")
		emit("ADDQ AX, AX")
		emit("ADDQ AX, %s", f.fp("dst"))
		emit("ADDQ $%d, %s", 8*mr, f.fp("alpha"))
	} else {
		for i := range mr {
			for v := range nv {
				emit("VMOVU%s %s, %s", sf, acc(i, v), rowAddr(i, v*64, cBases, "R10", "R11"))
			}
		}
	}
	// The next strip: a and c move down 6 rows.
	emit("LEAQ (R10)(R10*2), AX")
	emit("ADDQ AX, AX")
	emit("ADDQ AX, %s", f.fp("c"))
	emit("LEAQ (R8)(R8*2), AX")
	emit("ADDQ AX, AX")
	emit("ADDQ AX, %s", f.fp("a"))
	emit("DECQ %s", f.fp("strips"))
	emit("JNZ strip")
	emit("VZEROUPPER")
	emit("RET\n")
}
