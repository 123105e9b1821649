package main

import "fmt"

// AMX (Advanced Matrix Extensions) bfloat16 GEMM.
//
// AMX has eight tile registers of up to 16 rows of 64 bytes. TDPBF16PS
// tmm_c, tmm_a, tmm_b adds to the 16 x 16 float32 tile C the product of A
// (16 rows of 32 bfloat16 values along k) and B (16 rows of 16 bfloat16
// pairs: row r holds, for each of the 16 columns n, the pair B[2r][n],
// B[2r+1][n], the "VNNI" layout), 16·16·32 products per instruction.
//
// amxGemmBF16 computes C (mt·16 x nt·16 float32, row stride ldc bytes),
// either over C (acc == 0) or added to it, as A (mt·16 x ks·32 bfloat16,
// row stride lda bytes, astep bytes between blocks of 16 rows) times the
// packed B: nt panels of 16 columns, bstride bytes apart, each a run of
// consecutive 1 KiB tiles (one per 32 values of k, of which the first ks
// are used), so a tile's rows are 64 bytes apart. Blocks of 2 x 2
// tiles of C (tmm0-3) take two A tiles (tmm4-5) and two B tiles (tmm6-7) per
// k step: 4 loads per 4 products. Odd row or column counts end with 2 x 1,
// 1 x 2 or 1 x 1 blocks.
//
// Tile state belongs to the OS thread; a goroutine keeps its thread during
// an assembly function (assembly is never preempted asynchronously), so the
// function loads the tile configuration itself and releases the tiles
// (TILERELEASE) before returning.

// Go's register numbers in the x86 encoding.
var gpr = map[string]int{"AX": 0, "CX": 1, "DX": 2, "BX": 3, "SP": 4, "BP": 5, "SI": 6, "DI": 7,
	"R8": 8, "R9": 9, "R10": 10, "R11": 11, "R12": 12, "R13": 13, "R14": 14, "R15": 15}

// amxVEX emits a VEX.128.0F38.W0 instruction with prefix pp (0 none, 1 66,
// 2 F3, 3 F2), opcode op and the given ModRM and following bytes; x and b
// are VEX.X and VEX.B (the high bits of the SIB index and base registers),
// vvvv the extra tile operand.
func amxVEX(comment string, pp, vvvv, x, b int, op byte, rest ...byte) {
	bs := append([]byte{0xc4, byte((1^x)<<6 | (1^b)<<5 | 0x80 | 2), byte((^vvvv&15)<<3 | pp), op}, rest...)
	line := "// " + comment + "\n\t"
	for i, c := range bs {
		if i > 0 {
			line += "; "
		}
		line += fmt.Sprintf("BYTE $0x%02x", c)
	}
	emit("%s", line)
}

// amxMem emits a tile load (F2 4B) or store (F3 4B) of tmm t at
// [base + disp] with row stride index (bytes).
func amxMem(store bool, t int, base, index string, disp int) {
	bb, ix := gpr[base], gpr[index]
	if bb&7 == 5 || ix == 4 || disp < 0 || disp > 127 {
		panic("amxMem: unencodable operand")
	}
	mod, tail := 0, []byte{}
	if disp != 0 {
		mod, tail = 1, []byte{byte(disp)}
	}
	pp, name := 3, fmt.Sprintf("TILELOADD tmm%d, [%s+%s*1+%d]", t, base, index, disp)
	if store {
		pp, name = 2, fmt.Sprintf("TILESTORED [%s+%s*1+%d], tmm%d", base, index, disp, t)
	}
	rest := append([]byte{byte(mod<<6 | t<<3 | 4), byte((ix&7)<<3 | bb&7)}, tail...)
	amxVEX(name, pp, 0, ix>>3, bb>>3, 0x4b, rest...)
}

// tdpbf16ps emits TDPBF16PS tmm c, tmm a, tmm b: C += A B.
func tdpbf16ps(c, a, b int) {
	amxVEX(fmt.Sprintf("TDPBF16PS tmm%d, tmm%d, tmm%d", c, a, b), 2, b, 0, 0, 0x5c, byte(0xc0|c<<3|a))
}

func tilezero(t int) { amxVEX(fmt.Sprintf("TILEZERO tmm%d", t), 3, 0, 0, 0, 0x49, byte(0xc0|t<<3)) }

func genAMX() {
	// The tile configuration: palette 1, tiles 0-7 of 16 rows x 64 bytes.
	fmt.Fprintf(&s, "DATA amxTileCfg<>+0(SB)/8, $0x0000000000000001\n")
	fmt.Fprintf(&s, "DATA amxTileCfg<>+8(SB)/8, $0\n")
	fmt.Fprintf(&s, "DATA amxTileCfg<>+16(SB)/8, $0x0040004000400040\n")
	fmt.Fprintf(&s, "DATA amxTileCfg<>+24(SB)/8, $0x0040004000400040\n")
	fmt.Fprintf(&s, "DATA amxTileCfg<>+32(SB)/8, $0\n")
	fmt.Fprintf(&s, "DATA amxTileCfg<>+40(SB)/8, $0\n")
	fmt.Fprintf(&s, "DATA amxTileCfg<>+48(SB)/8, $0x1010101010101010\n")
	fmt.Fprintf(&s, "DATA amxTileCfg<>+56(SB)/8, $0\n")
	fmt.Fprintf(&s, "GLOBL amxTileCfg<>(SB), RODATA|NOPTR, $64\n\n")

	f := sig("amxGemmBF16", ps("mt", "int", "nt", "int", "ks", "int", "a", "*uint16", "lda", "int", "astep", "int",
		"b", "*uint16", "bstride", "int", "c", "*float32", "ldc", "int", "cstep", "int", "acc", "int"), nil)
	text(f)
	// Registers: SI, DI the current blocks of 16/32 rows of A and C, R9 the
	// row tiles left; BX the current B panel, R12 the current C block, R10
	// the panels left; AX, R11, R14 the A and B pointers and k steps left in
	// the k loop; DX, R8, CX the row strides of A, C and B (64); R13 the
	// bytes of one B panel.
	emit("LEAQ amxTileCfg<>(SB), AX")
	amxVEX("LDTILECFG [AX]", 0, 0, 0, 0, 0x49, 0x00)
	f.load("a", "SI", "c", "DI", "lda", "DX", "ldc", "R8")
	emit("MOVQ $64, CX")
	emit("MOVQ %s, R13", f.fp("bstride"))
	emit("MOVQ %s, R9", f.fp("mt"))
	label("amxRows")
	emit("CMPQ R9, $2")
	emit("JLT amxRows1")
	amxRowBlock(f, 2)
	emit("ADDQ %s, SI", f.fp("astep"))
	emit("ADDQ %s, SI", f.fp("astep"))
	emit("ADDQ %s, DI", f.fp("cstep"))
	emit("ADDQ %s, DI", f.fp("cstep"))
	emit("SUBQ $2, R9")
	emit("JMP amxRows")
	label("amxRows1")
	emit("CMPQ R9, $0")
	emit("JEQ amxDone")
	amxRowBlock(f, 1)
	label("amxDone")
	amxVEX("TILERELEASE", 0, 0, 0, 0, 0x49, 0xc0)
	emit("RET")
	fmt.Fprintln(&s)

	genSplitBF16()
}

// amxRowBlock emits the loop over B's panels for mt row tiles.
func amxRowBlock(f *signature, mt int) {
	l := fmt.Sprintf("amxM%d", mt)
	emit("MOVQ %s, BX", f.fp("b"))
	emit("MOVQ DI, R12")
	emit("MOVQ %s, R10", f.fp("nt"))
	label(l + "Cols")
	emit("CMPQ R10, $2")
	emit("JLT %sCols1", l)
	amxBlock(f, mt, 2)
	emit("ADDQ $128, R12")
	emit("ADDQ R13, BX")
	emit("ADDQ R13, BX")
	emit("SUBQ $2, R10")
	emit("JMP %sCols", l)
	label(l + "Cols1")
	emit("CMPQ R10, $0")
	emit("JEQ %sNext", l)
	amxBlock(f, mt, 1)
	label(l + "Next")
}

// amxBlock emits one mt x nt block of C tiles: load or zero, the k loop,
// store.
func amxBlock(f *signature, mt, nt int) {
	l := fmt.Sprintf("amx%dx%d", mt, nt)
	cTiles := func(store bool) {
		for i := range mt {
			if i == 1 {
				emit("ADDQ %s, R12", f.fp("cstep"))
			}
			for j := range nt {
				amxMem(store, 2*i+j, "R12", "R8", 64*j)
			}
			if i == 1 {
				emit("SUBQ %s, R12", f.fp("cstep"))
			}
		}
	}
	emit("CMPQ %s, $0", f.fp("acc"))
	emit("JEQ %sZero", l)
	cTiles(false)
	emit("JMP %sK", l)
	label(l + "Zero")
	for i := range mt {
		for j := range nt {
			tilezero(2*i + j)
		}
	}
	label(l + "K")
	emit("MOVQ SI, AX")
	emit("MOVQ BX, R11")
	emit("MOVQ %s, R14", f.fp("ks"))
	label(l + "Loop")
	amxMem(false, 4, "AX", "DX", 0)
	if mt == 2 {
		emit("ADDQ %s, AX", f.fp("astep"))
		amxMem(false, 5, "AX", "DX", 0)
		emit("SUBQ %s, AX", f.fp("astep"))
	}
	amxMem(false, 6, "R11", "CX", 0)
	if nt == 2 {
		emit("ADDQ R13, R11")
		amxMem(false, 7, "R11", "CX", 0)
		emit("SUBQ R13, R11")
	}
	for i := range mt {
		for j := range nt {
			tdpbf16ps(2*i+j, 4+i, 6+j)
		}
	}
	emit("ADDQ $64, AX")
	emit("ADDQ $1024, R11")
	emit("DECQ R14")
	emit("JNZ %sLoop", l)
	cTiles(true)
}

// genSplitBF16 emits splitBF16AVX512(hi, lo *uint16, src *float32, n int)
// for n a multiple of 64: hi = bf16(x) and lo = bf16(x - hi), both rounded
// to nearest even (VCVTNEPS2BF16), x - hi exact in float32.
func genSplitBF16() { genRoundBF16(true) }
