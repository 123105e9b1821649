package main

import "fmt"

// softmaxGradUnroll is how many 8-lane vectors the backward row kernel
// works on at once. The float64 exponential is a chain of about 20
// dependent FMAs; one chain at a time leaves the FMA units idle most of
// the time, four overlap (and still fit the registers, with two of the
// polynomial's constants read from memory).
const softmaxGradUnroll = 4

// genSoftmaxGrad emits softmaxGrad<dt>AVX512(s, ds *T, n int, scale, lse,
// delta float64) for the backward pass: per element, in float64,
// P = exp(scale*s - lse) (rounded as the Go expression, then the exp of
// expShiftSum), s = P and ds = P*(ds - delta), each rounded to T. The
// exponential is the float64 one of ExpShiftSum64, so the results are
// those of ExpShiftSum64 on the widened row followed by that loop in Go.
// float32 rows go to genSoftmaxGradF32.
func genSoftmaxGrad(dt dtype) {
	if dt == f32 {
		genSoftmaxGradF32()
		return
	}
	name := fmt.Sprintf("softmaxGrad%sAVX512", dt.name)
	f := sig(name, ps("s", "*"+dt.gotyp, "ds", "*"+dt.gotyp, "n", "int", "scale", "float64", "lse", "float64", "delta", "float64"), nil)
	text(f)
	const u = softmaxGradUnroll
	Z := func(n int) string { return fmt.Sprintf("Z%d", n) }
	// Vector i: x (then ds) in Z(i), k in Z(u+i), q (P) in Z(2u+i); then
	// scale, lse, delta, min, max; constants from Z31 down.
	xr := func(i int) string { return Z(i) }
	kr := func(i int) string { return Z(u + i) }
	qr := func(i int) string { return Z(2*u + i) }
	scale, lse, delta, cmin, cmax := Z(3*u), Z(3*u+1), Z(3*u+2), Z(3*u+3), Z(3*u+4)
	f.load("s", "SI", "ds", "DI", "n", "CX")
	emit("VBROADCASTSD %s, %s", f.fp("scale"), scale)
	emit("VBROADCASTSD %s, %s", f.fp("lse"), lse)
	emit("VBROADCASTSD %s, %s", f.fp("delta"), delta)
	emit("VMOVUPD e64min<>(SB), %s", cmin)
	emit("VMOVUPD e64max<>(SB), %s", cmax)
	regs := map[string]string{}
	names := []string{"log2e", "ln2hi", "ln2lo"}
	for i := expDeg64; i >= 0; i-- { // the last coefficients stay in memory
		names = append(names, fmt.Sprintf("c%d", i))
	}
	for i, n := range names {
		if 31-i <= 3*u+4 {
			break
		}
		regs[n] = Z(31 - i)
		emit("VMOVUPD e64%s<>(SB), %s", n, regs[n])
	}
	esz := dt.size
	// body emits v vectors of 8 elements at SI and DI; masked (v = 1)
	// selects the K1 forms.
	body := func(v int, masked bool) {
		mk, kreg := "", ""
		if masked {
			mk, kreg = ".Z", "K1, "
		}
		ld := func(addr, dst string) {
			if dt == f32 {
				emit("VCVTPS2PD%s %s, %s%s", mk, addr, kreg, dst)
			} else {
				emit("VMOVUPD%s %s, %s%s", mk, addr, kreg, dst)
			}
		}
		st := func(src, addr string) {
			if dt == f32 {
				emit("VCVTPD2PS %s, Y%s", src, src[1:])
				emit("VMOVUPS Y%s, %s%s", src[1:], kreg, addr)
			} else {
				emit("VMOVUPD %s, %s%s", src, kreg, addr)
			}
		}
		var xs, ks, qs []string
		for i := range v {
			ld(fmt.Sprintf("%d(SI)", i*8*esz), xr(i))
			xs, ks, qs = append(xs, xr(i)), append(ks, kr(i)), append(qs, qr(i))
		}
		for i := range v {
			emit("VMULPD %s, %s, %s", scale, xr(i), xr(i))
		}
		for i := range v {
			emit("VSUBPD %s, %s, %s", lse, xr(i), xr(i))
		}
		expBody(avx512, f64, xs, ks, qs, cmin, cmax, regs)
		for i := range v {
			ld(fmt.Sprintf("%d(DI)", i*8*esz), xr(i))
			emit("VSUBPD %s, %s, %s", delta, xr(i), xr(i))
			emit("VMULPD %s, %s, %s", qr(i), xr(i), xr(i))
			st(qr(i), fmt.Sprintf("%d(SI)", i*8*esz))
			st(xr(i), fmt.Sprintf("%d(DI)", i*8*esz))
		}
	}
	step := func(v int) {
		emit("ADDQ $%d, SI", v*8*esz)
		emit("ADDQ $%d, DI", v*8*esz)
		emit("SUBQ $%d, CX", v*8)
	}
	label("loopu")
	emit("CMPQ CX, $%d", u*8)
	emit("JLT loop1")
	body(u, false)
	step(u)
	emit("JMP loopu")
	label("loop1")
	emit("CMPQ CX, $8")
	emit("JLT tail")
	body(1, false)
	step(1)
	emit("JMP loop1")
	label("tail")
	emit("TESTQ CX, CX")
	emit("JZ done")
	emit("LEAQ maskK<>(SB), AX")
	emit("KMOVW (AX)(CX*2), K1")
	body(1, true)
	label("done")
	emit("VZEROUPPER")
	emit("RET\n")
}

// genSoftmaxGradF32 emits softmaxGradF32AVX512(s, ds *float32, n int,
// scale, lse, delta float64), n a multiple of 16: the argument
// scale*s - lse is formed in float64 (rounded as the Go expression), so a
// large log-sum-exp loses nothing to the shift, then rounded to float32,
// whose exponential is ExpShiftSum32's (the same polynomial, bit for bit);
// ds = (ds - float32(delta))*P in float32, as FlashAttention forms dS. The
// float32 exponential does twice the lanes of the float64 one per
// instruction with a shorter polynomial.
func genSoftmaxGradF32() {
	f := sig("softmaxGradF32AVX512", ps("s", "*float32", "ds", "*float32", "n", "int", "scale", "float64", "lse", "float64", "delta", "float64"), nil)
	text(f)
	const u = 4 // 16-lane vectors at once, as expShiftSumF32AVX512
	Z := func(n int) string { return fmt.Sprintf("Z%d", n) }
	Y := func(n int) string { return fmt.Sprintf("Y%d", n) }
	// Vector i: x in Z(i), k in Z(u+i), q (P) in Z(2u+i); Z12-Z15
	// temporaries; then scale, lse, delta (float32), min, max; constants
	// from Z31 down.
	const t0 = 3 * u
	scale, lse, delta, cmin, cmax := Z(t0+4), Z(t0+5), Z(t0+6), Z(t0+7), Z(t0+8)
	f.load("s", "SI", "ds", "DI", "n", "CX")
	emit("VBROADCASTSD %s, %s", f.fp("scale"), scale)
	emit("VBROADCASTSD %s, %s", f.fp("lse"), lse)
	emit("VCVTSD2SS %s, X%d, X%d", f.fp("delta"), t0, t0)
	emit("VBROADCASTSS X%d, %s", t0, delta)
	emit("VMOVUPS e32min<>(SB), %s", cmin)
	emit("VMOVUPS e32max<>(SB), %s", cmax)
	regs := map[string]string{}
	names := []string{"log2e", "ln2hi", "ln2lo", "one"}
	for i := 0; i <= 5; i++ {
		names = append(names, fmt.Sprintf("c%d", i))
	}
	for i, n := range names {
		regs[n] = Z(31 - i)
		emit("VMOVUPS e32%s<>(SB), %s", n, regs[n])
	}
	body := func(v int) {
		var xs, ks, qs []string
		for i := range v {
			lo, hi := t0, t0+1
			emit("VCVTPS2PD %d(SI), %s", i*64, Z(lo))
			emit("VCVTPS2PD %d(SI), %s", i*64+32, Z(hi))
			emit("VMULPD %s, %s, %s", scale, Z(lo), Z(lo))
			emit("VMULPD %s, %s, %s", scale, Z(hi), Z(hi))
			emit("VSUBPD %s, %s, %s", lse, Z(lo), Z(lo))
			emit("VSUBPD %s, %s, %s", lse, Z(hi), Z(hi))
			emit("VCVTPD2PS %s, %s", Z(lo), Y(i))
			emit("VCVTPD2PS %s, %s", Z(hi), Y(hi))
			emit("VINSERTF64X4 $1, %s, %s, %s", Y(hi), Z(i), Z(i))
			xs, ks, qs = append(xs, Z(i)), append(ks, Z(u+i)), append(qs, Z(2*u+i))
		}
		expBody(avx512, f32, xs, ks, qs, cmin, cmax, regs)
		for i := range v {
			q := 2*u + i
			emit("VMOVUPS %s, %d(SI)", Z(q), i*64)
			emit("VMOVUPS %d(DI), %s", i*64, Z(t0+2))
			emit("VSUBPS %s, %s, %s", delta, Z(t0+2), Z(t0+2))
			emit("VMULPS %s, %s, %s", Z(q), Z(t0+2), Z(t0+2))
			emit("VMOVUPS %s, %d(DI)", Z(t0+2), i*64)
		}
		emit("ADDQ $%d, SI", v*64)
		emit("ADDQ $%d, DI", v*64)
		emit("SUBQ $%d, CX", v*16)
	}
	label("loopu")
	emit("CMPQ CX, $%d", u*16)
	emit("JLT loop1")
	body(u)
	emit("JMP loopu")
	label("loop1")
	emit("CMPQ CX, $16")
	emit("JLT done")
	body(1)
	emit("JMP loop1")
	label("done")
	emit("VZEROUPPER")
	emit("RET\n")
}
