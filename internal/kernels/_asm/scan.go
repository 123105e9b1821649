package main

import "fmt"

// Column scans of a row-major matrix (rows of ld float32 values), for the
// certified calls' statistics of keys and values: genRange emits
// rangeF32AVX512x<s>(x *float32, rows, ld int, lo, hi *float32), which
// widens lo[c] and hi[c] (c < 16 s) to hold x[r*ld + c] for every row r;
// genMaxAbsBits emits maxAbsBitsF32AVX512x<s>(x *float32, rows, ld int,
// m *uint32), which raises m[c] to the bits of |x[r*ld + c]| (the sign
// cleared; their unsigned order is that of the magnitudes, a NaN above
// Inf). s vectors of 16 columns are held in registers across the rows.
// VMINPS and VMAXPS return their second source when either is NaN: the
// running value, so NaN keys are ignored as the Go loop ignores them.
func genRange(s int) {
	f := sig(fmt.Sprintf("rangeF32AVX512x%d", s), ps("x", "*float32", "rows", "int", "ld", "int", "lo", "*float32", "hi", "*float32"), nil)
	text(f)
	f.load("x", "SI", "rows", "CX", "ld", "DX<<2", "lo", "DI", "hi", "R8")
	for i := range s {
		emit("VMOVUPS %d(DI), Z%d", 64*i, i)
		emit("VMOVUPS %d(R8), Z%d", 64*i, 8+i)
	}
	emit("TESTQ CX, CX")
	emit("JZ done")
	label("loop")
	for i := range s {
		emit("VMOVUPS %d(SI), Z%d", 64*i, 16+i)
	}
	for i := range s {
		emit("VMINPS Z%d, Z%d, Z%d", i, 16+i, i)
		emit("VMAXPS Z%d, Z%d, Z%d", 8+i, 16+i, 8+i)
	}
	emit("ADDQ DX, SI")
	emit("DECQ CX")
	emit("JNZ loop")
	label("done")
	for i := range s {
		emit("VMOVUPS Z%d, %d(DI)", i, 64*i)
		emit("VMOVUPS Z%d, %d(R8)", 8+i, 64*i)
	}
	emit("VZEROUPPER")
	emit("RET\n")
}

func genMaxAbsBits(s int) {
	f := sig(fmt.Sprintf("maxAbsBitsF32AVX512x%d", s), ps("x", "*float32", "rows", "int", "ld", "int", "m", "*uint32"), nil)
	text(f)
	f.load("x", "SI", "rows", "CX", "ld", "DX<<2", "m", "DI")
	emit("MOVL $0x7fffffff, AX")
	emit("VPBROADCASTD AX, Z31")
	for i := range s {
		emit("VMOVDQU32 %d(DI), Z%d", 64*i, i)
	}
	emit("TESTQ CX, CX")
	emit("JZ done")
	label("loop")
	for i := range s {
		emit("VPANDD %d(SI), Z31, Z%d", 64*i, 16+i)
	}
	for i := range s {
		emit("VPMAXUD Z%d, Z%d, Z%d", 16+i, i, i)
	}
	emit("ADDQ DX, SI")
	emit("DECQ CX")
	emit("JNZ loop")
	label("done")
	for i := range s {
		emit("VMOVDQU32 Z%d, %d(DI)", i, 64*i)
	}
	emit("VZEROUPPER")
	emit("RET\n")
}

// genScans emits both scans for 1, 2, 4 and 8 vectors of columns.
func genScans() {
	for _, s := range []int{1, 2, 4, 8} {
		genRange(s)
		genMaxAbsBits(s)
	}
}
