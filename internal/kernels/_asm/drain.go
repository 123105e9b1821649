package main

import "fmt"

// ---------------------------------------------------------------- drain

// genDrain emits drainScaled<isa>(dst *float32, sum *float64, part
// *float32, n int, scale float64, add int): for i < n, a multiple of two
// vectors of float64,
//
//	dst[i] = float32(scale*(sum[i] + float64(part[i])))          (add == 0)
//	dst[i] = float32(float64(dst[i]) + scale*(sum[i] + part[i]))  (add != 0)
//
// each operation rounded in float64 (no FMA), then sum[i] = part[i] = 0.
// The caller does the tail.
func genDrain(is isa) {
	f := sig("drainScaled"+is.name, ps("dst", "*float32", "sum", "*float64", "part", "*float32", "n", "int",
		"scale", "float64", "add", "int"), nil)
	text(f)
	lanes := is.vbytes / 8 // float64 per vector
	half := "X"            // the register holding a vector's float32
	narrow := "VCVTPD2PSY"
	if is == avx512 {
		half, narrow = "Y", "VCVTPD2PS"
	}
	R := func(n int) string { return fmt.Sprintf("%s%d", is.reg, n) }
	H := func(n int) string { return fmt.Sprintf("%s%d", half, n) }
	f.load("dst", "DI", "sum", "SI", "part", "DX", "n", "CX")
	emit("VBROADCASTSD %s, %s", f.fp("scale"), R(15))
	if is == avx512 {
		emit("VPXORD %[1]s, %[1]s, %[1]s", R(14))
	} else {
		emit("VPXOR %[1]s, %[1]s, %[1]s", R(14))
	}
	emit("MOVQ %s, BX", f.fp("add"))
	emit("TESTQ BX, BX")
	emit("JNZ addloop")
	body := func(add bool) {
		for u := range 2 {
			emit("VCVTPS2PD %d(DX), %s", u*lanes*4, R(u))
			emit("VADDPD %d(SI), %s, %s", u*lanes*8, R(u), R(u))
			emit("VMULPD %s, %s, %s", R(15), R(u), R(u))
			if add {
				emit("VCVTPS2PD %d(DI), %s", u*lanes*4, R(2+u))
				emit("VADDPD %s, %s, %s", R(2+u), R(u), R(u))
			}
			emit("%s %s, %s", narrow, R(u), H(u))
			emit("VMOVUPS %s, %d(DI)", H(u), u*lanes*4)
			emit("VMOVUPD %s, %d(SI)", R(14), u*lanes*8)
			emit("VMOVUPS %s, %d(DX)", H(14), u*lanes*4)
		}
		emit("ADDQ $%d, DI", 2*lanes*4)
		emit("ADDQ $%d, SI", 2*lanes*8)
		emit("ADDQ $%d, DX", 2*lanes*4)
		emit("SUBQ $%d, CX", 2*lanes)
	}
	label("setloop")
	emit("TESTQ CX, CX")
	emit("JZ done")
	body(false)
	emit("JMP setloop")
	label("addloop")
	emit("TESTQ CX, CX")
	emit("JZ done")
	body(true)
	emit("JMP addloop")
	label("done")
	emit("VZEROUPPER")
	emit("RET\n")
}
