package main

import "fmt"

// Scores against row-major 16-bit keys: C (mr x 4 per block, float32) =
// A (mr x k, float32) times B^T, B being 4 keys (rows of k float16 or
// bfloat16 values, row stride ldb) per block, widened in registers as they
// are loaded (2 keys per block in the wide kernels, below; float32 and
// float64 keys are loaded as they are, plainF32 and plainF64). A
// stateless decoding step holds its keys as the caller laid them out, one
// row per key; a few query rows (a grouped-query group) read each key once
// this way, without a widened or packed copy.
//
// Each block of keys keeps one accumulator per (row, key) pair, of W
// lanes along k; a transpose-and-add tree then reduces them to the rows x
// keys scores. The kernels loop over `blocks` consecutive blocks (B
// advancing a block's rows, C as many columns), each block first
// prefetching the next pflines cache lines from pf into L2. AVX-512
// kernels take blocks of 4 keys (16 accumulators) and mask the last vector
// of k, so any k is covered; AVX2 kernels (16 registers) take blocks of 2
// keys and whole vectors of k only, the caller adding the last k mod 8
// products. Rows past mr are left at zero and not stored.

// halfNTRows is the most rows of A per kernel call of the narrow
// kernels. The wide kernels (AVX-512 only) take halfNTRows+1 to
// 2*halfNTRows rows against blocks of 2 keys, with the same 16
// accumulators: a tile of 5-8 rows then reads each key once, where two
// calls of the narrow kernels read it twice.
const halfNTRows = 4

// halfNTISAs are the kernels' instruction sets and keys per block.
var halfNTISAs = []struct {
	is   isa
	keys int
}{{avx512, 4}, {avx2, 2}}

// plainF32 is float32 B, loaded as it is: the same kernels score a few
// query rows against row-major float32 keys in place, where a packed
// product would first copy every key into panels only to read it once.
var plainF32 = halfB{"F32", 4, func(is isa, addr, kmask, reg string) {
	if kmask != "" {
		emit("VMOVUPS.Z %s, %s, %s", addr, kmask, reg)
		return
	}
	emit("VMOVUPS %s, %s", addr, reg)
}}

// plainF64 is float64 B with float64 A and float64 sums (AVX-512 only):
// the kernels' float64 twins, for a few float64 query rows.
var plainF64 = halfB{"F64", 8, func(is isa, addr, kmask, reg string) {
	if kmask != "" {
		emit("VMOVUPD.Z %s, %s, %s", addr, kmask, reg)
		return
	}
	emit("VMOVUPD %s, %s", addr, reg)
}}

func halfNTName(h halfB, is isa, mr int) string {
	return fmt.Sprintf("gemmNT%dx%s%s_%d", ntAccBits(h), h.name, is.name, mr)
}

// ntAccBits is the width of A, C and the sums for keys of format h: 64
// for float64 keys, else 32.
func ntAccBits(h halfB) int {
	if h.size == 8 {
		return 64
	}
	return 32
}

// genHalfNT writes the kernels and their tables (halfNTKernels in
// half_nt_amd64.go).
func genHalfNT() {
	for _, h := range []halfB{halfF16, halfBF16, plainF32, plainF64} {
		atyp, gotyp := "float32", "uint16"
		switch h.size {
		case 4:
			gotyp = "float32"
		case 8:
			atyp, gotyp = "float64", "float64"
		}
		for _, c := range halfNTISAs {
			if h.size == 8 && c.is.nregs < 32 {
				continue
			}
			for mr := 1; mr <= halfNTRows; mr++ {
				genHalfNTKernel(h, c.is, c.keys, mr)
			}
			fmt.Fprintf(&gs, "var gemmNT%dx%s%s = [...]kernNTRows[%s, %s]{", ntAccBits(h), h.name, c.is.name, atyp, gotyp)
			for mr := 1; mr <= halfNTRows; mr++ {
				fmt.Fprintf(&gs, "%s, ", halfNTName(h, c.is, mr))
			}
			fmt.Fprintf(&gs, "}\n\n")
			if c.is.nregs < 32 {
				continue
			}
			for mr := halfNTRows + 1; mr <= 2*halfNTRows; mr++ {
				genHalfNTKernel(h, c.is, 2, mr)
			}
			fmt.Fprintf(&gs, "var gemmNT%dx%s%sWide = [...]kernNTRows[%s, %s]{", ntAccBits(h), h.name, c.is.name, atyp, gotyp)
			for mr := halfNTRows + 1; mr <= 2*halfNTRows; mr++ {
				fmt.Fprintf(&gs, "%s, ", halfNTName(h, c.is, mr))
			}
			fmt.Fprintf(&gs, "}\n\n")
		}
	}
}

func genHalfNTKernel(h halfB, is isa, nk, mr int) {
	R := func(n int) string { return fmt.Sprintf("%s%d", is.reg, n) }
	X := func(n int) string { return fmt.Sprintf("X%d", n) }
	// A float64 kernel (float64 A, B and sums) has 8 lanes per vector
	// where the others have 16 (AVX-512) or 8 (AVX2) float32 lanes.
	f64 := h.size == 8
	asz, sfx, at := 4, "PS", "*float32"
	if f64 {
		asz, sfx, at = 8, "PD", "*float64"
	}
	w := is.vbytes / asz // lanes of A and of the sums, B's values per load
	// wide kernels take 5-8 rows against blocks of 2 keys (AVX-512).
	wide := mr > halfNTRows
	// Registers: the accumulators first (row i, key j), then the widened
	// keys and the rows of A, then two scratch registers. 16 accumulators
	// on AVX-512 (4 rows x 4 keys, or 8 x 2), 8 on AVX2 (4 x 2).
	nacc := halfNTRows * nk
	if wide {
		nacc = 2 * halfNTRows * nk
	}
	acc := func(i, j int) string { return R(i*nk + j) }
	key := func(j int) string { return R(nacc + j) }
	row := func(i int) string { return R(nacc + nk + i) }
	t0, t1 := R(is.nregs-2), R(is.nregs-1)
	avx512 := is.nregs == 32
	bt := "*uint16"
	switch h.size {
	case 4:
		bt = "*float32"
	case 8:
		bt = "*float64"
	}
	f := sig(halfNTName(h, is, mr), ps("k", "int", "a", at, "lda", "int", "b", bt, "ldb", "int", "c", at, "ldc", "int", "blocks", "int", "pf", bt, "pflines", "int"), nil)
	text(f)
	// SI: A (R14 its start; in a wide kernel R14 is rows 5-7's base,
	// SI + 5 lda, in the loop and C's rows 5-7 in the store, and A's start
	// is read from the argument), R8 lda and R11 3*lda in bytes; DX: B
	// within the block (R12 the block's first key), R9 ldb and R10 3*ldb
	// in bytes; DI: C, AX ldc in bytes; R13: blocks left; K1: the lanes
	// of k's last vector (AVX-512).
	emit("MOVQ %s, R14", f.fp("a"))
	emit("MOVQ %s, R8", f.fp("lda"))
	emit("SHLQ $%d, R8", bitsLen(asz)-1)
	emit("LEAQ (R8)(R8*2), R11")
	emit("MOVQ %s, R12", f.fp("b"))
	emit("MOVQ %s, R9", f.fp("ldb"))
	emit("SHLQ $%d, R9", bitsLen(h.size)-1)
	emit("LEAQ (R9)(R9*2), R10")
	f.load("c", "DI", "ldc", fmt.Sprintf("AX<<%d", bitsLen(asz)-1), "blocks", "R13")
	if avx512 {
		emit("MOVQ %s, BX", f.fp("k"))
		emit("ANDQ $%d, BX", w-1)
		emit("LEAQ maskK<>(SB), CX")
		emit("KMOVW (CX)(BX*2), K1")
	}
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
	if wide {
		emit("MOVQ %s, SI", f.fp("a"))
		emit("LEAQ (R8)(R8*4), R14")
		emit("ADDQ SI, R14")
	} else {
		emit("MOVQ R14, SI")
	}
	emit("MOVQ R12, DX")
	for r := range nacc {
		emit("VXORPS %[1]s, %[1]s, %[1]s", R(r))
	}
	emit("MOVQ %s, CX", f.fp("k"))
	emit("SHRQ $%d, CX", bitsLen(w)-1)
	keyAddr := func(j, off int) string {
		switch j {
		case 0:
			return fmt.Sprintf("%d(DX)", off)
		case 3:
			return fmt.Sprintf("%d(DX)(R10*1)", off)
		}
		return fmt.Sprintf("%d(DX)(R9*%d)", off, j)
	}
	aBases := [3]string{"SI", "R14", ""}
	// step does w entries of k (the vector at element w*u), masked to
	// kmask when not "".
	step := func(u int, kmask string) {
		for j := range nk {
			h.widen(is, keyAddr(j, h.size*w*u), kmask, key(j))
		}
		for i := range mr {
			a := rowAddr(i, asz*w*u, aBases, "R8", "R11")
			if kmask != "" {
				emit("VMOVUP%s.Z %s, %s, %s", sfx[1:], a, kmask, row(i))
			} else {
				emit("VMOVUP%s %s, %s", sfx[1:], a, row(i))
			}
		}
		for i := range mr {
			for j := range nk {
				emit("VFMADD231%s %s, %s, %s", sfx, key(j), row(i), acc(i, j))
			}
		}
	}
	kLoop(func(u int) { step(u, "") }, func(vectors int) {
		emit("ADDQ $%d, SI", asz*w*vectors)
		if wide {
			emit("ADDQ $%d, R14", asz*w*vectors)
		}
		emit("ADDQ $%d, DX", h.size*w*vectors)
	})
	label("store")
	if avx512 {
		emit("KORTESTW K1, K1")
		emit("JZ reduce")
		step(0, "K1")
		label("reduce")
	}
	// pairAdd sets dst to lo+hi, where lo and hi are the shuffles of x and
	// y by ins with immediates ilo and ihi.
	pairAdd := func(ins string, ilo, ihi int, x, y, dst string) {
		emit("%s $0x%02x, %s, %s, %s", ins, ilo, y, x, t0)
		emit("%s $0x%02x, %s, %s, %s", ins, ihi, y, x, t1)
		emit("VADD%s %s, %s, %s", sfx, t1, t0, dst)
	}
	emit("LEAQ (AX)(AX*2), BX")
	cBases := [3]string{"DI", "R14", ""}
	cRow := func(i int) string { return rowAddr(i, 0, cBases, "AX", "BX") }
	if wide {
		emit("LEAQ (AX)(AX*4), R14")
		emit("ADDQ DI, R14")
	}
	if avx512 {
		// The tree sums slot (a, b), a, b < 4, into 128-bit block a:
		// row a and key b in a narrow kernel, rows 2a and 2a+1 and keys
		// b%2 in a wide one (register 4a+b either way).
		slot := func(a, b int) string { return R(4*a + b) }
		// 256-bit halves: Z16+2j holds slots 0 and 1 of column j (128-bit
		// blocks 0-1 and 2-3), Z17+2j slots 2 and 3. (VSHUFF32X4 moves
		// float64 blocks as well.)
		for j := range 4 {
			pairAdd("VSHUFF32X4", 0x44, 0xee, slot(0, j), slot(1, j), R(16+2*j))
			pairAdd("VSHUFF32X4", 0x44, 0xee, slot(2, j), slot(3, j), R(17+2*j))
		}
		// 128-bit blocks: Z24+j holds slot (i, j)'s partial sums in block
		// i (4 float32 or 2 float64).
		for j := range 4 {
			pairAdd("VSHUFF32X4", 0x88, 0xdd, R(16+2*j), R(17+2*j), R(24+j))
		}
		if f64 {
			// Within blocks: block a of Z16 holds the sums of slots (a,
			// 0) and (a, 1), of Z17 slots (a, 2) and (a, 3). A narrow
			// kernel's row i is block i of both, a wide one's row 2a
			// block a of Z16 and row 2a+1 block a of Z17.
			pairAdd("VSHUFPD", 0x00, 0xff, R(24), R(25), R(16))
			pairAdd("VSHUFPD", 0x00, 0xff, R(26), R(27), R(17))
			store := func(z, blk int, addr string) {
				x := X(z)
				if blk > 0 {
					emit("VEXTRACTF64X2 $%d, Z%d, X19", blk, z)
					x = X(19)
				}
				emit("VMOVUPD %s, %s", x, addr)
			}
			for i := range mr {
				if wide {
					store(16+i%2, i/2, cRow(i))
					continue
				}
				store(16, i, cRow(i))
				store(17, i, rowAddr(i, 16, cBases, "AX", "BX"))
			}
		} else {
			// Within blocks: lane b of block a is slot (a, b)'s score.
			pairAdd("VSHUFPS", 0x44, 0xee, R(24), R(25), R(16))
			pairAdd("VSHUFPS", 0x44, 0xee, R(26), R(27), R(17))
			pairAdd("VSHUFPS", 0x88, 0xdd, R(16), R(17), R(18))
			for i := range mr {
				x, blk := X(18), i
				if wide {
					blk = i / 2
				}
				if blk > 0 {
					x = X(19)
					if !wide || i%2 == 0 {
						emit("VEXTRACTF32X4 $%d, Z18, X19", blk)
					}
				}
				switch {
				case !wide:
					emit("VMOVUPS %s, %s", x, cRow(i))
				case i%2 == 0:
					emit("VMOVLPS %s, %s", x, cRow(i))
				default:
					emit("VMOVHPS %s, %s", x, cRow(i))
				}
			}
		}
	} else {
		// 128-bit halves: Y8 holds (row 0, key 0) in its low half and
		// (row 2, key 0) in its high half, Y9 key 1 of the same rows, Y10
		// and Y11 rows 1 and 3.
		for r := range 2 {
			for j := range 2 {
				pairAdd("VPERM2F128", 0x20, 0x31, acc(r, j), acc(r+2, j), R(8+2*r+j))
			}
		}
		// Within halves: lanes 0-1 of the low half are row 0's scores of
		// keys 0 and 1, lanes 2-3 row 1's; the high half rows 2 and 3.
		pairAdd("VSHUFPS", 0x44, 0xee, R(8), R(9), R(12))
		pairAdd("VSHUFPS", 0x44, 0xee, R(10), R(11), R(13))
		pairAdd("VSHUFPS", 0x88, 0xdd, R(12), R(13), R(8))
		emit("VEXTRACTF128 $1, Y8, X9")
		for i := range mr {
			ins := "VMOVLPS"
			if i%2 == 1 {
				ins = "VMOVHPS"
			}
			emit("%s %s, %s", ins, X(8+i/2), cRow(i))
		}
	}
	emit("ADDQ $%d, DI", asz*nk)
	emit("LEAQ (R12)(R9*%d), R12", nk)
	emit("DECQ R13")
	emit("JNZ block")
	label("done")
	emit("VZEROUPPER")
	emit("RET")
	s.WriteString("\n")
}
