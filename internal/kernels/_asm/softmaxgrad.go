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
		data32("sgfmin", -1) // AVX2's clamp of the reduced argument
		genSoftmaxGradF32(avx2)
		genSoftmaxGradF32(avx512)
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

// genSoftmaxGradF32 emits softmaxGradRowsF32<isa>(s, ds *float32, ld,
// rows, cols int, chi, clo float32, lse, delta *float64), rows and cols at
// least 1 (on AVX2 cols a multiple of 8): for each row i < rows of s and
// ds (row stride ld elements) and each j < cols,
//
//	P = 2^(c x - L), c = scale log2 e = chi + clo, L = lse[i] log2 e,
//	s = P,  ds = (ds - float32(delta[i])) P,
//
// all in float32 but for L, which is formed per row in float64 and split
// into float32 L_hi + L_lo. The reduced argument f = t - k is formed
// without rounding t itself, so it is exact to within about 2^-24 (and
// terms of 2^-48 |L|) over a range of t that depends on the sign of L:
//
//   - L >= 0 (the usual case): t0 = c_hi x - L_hi rounded (one FMA), k =
//     round(t0), m = L_hi + k, f = c_hi x - m (one FMA, rounded once as
//     |f| <= 1/2) plus the remainder c_lo x - L_lo. m is exact while it
//     stays above -2^(e+1), 2^e <= L_hi < 2^(e+1): for t down to about
//     -2L; beyond, its rounding costs no more than rounding t would.
//   - L < 0: p = c_hi x rounded and its error e = c_hi x - p recovered by
//     an FMA, y = p - L_hi (exact by Sterbenz while p is within a factor 2
//     of L_hi: t from L to 0), k = round(y), f = y - k plus e - L_lo +
//     c_lo x. (m = L_hi + k would lose |L|'s low bits once |k| grows.)
//
// The remainder moves f at most slightly past [-1/2, 1/2] (the caller
// keeps |lse| below 2^18: see softmaxGradMaxLSE); arguments t > 1/2 (P >
// 1.4, which the row's own log-sum-exp never gives) are computed but may
// lose accuracy. On AVX-512 a vector of 16 costs 22 (L >= 0) or 23
// instructions with its loads and stores (the widening to float64 and the
// base-e reduction of the former kernel cost 29), and a last partial
// vector of a row is masked; AVX2 clamps t0 at -150 and f at -1 so that
// results below 2^-150 still round to 0. The row loop saves the per-row
// calls.
func genSoftmaxGradF32(is isa) {
	f := sig("softmaxGradRowsF32"+is.name, ps("s", "*float32", "ds", "*float32", "ld", "int", "rows", "int", "cols", "int",
		"chi", "float32", "clo", "float32", "lse", "*float64", "delta", "*float64"), nil)
	text(f)
	R := func(n int) string { return fmt.Sprintf("%s%d", is.reg, n) }
	u, vb, w := 2, is.vbytes, is.vbytes/4 // vectors at once, bytes and lanes per vector
	if is == avx512 {
		u = 4
	}
	// Vector i: y in R(i), k (then dP) in R(u+i), the remainder and then
	// q (P) in R(2u+i); c_hi, c_lo, the row's L_hi, L_lo and delta, the
	// AVX-512 tail's x or the AVX2 clamp of t0, the AVX2 clamp of f; on
	// AVX-512 exp2Body's constants from Z31 down.
	yr := func(i int) string { return R(i) }
	kr := func(i int) string { return R(u + i) }
	qr := func(i int) string { return R(2*u + i) }
	chi, clo, lhi, llo, delta, xt, fmin := R(3*u), R(3*u+1), R(3*u+2), R(3*u+3), R(3*u+4), R(3*u+5), R(3*u+6)
	f.load("s", "BX", "ds", "DX", "ld", "R8<<2", "rows", "R9", "cols", "R12", "lse", "R10", "delta", "R11")
	emit("VBROADCASTSS %s, %s", f.fp("chi"), chi)
	emit("VBROADCASTSS %s, %s", f.fp("clo"), clo)
	c := func(n string) string { return "x2" + n + "<>(SB)" }
	if is == avx512 {
		c = exp2Consts()
		// K1: the lanes of a row's last partial vector.
		emit("MOVQ R12, AX")
		emit("ANDQ $15, AX")
		emit("LEAQ maskK<>(SB), R13")
		emit("KMOVW (R13)(AX*2), K1")
	} else {
		emit("VMOVUPS x2min<>(SB), %s", xt)
		emit("VMOVUPS sgfmin<>(SB), %s", fmin)
	}
	each := func(v int, f func(i int)) {
		for i := range v {
			f(i)
		}
	}
	// argPos and argNeg leave f in ys and k in ks, from x at src(i).
	argPos := func(v int, src func(int) string) {
		each(v, func(i int) { emit("VMOVAPS %s, %s", lhi, yr(i)) })
		each(v, func(i int) { emit("VFMSUB231PS %s, %s, %s", src(i), chi, yr(i)) }) // t0 = c_hi x - L_hi
		if is == avx2 {
			each(v, func(i int) { emit("VMAXPS %s, %s, %s", yr(i), xt, yr(i)) })
			each(v, func(i int) { emit("VROUNDPS $0, %s, %s", yr(i), kr(i)) })
		} else {
			each(v, func(i int) { emit("VRNDSCALEPS $0, %s, %s", yr(i), kr(i)) })
		}
		each(v, func(i int) { emit("VADDPS %s, %s, %s", lhi, kr(i), yr(i)) })       // m = L_hi + k
		each(v, func(i int) { emit("VFMSUB231PS %s, %s, %s", src(i), chi, yr(i)) }) // c_hi x - m
		each(v, func(i int) { emit("VMOVAPS %s, %s", llo, qr(i)) })
		each(v, func(i int) { emit("VFMSUB231PS %s, %s, %s", src(i), clo, qr(i)) }) // c_lo x - L_lo
		each(v, func(i int) { emit("VADDPS %s, %s, %s", qr(i), yr(i), yr(i)) })
		if is == avx2 {
			each(v, func(i int) { emit("VMAXPS %s, %s, %s", yr(i), fmin, yr(i)) })
		}
	}
	argNeg := func(v int, src func(int) string) {
		each(v, func(i int) { emit("VMULPS %s, %s, %s", src(i), chi, yr(i)) }) // p = c_hi x, rounded
		each(v, func(i int) { emit("VMOVAPS %s, %s", yr(i), qr(i)) })
		each(v, func(i int) { emit("VFMSUB231PS %s, %s, %s", src(i), chi, qr(i)) }) // e = c_hi x - p, exact
		each(v, func(i int) { emit("VSUBPS %s, %s, %s", llo, qr(i), qr(i)) })
		each(v, func(i int) { emit("VFMADD231PS %s, %s, %s", src(i), clo, qr(i)) }) // e - L_lo + c_lo x
		each(v, func(i int) { emit("VSUBPS %s, %s, %s", lhi, yr(i), yr(i)) })       // y = p - L_hi
		if is == avx2 {
			each(v, func(i int) { emit("VMAXPS %s, %s, %s", yr(i), xt, yr(i)) })
			each(v, func(i int) { emit("VROUNDPS $0, %s, %s", yr(i), kr(i)) })
		} else {
			each(v, func(i int) { emit("VRNDSCALEPS $0, %s, %s", yr(i), kr(i)) })
		}
		each(v, func(i int) { emit("VSUBPS %s, %s, %s", kr(i), yr(i), yr(i)) }) // y - k, exact
		each(v, func(i int) { emit("VADDPS %s, %s, %s", qr(i), yr(i), yr(i)) })
		if is == avx2 {
			each(v, func(i int) { emit("VMAXPS %s, %s, %s", yr(i), fmin, yr(i)) })
		}
	}
	body := func(v int, masked, neg bool) {
		src := func(i int) string { return fmt.Sprintf("%d(SI)", vb*i) }
		if masked {
			emit("VMOVUPS.Z (SI), K1, %s", xt)
			src = func(int) string { return xt }
		}
		if neg {
			argNeg(v, src)
		} else {
			argPos(v, src)
		}
		var ys, ks, qs []string
		for i := range v {
			ys, ks, qs = append(ys, yr(i)), append(ks, kr(i)), append(qs, qr(i))
		}
		exp2Scaled(is, ys, ks, qs, c)
		for i := range v {
			if masked {
				emit("VMOVUPS %s, K1, (SI)", qr(i))
				emit("VMOVUPS.Z (DI), K1, %s", kr(i))
			} else {
				emit("VMOVUPS %s, %d(SI)", qr(i), vb*i)
				emit("VMOVUPS %d(DI), %s", vb*i, kr(i))
			}
			emit("VSUBPS %s, %s, %s", delta, kr(i), kr(i))
			emit("VMULPS %s, %s, %s", qr(i), kr(i), kr(i))
			if masked {
				emit("VMOVUPS %s, K1, (DI)", kr(i))
			} else {
				emit("VMOVUPS %s, %d(DI)", kr(i), vb*i)
			}
		}
		if !masked {
			emit("ADDQ $%d, SI", v*vb)
			emit("ADDQ $%d, DI", v*vb)
			emit("SUBQ $%d, CX", v*w)
		}
	}
	loops := func(sfx string, neg bool) {
		label("loopu" + sfx)
		emit("CMPQ CX, $%d", u*w)
		emit("JLT loop1%s", sfx)
		body(u, false, neg)
		emit("JMP loopu%s", sfx)
		label("loop1" + sfx)
		emit("CMPQ CX, $%d", w)
		emit("JLT tail%s", sfx)
		body(1, false, neg)
		emit("JMP loop1%s", sfx)
		label("tail" + sfx)
		if is == avx512 {
			emit("TESTQ CX, CX")
			emit("JZ next")
			body(1, true, neg)
		}
		emit("JMP next")
	}
	label("row")
	// L = lse log2 e in float64, split into float32 L_hi + L_lo (the
	// difference L - L_hi is exact in float64).
	emit("VMOVSD (R10), X0")
	emit("VMULSD e64log2e<>(SB), X0, X0")
	emit("VCVTSD2SS X0, X1, X1")
	emit("VCVTSS2SD X1, X2, X2")
	emit("VSUBSD X2, X0, X0")
	emit("VCVTSD2SS X0, X0, X0")
	emit("VBROADCASTSS X1, %s", lhi)
	emit("VBROADCASTSS X0, %s", llo)
	emit("VCVTSD2SS (R11), X2, X2")
	emit("VBROADCASTSS X2, %s", delta)
	emit("MOVQ BX, SI")
	emit("MOVQ DX, DI")
	emit("MOVQ R12, CX")
	emit("VMOVD X1, AX") // the sign of L_hi picks the reduction
	emit("TESTL AX, AX")
	emit("JS neg")
	loops("", false)
	label("neg")
	loops("n", true)
	label("next")
	emit("ADDQ R8, BX")
	emit("ADDQ R8, DX")
	emit("ADDQ $8, R10")
	emit("ADDQ $8, R11")
	emit("DECQ R9")
	emit("JNZ row")
	emit("VZEROUPPER")
	emit("RET\n")
}
