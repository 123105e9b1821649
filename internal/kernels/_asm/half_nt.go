package main

import "fmt"

// Scores against row-major 16-bit keys: C (mr x 4 per block, float32) =
// A (mr x k, float32) times B^T, B being 4 keys (rows of k float16 or
// bfloat16 values, row stride ldb) per block, widened in registers as they
// are loaded. A stateless decoding step holds its keys as the caller laid
// them out, one row per key; a few query rows (a grouped-query group) read
// each key once this way, without a widened or packed copy.
//
// Each block of 4 keys keeps 16 accumulators, one per (row, key) pair, of
// 16 lanes along k; a transpose-and-add tree then reduces them to the 4 x 4
// scores. The kernels loop over `blocks` consecutive blocks of 4 keys
// (B advancing 4 rows, C 4 columns), each block first prefetching the
// next pflines cache lines from pf into L2; the last vector of k is
// masked, so any k is covered. Rows past mr are left at zero and not
// stored.

// halfNTRows is the most rows of A per kernel call.
const halfNTRows = 4

func halfNTName(h halfB, mr int) string {
	return fmt.Sprintf("gemmNT32x%sAVX512_%d", h.name, mr)
}

// genHalfNT writes the kernels and their tables (halfNTKernels in
// half_nt_amd64.go).
func genHalfNT() {
	for _, h := range []halfB{halfF16, halfBF16} {
		for mr := 1; mr <= halfNTRows; mr++ {
			genHalfNTKernel(h, mr)
		}
		fmt.Fprintf(&gs, "var gemmNT32x%sAVX512 = [...]kernHalfNT{", h.name)
		for mr := 1; mr <= halfNTRows; mr++ {
			fmt.Fprintf(&gs, "%s, ", halfNTName(h, mr))
		}
		fmt.Fprintf(&gs, "}\n\n")
	}
}

func genHalfNTKernel(h halfB, mr int) {
	is := avx512
	Z := func(n int) string { return fmt.Sprintf("Z%d", n) }
	acc := func(i, j int) string { return Z(i*4 + j) } // row i, key j
	key := func(j int) string { return Z(16 + j) }
	row := func(i int) string { return Z(20 + i) }
	f := sig(halfNTName(h, mr), ps("k", "int", "a", "*float32", "lda", "int", "b", "*uint16", "ldb", "int", "c", "*float32", "ldc", "int", "blocks", "int", "pf", "*uint16", "pflines", "int"), nil)
	text(f)
	// SI: A (R14 its start), R8 lda and R11 3*lda in bytes; DX: B within
	// the block (R12 the block's first key), R9 ldb and R10 3*ldb in bytes;
	// DI: C, AX ldc in bytes; R13: blocks left; K1: the lanes of k's last
	// vector.
	emit("MOVQ %s, R14", f.fp("a"))
	emit("MOVQ %s, R8", f.fp("lda"))
	emit("SHLQ $2, R8")
	emit("LEAQ (R8)(R8*2), R11")
	emit("MOVQ %s, R12", f.fp("b"))
	emit("MOVQ %s, R9", f.fp("ldb"))
	emit("SHLQ $1, R9")
	emit("LEAQ (R9)(R9*2), R10")
	emit("MOVQ %s, DI", f.fp("c"))
	emit("MOVQ %s, AX", f.fp("ldc"))
	emit("SHLQ $2, AX")
	emit("MOVQ %s, R13", f.fp("blocks"))
	emit("MOVQ %s, BX", f.fp("k"))
	emit("ANDQ $15, BX")
	emit("LEAQ maskK<>(SB), CX")
	emit("KMOVW (CX)(BX*2), K1")
	emit("TESTQ R13, R13")
	emit("JZ done")

	label("block")
	// Each block first prefetches the next pflines lines at pf into L2
	// (PREFETCHT1 never faults), so the caller's prefetch is spread evenly
	// over the blocks.
	emit("MOVQ %s, CX", f.fp("pflines"))
	emit("TESTQ CX, CX")
	emit("JLE nopf")
	emit("MOVQ %s, BX", f.fp("pf"))
	label("pfloop")
	emit("PREFETCHT1 (BX)")
	emit("ADDQ $64, BX")
	emit("DECQ CX")
	emit("JNZ pfloop")
	emit("MOVQ BX, %s", f.fp("pf"))
	label("nopf")
	emit("MOVQ R14, SI")
	emit("MOVQ R12, DX")
	for r := range 16 {
		emit("VPXORD %[1]s, %[1]s, %[1]s", Z(r))
	}
	emit("MOVQ %s, CX", f.fp("k"))
	emit("SHRQ $4, CX")
	keyAddr := func(j, off int) string {
		switch j {
		case 0:
			return fmt.Sprintf("%d(DX)", off)
		case 3:
			return fmt.Sprintf("%d(DX)(R10*1)", off)
		}
		return fmt.Sprintf("%d(DX)(R9*%d)", off, j)
	}
	aBases := [3]string{"SI", "", ""}
	// step does 16 entries of k (the vector at element 16u), masked to K1.
	step := func(u int, kmask string) {
		for j := range 4 {
			h.widen(is, keyAddr(j, 32*u), kmask, key(j))
		}
		for i := range mr {
			a := rowAddr(i, 64*u, aBases, "R8", "R11")
			if kmask != "" {
				emit("VMOVUPS.Z %s, %s, %s", a, kmask, row(i))
			} else {
				emit("VMOVUPS %s, %s", a, row(i))
			}
		}
		for i := range mr {
			for j := range 4 {
				emit("VFMADD231PS %s, %s, %s", key(j), row(i), acc(i, j))
			}
		}
	}
	kLoop(func(u int) { step(u, "") }, func(vectors int) {
		emit("ADDQ $%d, SI", 64*vectors)
		emit("ADDQ $%d, DX", 32*vectors)
	})
	label("store")
	emit("KORTESTW K1, K1")
	emit("JZ reduce")
	step(0, "K1")

	label("reduce")
	// pairAdd sets dst to lo+hi, where lo and hi are the shuffles of x and
	// y by ins with immediates ilo and ihi (Z28, Z29 scratch).
	pairAdd := func(ins string, ilo, ihi int, x, y, dst string) {
		emit("%s $0x%02x, %s, %s, Z28", ins, ilo, y, x)
		emit("%s $0x%02x, %s, %s, Z29", ins, ihi, y, x)
		emit("VADDPS Z29, Z28, %s", dst)
	}
	// 256-bit halves: Z16+2j holds rows 0 and 1 of key j (128-bit blocks
	// 0-1 and 2-3), Z17+2j rows 2 and 3.
	for j := range 4 {
		pairAdd("VSHUFF32X4", 0x44, 0xee, acc(0, j), acc(1, j), Z(16+2*j))
		pairAdd("VSHUFF32X4", 0x44, 0xee, acc(2, j), acc(3, j), Z(17+2*j))
	}
	// 128-bit blocks: Z24+j holds row i's 4 partial sums of key j in
	// block i.
	for j := range 4 {
		pairAdd("VSHUFF32X4", 0x88, 0xdd, Z(16+2*j), Z(17+2*j), Z(24+j))
	}
	// Within blocks: lane j of block i is the score of row i and key j.
	pairAdd("VSHUFPS", 0x44, 0xee, Z(24), Z(25), Z(16))
	pairAdd("VSHUFPS", 0x44, 0xee, Z(26), Z(27), Z(17))
	pairAdd("VSHUFPS", 0x88, 0xdd, Z(16), Z(17), Z(18))
	emit("LEAQ (AX)(AX*2), BX")
	cBases := [3]string{"DI", "", ""}
	for i := range mr {
		x := "X18"
		if i > 0 {
			emit("VEXTRACTF32X4 $%d, Z18, X19", i)
			x = "X19"
		}
		emit("VMOVUPS %s, %s", x, rowAddr(i, 0, cBases, "AX", "BX"))
	}
	emit("ADDQ $16, DI")
	emit("LEAQ (R12)(R9*4), R12")
	emit("DECQ R13")
	emit("JNZ block")
	label("done")
	emit("VZEROUPPER")
	emit("RET")
	s.WriteString("\n")
}
