package main

import "fmt"

// exp2Coefs approximate 2^f on [-1/2, 1/2] (degree 6, the constant term
// exactly 1, each coefficient rounded to float32 in turn and the rest
// refitted): relative error below 3.0e-9 in exact arithmetic, 0.05 of a
// float32 ulp.
var exp2Coefs = []float32{1, 0x1.62e43p-1, 0x1.ebfbdcp-3, 0x1.c6af7cp-5, 0x1.3b2de0p-7, 0x1.5f0830p-10, 0x1.416b5ep-13}

// genExp2All emits exp2ShiftSum's constants and its AVX2 and AVX-512
// forms.
func genExp2All() {
	genExp2Data()
	genExp2(avx2)
	genExp2(avx512)
}

// genExp2Data emits exp2ShiftSum's constants.
func genExp2Data() {
	for i, c := range exp2Coefs {
		data32(fmt.Sprintf("x2c%d", i), c)
	}
	// AVX2: arguments are clamped below at -150 (every result under
	// 2^-149 rounds to 0) so that both exponent factors stay in range.
	data32("x2min", -150)
	data32("x2kfloor", -126)
}

// genExp2 emits exp2ShiftSumF32<isa>(x *float32, n int, scale, shift
// float32) float32: x_j = 2^(scale*x_j - shift) for every j, and their sum.
// The argument y is rounded as the Go expression float32(scale*x_j) -
// shift is; then k = round(y), f = y - k exactly (|f| <= 1/2; on AVX-512
// f = y - round(y) first, by VREDUCEPS, then k = y - f), 2^f from
// exp2Coefs by Horner's rule, times 2^k. Base 2 saves the natural
// exponential's Cody-Waite reduction (a multiplication by log2 e and two
// FMAs) and a degree of the polynomial: 14 vector operations per vector
// on AVX-512 against expShiftSum's 19. The caller folds log2 e into scale
// and shift. As expShiftSum does, AVX-512 flushes results below 2^-126 to
// zero (lanes with k < -126), and a NaN stays NaN. Arguments are meant to
// be at most 0 (the caller subtracts the row max); up to 127 they are
// still right, and +Inf gives NaN.
func genExp2(is isa) {
	dt := f32
	name := "exp2ShiftSumF32" + is.name
	f := sig(name, ps("x", "*float32", "n", "int", "scale", "float32", "shift", "float32"), ps("ret", "float32"))
	text(f)
	R := func(n int) string { return fmt.Sprintf("%s%d", is.reg, n) }
	u := 2
	if is == avx512 {
		u = 4
	}
	// Registers: y, k, q of vector i at i, u+i, 2u+i; the running sums at
	// 3u+i; then scale, shift, the AVX2 clamp and tail mask.
	yr := func(i int) string { return R(i) }
	kr := func(i int) string { return R(u + i) }
	qr := func(i int) string { return R(2*u + i) }
	sum := func(i int) string { return R(3*u + i) }
	scale, shift, cmin, mask := R(4*u), R(4*u+1), R(4*u+2), R(4*u+3)
	emit("MOVQ %s, DI", f.fp("x"))
	emit("MOVQ %s, CX", f.fp("n"))
	emit("VBROADCASTSS %s, %s", f.fp("scale"), scale)
	emit("VBROADCASTSS %s, %s", f.fp("shift"), shift)
	for i := range u {
		if is == avx2 {
			emit("VXORPS %[1]s, %[1]s, %[1]s", sum(i))
		} else {
			emit("VPXORD %[1]s, %[1]s, %[1]s", sum(i))
		}
	}
	// On AVX-512 the constants live in the upper registers.
	c := func(n string) string { return "x2" + n + "<>(SB)" }
	if is == avx512 {
		c = exp2Consts()
	} else {
		emit("VMOVUPS x2min<>(SB), %s", cmin)
	}
	body := func(ys, ks, qs []string) { exp2Body(is, ys, ks, qs, c, cmin) }
	expLoop(is, dt, u, scale, shift, yr, kr, qr, sum, body)
	label("tail")
	emit("TESTQ CX, CX")
	emit("JZ reduce")
	y0, q0 := yr(0), qr(0)
	if is == avx2 {
		emit("LEAQ maskTbl<>+32(SB), AX")
		emit("SHLQ $2, CX")
		emit("SUBQ CX, AX")
		emit("VMOVDQU (AX), %s", mask)
		emit("VMASKMOVPS (DI), %s, %s", mask, y0)
	} else {
		emit("LEAQ maskK<>(SB), AX")
		emit("KMOVW (AX)(CX*2), K1")
		emit("VMOVUPS.Z (DI), K1, %s", y0)
	}
	emit("VMULPS %s, %s, %s", scale, y0, y0)
	emit("VSUBPS %s, %s, %s", shift, y0, y0)
	body([]string{y0}, []string{kr(0)}, []string{q0})
	if is == avx2 {
		emit("VANDPS %s, %s, %s", mask, q0, q0)
		emit("VMASKMOVPS %s, %s, (DI)", q0, mask)
		emit("VADDPS %s, %s, %s", q0, sum(0), sum(0))
	} else {
		emit("VMOVUPS %s, K1, (DI)", q0)
		emit("VADDPS %s, %s, K1, %s", q0, sum(0), sum(0))
	}
	label("reduce")
	for i := 1; i < u; i++ {
		emit("VADDPS %s, %s, %s", sum(i), sum(0), sum(0))
	}
	hreduce("ADD", dt, 3*u, is == avx512, f.fp("ret"))
	emit("VZEROUPPER")
	emit("RET\n")
}

// exp2Body emits 2^y of the vectors ys (as genExp2 describes) into qs,
// using ks and ys as temporaries; c names a constant (a register on
// AVX-512), cmin is the AVX2 clamp's register.
func exp2Body(is isa, ys, ks, qs []string, c func(string) string, cmin string) {
	each := eachVector(ys, ks, qs)
	if is == avx512 {
		// VREDUCEPS (AVX512DQ) gives f = y - round(y), then k = y - f,
		// both exact: the same values, bit for bit, as VRNDSCALEPS's k and
		// f = y - k, in as many instructions, but the float32 forward's
		// loop at d = 64 ran about 1% faster with it on the Xeon it was
		// measured on (TestLoopRates, four runs of each build in turn:
		// 195-198 against 191-195 GFLOP/s per core; d = 128 unchanged).
		each(func(y, k, q string) { emit("VREDUCEPS $0, %s, %s", y, k) })
		each(func(y, k, q string) { emit("VSUBPS %s, %s, %s", k, y, y) })
		exp2Scaled(is, ks, ys, qs, c)
		return
	}
	each(func(y, k, q string) { emit("VMAXPS %s, %s, %s", y, cmin, y) }) // a NaN stays NaN
	each(func(y, k, q string) { emit("VROUNDPS $0, %s, %s", y, k) })
	each(func(y, k, q string) { emit("VSUBPS %s, %s, %s", k, y, y) }) // f = y - k, exact
	exp2Scaled(is, ys, ks, qs, c)
}

// eachVector returns a function that calls f on the registers of each
// vector i: ys[i], ks[i] and qs[i].
func eachVector(ys, ks, qs []string) func(f func(y, k, q string)) {
	return func(f func(y, k, q string)) {
		for i := range ys {
			f(ys[i], ks[i], qs[i])
		}
	}
}

// exp2Scaled emits 2^f 2^k into qs for reduced arguments f in ys and
// integers k in ks (rounded by the caller, as exp2Body rounds them),
// using both as temporaries.
func exp2Scaled(is isa, ys, ks, qs []string, c func(string) string) {
	deg := len(exp2Coefs) - 1
	each := eachVector(ys, ks, qs)
	each(func(y, k, q string) {
		if is == avx512 {
			emit("VMOVAPS %s, %s", c(fmt.Sprintf("c%d", deg)), q)
		} else {
			emit("VMOVUPS %s, %s", c(fmt.Sprintf("c%d", deg)), q)
		}
	})
	for i := deg - 1; i >= 0; i-- {
		each(func(y, k, q string) { emit("VFMADD213PS %s, %s, %s", c(fmt.Sprintf("c%d", i)), y, q) })
	}
	if is == avx512 {
		for i := range ks {
			emit("VCMPPS $5, %s, %s, K%d", c("kfloor"), ks[i], 2+i)
		}
		for i := range ks {
			emit("VSCALEFPS.Z %s, %s, K%d, %s", ks[i], qs[i], 2+i, qs[i])
		}
		return
	}
	// AVX2: 2^k = 2^k1 2^k2 with k1 = floor(k/2), as expShiftSum does,
	// so that results down in the subnormal range round once.
	each(func(y, k, q string) { emit("VCVTPS2DQ %s, %s", k, k) })
	each(func(y, k, q string) { emit("VPSRAD $1, %s, %s", k, y) })
	each(func(y, k, q string) { emit("VPSUBD %s, %s, %s", y, k, k) })
	each(func(y, k, q string) { emit("VPADDD e32bias<>(SB), %s, %s", y, y) })
	each(func(y, k, q string) { emit("VPADDD e32bias<>(SB), %s, %s", k, k) })
	each(func(y, k, q string) { emit("VPSLLD $23, %s, %s", y, y) })
	each(func(y, k, q string) { emit("VPSLLD $23, %s, %s", k, k) })
	each(func(y, k, q string) { emit("VMULPS %s, %s, %s", y, q, q) })
	each(func(y, k, q string) { emit("VMULPS %s, %s, %s", k, q, q) })
}

// expLoop emits the main loops of the exponential-sum kernels (genExp,
// genExp2, genExp2Rows) over CX elements at DI: u vectors at a time, then
// one at a time, each y = scale*x - shift (two roundings, no FMA), body
// from y (in xr's registers, with kr's as temporaries) into qr's
// registers, stored back over x and added to the running sums; it jumps
// to the label tail when less than a vector is left.
func expLoop(is isa, dt dtype, u int, scale, shift string, xr, kr, qr, sum func(int) string, body func(xs, ks, qs []string)) {
	w, vb, sf := is.vbytes/dt.size, is.vbytes, dt.sfx
	block := func(v int) {
		var xs, ks, qs []string
		for i := range v {
			emit("VMUL%s %d(DI), %s, %s", sf, i*vb, scale, xr(i))
			xs, ks, qs = append(xs, xr(i)), append(ks, kr(i)), append(qs, qr(i))
		}
		for i := range v {
			emit("VSUB%s %s, %s, %s", sf, shift, xr(i), xr(i))
		}
		body(xs, ks, qs)
		for i := range v {
			emit("VMOVU%s %s, %d(DI)", sf, qr(i), i*vb)
			emit("VADD%s %s, %s, %s", sf, qr(i), sum(i), sum(i))
		}
		emit("ADDQ $%d, DI", v*vb)
		emit("SUBQ $%d, CX", v*w)
	}
	label("loopu")
	emit("CMPQ CX, $%d", u*w)
	emit("JLT loop1")
	block(u)
	emit("JMP loopu")
	label("loop1")
	emit("CMPQ CX, $%d", w)
	emit("JLT tail")
	block(1)
	emit("JMP loop1")
}

// exp2Consts loads exp2Body's constants into Z31 and down (AVX-512) and
// returns the register of each.
func exp2Consts() func(string) string {
	names := []string{"kfloor"}
	for i := range exp2Coefs {
		names = append(names, fmt.Sprintf("c%d", i))
	}
	regs := map[string]string{}
	for i, n := range names {
		regs[n] = fmt.Sprintf("Z%d", 31-i)
		emit("VMOVUPS x2%s<>(SB), %s", n, regs[n])
	}
	return func(n string) string { return regs[n] }
}
