package main

import (
	"fmt"
	"log"
)

// ---------------------------------------------------------------- TN GEMM

// The TN microkernels add A^T B to an mr x nr block of C, where A is given
// as it is stored, k x m (row stride lda): row p of C's block takes the
// mr consecutive elements of A's row p as its broadcasts. The backward
// pass's dK += dS^T Q and dV += P^T dO read the score tiles and the query
// rows in place this way, with no transposed copy of Q or dO.

var tnConfigs = []config{
	{avx512, f32, 6, 4, false},
	{avx512, f64, 6, 4, false},
}

func tnName(c config, mr, nv int, masked bool) string {
	n := fmt.Sprintf("gemmTN%s%s_%dx%d", c.dt.name, c.is.name, mr, nv)
	if masked {
		n += "m"
	}
	return n
}

func genTN() {
	for _, c := range tnConfigs {
		for mr := 1; mr <= c.mr; mr++ {
			genTNKernel(c, mr, c.nv, false)
		}
		for nv := 1; nv <= c.nv; nv++ {
			for mr := 1; mr <= c.mr; mr++ {
				genTNKernel(c, mr, nv, true)
			}
		}
		fmt.Fprintf(&gs, "var gemmTN%s%s = gemmKernels[%s]{\n\tmr: %d, nr: %d, w: %d,\n", c.dt.name, c.is.name, c.dt.gotyp, c.mr, c.nr(), c.w())
		fmt.Fprintf(&gs, "\tfull: []kern[%s]{", c.dt.gotyp)
		for mr := 1; mr <= c.mr; mr++ {
			fmt.Fprintf(&gs, "%s, ", tnName(c, mr, c.nv, false))
		}
		fmt.Fprintf(&gs, "},\n\tpart: [][]kern[%s]{\n", c.dt.gotyp)
		for nv := 1; nv <= c.nv; nv++ {
			fmt.Fprintf(&gs, "\t\t{")
			for mr := 1; mr <= c.mr; mr++ {
				fmt.Fprintf(&gs, "%s, ", tnName(c, mr, nv, true))
			}
			fmt.Fprintf(&gs, "},\n")
		}
		fmt.Fprintf(&gs, "\t},\n}\n\n")
	}
}

// genTNKernel is genGemm (AVX-512 only) with A read down its columns:
// element (i, p) of the block's A^T at byte i*size + p*lda.
func genTNKernel(c config, mr, nv int, masked bool) {
	is, dt := c.is, c.dt
	R := func(n int) string { return fmt.Sprintf("%s%d", is.reg, n) }
	acc := func(i, v int) string { return R(i*nv + v) }
	breg := func(v int) string { return R(mr*nv + v) }
	bc := R(mr*nv + nv)
	if need := mr*nv + nv + 1; need > is.nregs {
		log.Fatalf("%s: %d registers needed", tnName(c, mr, nv, masked), need)
	}
	f := gemmSig(tnName(c, mr, nv, masked), dt)
	text(f)
	f.load("k", "CX", "a", "SI", "lda", "R8")
	emit("SHLQ $%d, R8", dt.shift)
	emit("MOVQ %s, DX", f.fp("b"))
	emit("MOVQ %s, R9", f.fp("ldb"))
	emit("SHLQ $%d, R9", dt.shift)
	emit("LEAQ (R8)(R8*2), R11")
	if masked {
		emit("MOVQ %s, BX", f.fp("tail"))
		emit("LEAQ maskK<>(SB), AX")
		emit("KMOVW (AX)(BX*2), K1")
	}
	for i := 0; i < mr; i++ {
		for v := 0; v < nv; v++ {
			emit("VPXORD %[1]s, %[1]s, %[1]s", acc(i, v))
		}
	}
	// Step u of an unrolled group reads A's row u: SI + u*lda.
	rowOf := [4]string{"(SI)", "(SI)(R8*1)", "(SI)(R8*2)", "(SI)(R11*1)"}
	step := func(u int) {
		for v := 0; v < nv; v++ {
			addr := fmt.Sprintf("%d(DX)", v*is.vbytes)
			if masked && v == nv-1 {
				emit("VMOVU%s.Z %s, K1, %s", dt.sfx, addr, breg(v))
			} else {
				emit("VMOVU%s %s, %s", dt.sfx, addr, breg(v))
			}
		}
		emit("ADDQ R9, DX")
		for i := 0; i < mr; i++ {
			a := fmt.Sprintf("%d%s", i*dt.size, rowOf[u])
			if nv == 1 {
				emit("VFMADD231%s.BCST %s, %s, %s", dt.sfx, a, breg(0), acc(i, 0))
				continue
			}
			emit("%s %s, %s", dt.bcast, a, bc)
			for v := 0; v < nv; v++ {
				emit("VFMADD231%s %s, %s, %s", dt.sfx, breg(v), bc, acc(i, v))
			}
		}
	}
	advanceA := func(rows int) {
		if rows == 4 {
			emit("LEAQ (SI)(R8*4), SI")
		} else {
			emit("ADDQ R8, SI")
		}
	}
	kLoop(step, advanceA)

	genStore(f, is, dt.sfx, dt.shift, mr, nv, masked, acc, bc, "")
	s.WriteString("\n")
}

// genCopyRows emits copyRows256AVX512(dst *byte, src *byte, ld int, rows
// int): rows rows of 256 bytes from src (row stride ld bytes) to dst,
// contiguous. gemmTNAsm copies its panels of B (64 float32 or 32 float64
// columns) with it; copy's memmove call per row cost more than the move.
func genCopyRows() {
	typeSize["*byte"] = 8
	f := sig("copyRows256AVX512", ps("dst", "*byte", "src", "*byte", "ld", "int", "rows", "int"), nil)
	text(f)
	f.load("dst", "DI", "src", "SI", "ld", "DX", "rows", "CX")
	emit("TESTQ CX, CX")
	emit("JLE done")
	label("loop")
	for v := range 4 {
		emit("VMOVDQU64 %d(SI), Z%d", 64*v, v)
	}
	for v := range 4 {
		emit("VMOVDQU64 Z%d, %d(DI)", v, 64*v)
	}
	emit("ADDQ DX, SI")
	emit("ADDQ $256, DI")
	emit("DECQ CX")
	emit("JNZ loop")
	emit("VZEROUPPER")
	label("done")
	emit("RET\n")
}
