package main

import (
	"fmt"
	"log"
)

// Products with a 16-bit B: C (mr x nv*W, float32) += A (mr x k, float32)
// times B (k x nv*W, float16 or bfloat16 bits), B widened to float32 in
// registers as it is loaded, so a decoding step reads its cached keys and
// values in 16 bits and never writes a widened copy. In a decoding step A
// is the step's queries and B a block of keys (D x keys, transposed), or
// A is the probabilities and B the block's values. The query heads of a
// grouped-query group are A's rows, so each key and value is read once per
// group.
//
// Same frame as the GEMM microkernels (see gemmSig), with b a *uint16 and
// ldb in 16-bit elements. AVX-512 kernels come full and with the last
// vector masked to tail lanes (masked loads of B and C, so any n is
// covered); AVX2 kernels (F16C for float16) come full only, the caller
// doing the last n mod nr columns.

// halfB is one B format: how a vector of it is widened to float32.
type halfB struct {
	name string // F16, BF16 (and F32, plainF32)
	size int    // bytes per element
	// widen loads W 16-bit values at addr into register reg, widened to
	// float32; kmask is the opmask of a masked load ("" for none).
	widen func(is isa, addr, kmask, reg string)
}

var (
	halfF16 = halfB{"F16", 2, func(is isa, addr, kmask, reg string) {
		if kmask != "" {
			emit("VCVTPH2PS.Z %s, %s, %s", addr, kmask, reg)
			return
		}
		emit("VCVTPH2PS %s, %s", addr, reg)
	}}
	// bfloat16 is a float32's high half: zero-extend each 16-bit value
	// to 32 bits and shift it up.
	halfBF16 = halfB{"BF16", 2, func(is isa, addr, kmask, reg string) {
		if kmask != "" {
			emit("VPMOVZXWD.Z %s, %s, %s", addr, kmask, reg)
		} else {
			emit("VPMOVZXWD %s, %s", addr, reg)
		}
		emit("VPSLLD $16, %[1]s, %[1]s", reg)
	}}
)

// halfBConfigs: AVX-512 up to 6 rows (a GQA group of up to 6 query heads
// per kernel call, 29 registers) by 4 vectors (64 columns); AVX2 up to 4
// rows by 2 vectors (11 of 16 registers).
var halfBConfigs = []struct {
	is     isa
	mr, nv int
}{{avx512, 6, 4}, {avx2, 4, 2}}

func halfBName(h halfB, is isa, mr, nv int, masked bool) string {
	n := fmt.Sprintf("gemm32x%s%s_%dx%d", h.name, is.name, mr, nv)
	if masked {
		n += "m"
	}
	return n
}

// genHalfB writes every 16-bit-B kernel and their tables (halfBKernels in
// half_decode_amd64.go).
func genHalfB() {
	for _, h := range []halfB{halfF16, halfBF16} {
		for _, c := range halfBConfigs {
			masks := []bool{false}
			if c.is == avx512 {
				masks = append(masks, true)
			}
			for _, masked := range masks {
				for nv := 1; nv <= c.nv; nv++ {
					if !masked && nv != c.nv {
						continue
					}
					for mr := 1; mr <= c.mr; mr++ {
						genHalfBKernel(h, c.is, mr, nv, masked)
					}
				}
			}
			w := c.is.vbytes / 4
			fmt.Fprintf(&gs, "var gemm32x%s%s = halfBKernels{\n\tmr: %d, nr: %d, w: %d,\n\tfull: []kernHalfB{", h.name, c.is.name, c.mr, c.nv*w, w)
			for mr := 1; mr <= c.mr; mr++ {
				fmt.Fprintf(&gs, "%s, ", halfBName(h, c.is, mr, c.nv, false))
			}
			fmt.Fprintf(&gs, "},\n")
			if c.is == avx512 {
				fmt.Fprintf(&gs, "\tpart: [][]kernHalfB{\n")
				for nv := 1; nv <= c.nv; nv++ {
					fmt.Fprintf(&gs, "\t\t{")
					for mr := 1; mr <= c.mr; mr++ {
						fmt.Fprintf(&gs, "%s, ", halfBName(h, c.is, mr, nv, true))
					}
					fmt.Fprintf(&gs, "},\n")
				}
				fmt.Fprintf(&gs, "\t},\n")
			}
			fmt.Fprintf(&gs, "}\n\n")
		}
	}
}

func genHalfBKernel(h halfB, is isa, mr, nv int, masked bool) {
	R := func(n int) string { return fmt.Sprintf("%s%d", is.reg, n) }
	acc := func(i, v int) string { return R(i*nv + v) }
	breg := func(v int) string { return R(mr*nv + v) }
	bc := R(mr*nv + nv)
	if need := mr*nv + nv + 1; need > is.nregs {
		log.Fatalf("%s: %d registers needed", halfBName(h, is, mr, nv, masked), need)
	}
	w := is.vbytes / 4 // float32 lanes per vector, 16-bit values per load
	f := sig(halfBName(h, is, mr, nv, masked), ps("k", "int", "a", "*float32", "lda", "int", "b", "*uint16", "ldb", "int", "c", "*float32", "ldc", "int", "tail", "int", "acc", "int"), nil)
	text(f)
	f.load("k", "CX", "a", "SI", "lda", "R8<<2", "b", "DX", "ldb", "R9<<1")
	emit("LEAQ (R8)(R8*2), R11")
	if mr > 5 {
		emit("LEAQ (R8)(R8*4), AX")
		emit("LEAQ (SI)(AX*1), R12")
	}
	if masked {
		emit("MOVQ %s, BX", f.fp("tail"))
		emit("LEAQ maskK<>(SB), AX")
		emit("KMOVW (AX)(BX*2), K1")
	}
	for i := range mr {
		for v := range nv {
			if is == avx2 {
				emit("VXORPS %[1]s, %[1]s, %[1]s", acc(i, v))
			} else {
				emit("VPXORD %[1]s, %[1]s, %[1]s", acc(i, v))
			}
		}
	}
	aBases := [3]string{"SI", "R12", "R13"}
	// step does one k index: row u of B against column u of A.
	step := func(u int) {
		for v := range nv {
			kmask := ""
			if masked && v == nv-1 {
				kmask = "K1"
			}
			h.widen(is, fmt.Sprintf("%d(DX)", v*w*2), kmask, breg(v))
		}
		emit("ADDQ R9, DX")
		for i := range mr {
			emit("VBROADCASTSS %s, %s", rowAddr(i, 4*u, aBases, "R8", "R11"), bc)
			for v := range nv {
				emit("VFMADD231PS %s, %s, %s", breg(v), bc, acc(i, v))
			}
		}
	}
	advanceA := func(elems int) {
		emit("ADDQ $%d, SI", 4*elems)
		if mr > 5 {
			emit("ADDQ $%d, R12", 4*elems)
		}
	}
	kLoop(step, advanceA)

	label("store")
	emit("MOVQ %s, DI", f.fp("c"))
	emit("MOVQ %s, R10", f.fp("ldc"))
	emit("SHLQ $2, R10")
	emit("LEAQ (R10)(R10*2), R11")
	if mr > 5 {
		emit("LEAQ (R10)(R10*4), AX")
		emit("LEAQ (DI)(AX*1), R12")
	}
	cBases := [3]string{"DI", "R12", "R13"}
	// The last vector of a masked kernel loads and stores its tail lanes
	// only.
	cOp := func(ins string, v int, src, dst string) {
		if masked && v == nv-1 {
			emit("%s %s, K1, %s", ins, src, dst)
			return
		}
		emit("%s %s, %s", ins, src, dst)
	}
	emit("MOVQ %s, BX", f.fp("acc"))
	emit("TESTQ BX, BX")
	emit("JZ over")
	for i := range mr {
		for v := range nv {
			a := rowAddr(i, v*is.vbytes, cBases, "R10", "R11")
			if masked && v == nv-1 {
				emit("VMOVUPS.Z %s, K1, %s", a, bc)
				emit("VADDPS %s, %s, %s", bc, acc(i, v), acc(i, v))
			} else {
				emit("VADDPS %s, %s, %s", a, acc(i, v), acc(i, v))
			}
			cOp("VMOVUPS", v, acc(i, v), a)
		}
	}
	emit("VZEROUPPER")
	emit("RET")
	label("over")
	for i := range mr {
		for v := range nv {
			cOp("VMOVUPS", v, acc(i, v), rowAddr(i, v*is.vbytes, cBases, "R10", "R11"))
		}
	}
	emit("VZEROUPPER")
	emit("RET")
	s.WriteString("\n")
}
