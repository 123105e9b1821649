package main

import "fmt"

// scanOps are a dtype's instructions for the column scans: the float
// load, min and max, and the integer element width of the max-abs bits.
type scanOps struct {
	dt               dtype
	mov, vmin, vmax  string
	bits             string // the bits' Go element type, uint32 or uint64
	movBits, and     string
	maxu, bcast, one string // VPMAXU<w>, VPBROADCAST<w>, the <w> MOV of the mask
	signMask         uint64
}

var (
	scanF32 = scanOps{f32, "VMOVUPS", "VMINPS", "VMAXPS", "uint32", "VMOVDQU32", "VPANDD", "VPMAXUD", "VPBROADCASTD", "MOVL", 1<<31 - 1}
	scanF64 = scanOps{f64, "VMOVUPD", "VMINPD", "VMAXPD", "uint64", "VMOVDQU64", "VPANDQ", "VPMAXUQ", "VPBROADCASTQ", "MOVQ", 1<<63 - 1}
)

// Column scans of a row-major matrix (rows of ld values of the dtype), for
// the certified calls' statistics of keys and values: genRange emits
// range<F32|F64>AVX512x<s>(x *T, rows, ld int, lo, hi *T), which widens
// lo[c] and hi[c] (c < s vectors) to hold x[r*ld + c] for every row r;
// genMaxAbsBits emits maxAbsBits<F32|F64>AVX512x<s>(x *T, rows, ld int,
// m *U), which raises m[c] to the bits of |x[r*ld + c]| (the sign cleared;
// their unsigned order is that of the magnitudes, a NaN above Inf). s
// vectors of columns (16 float32 or 8 float64 each) are held in registers
// across the rows. VMIN and VMAX return their second source when either is
// NaN (or both are zeros): the running value, so NaN keys are ignored, and
// -0 against +0 kept, exactly as the Go loop's comparisons do.
func genRange(o scanOps, s int) {
	p := "*" + o.dt.gotyp
	f := sig(fmt.Sprintf("range%sAVX512x%d", o.dt.name, s), ps("x", p, "rows", "int", "ld", "int", "lo", p, "hi", p), nil)
	text(f)
	f.load("x", "SI", "rows", "CX", "ld", fmt.Sprintf("DX<<%d", o.dt.shift), "lo", "DI", "hi", "R8")
	for i := range s {
		emit("%s %d(DI), Z%d", o.mov, 64*i, i)
		emit("%s %d(R8), Z%d", o.mov, 64*i, 8+i)
	}
	emit("TESTQ CX, CX")
	emit("JZ done")
	label("loop")
	for i := range s {
		emit("%s %d(SI), Z%d", o.mov, 64*i, 16+i)
	}
	for i := range s {
		emit("%s Z%d, Z%d, Z%d", o.vmin, i, 16+i, i)
		emit("%s Z%d, Z%d, Z%d", o.vmax, 8+i, 16+i, 8+i)
	}
	emit("ADDQ DX, SI")
	emit("DECQ CX")
	emit("JNZ loop")
	label("done")
	for i := range s {
		emit("%s Z%d, %d(DI)", o.mov, i, 64*i)
		emit("%s Z%d, %d(R8)", o.mov, 8+i, 64*i)
	}
	emit("VZEROUPPER")
	emit("RET\n")
}

func genMaxAbsBits(o scanOps, s int) {
	f := sig(fmt.Sprintf("maxAbsBits%sAVX512x%d", o.dt.name, s), ps("x", "*"+o.dt.gotyp, "rows", "int", "ld", "int", "m", "*"+o.bits), nil)
	text(f)
	f.load("x", "SI", "rows", "CX", "ld", fmt.Sprintf("DX<<%d", o.dt.shift), "m", "DI")
	emit("%s $0x%x, AX", o.one, o.signMask)
	emit("%s AX, Z31", o.bcast)
	for i := range s {
		emit("%s %d(DI), Z%d", o.movBits, 64*i, i)
	}
	emit("TESTQ CX, CX")
	emit("JZ done")
	label("loop")
	for i := range s {
		emit("%s %d(SI), Z31, Z%d", o.and, 64*i, 16+i)
	}
	for i := range s {
		emit("%s Z%d, Z%d, Z%d", o.maxu, 16+i, i, i)
	}
	emit("ADDQ DX, SI")
	emit("DECQ CX")
	emit("JNZ loop")
	label("done")
	for i := range s {
		emit("%s Z%d, %d(DI)", o.movBits, i, 64*i)
	}
	emit("VZEROUPPER")
	emit("RET\n")
}

// genMaxAbsBits16 emits maxAbsBits16AVX512x<s>(x *uint16, rows, ld int,
// m, least *uint16), the scan of 16-bit values (AVX512BW): m[c] (c < 32 s)
// is raised to x[r*ld + c] & 0x7fff, the magnitude's bits, and each of
// the 32 lanes of least lowered to those bits minus 1 (wrapping: a zero
// gives 0xffff) over all of the block's columns, so that the least over
// its lanes is the smallest nonzero magnitude's bits minus 1.
func genMaxAbsBits16(s int) {
	f := sig(fmt.Sprintf("maxAbsBits16AVX512x%d", s), ps("x", "*uint16", "rows", "int", "ld", "int", "m", "*uint16", "least", "*uint16"), nil)
	text(f)
	f.load("x", "SI", "rows", "CX", "ld", "DX<<1", "m", "DI", "least", "R8")
	emit("MOVL $0x7fff, AX")
	emit("VPBROADCASTW AX, Z31")
	emit("MOVL $1, AX")
	emit("VPBROADCASTW AX, Z30")
	for i := range s {
		emit("VMOVDQU16 %d(DI), Z%d", 64*i, i)
	}
	emit("VMOVDQU16 (R8), Z29")
	emit("TESTQ CX, CX")
	emit("JZ done")
	label("loop")
	for i := range s {
		emit("VPANDD %d(SI), Z31, Z%d", 64*i, 16+i)
	}
	for i := range s {
		emit("VPMAXUW Z%d, Z%d, Z%d", 16+i, i, i)
	}
	for i := range s {
		emit("VPSUBW Z30, Z%d, Z%d", 16+i, 16+i)
	}
	for i := range s {
		emit("VPMINUW Z%d, Z29, Z29", 16+i)
	}
	emit("ADDQ DX, SI")
	emit("DECQ CX")
	emit("JNZ loop")
	label("done")
	for i := range s {
		emit("VMOVDQU16 Z%d, %d(DI)", i, 64*i)
	}
	emit("VMOVDQU16 Z29, (R8)")
	emit("VZEROUPPER")
	emit("RET\n")
}

// genScans emits both scans of float32 and of float64, and the 16-bit
// max-abs scan, for 1, 2, 4 and 8 vectors of columns.
func genScans() {
	for _, o := range []scanOps{scanF32, scanF64} {
		for _, s := range []int{1, 2, 4, 8} {
			genRange(o, s)
			genMaxAbsBits(o, s)
		}
	}
	for _, s := range []int{1, 2, 4, 8} {
		genMaxAbsBits16(s)
	}
}
