// Command asmgen writes fastattn's amd64 assembly kernels and their Go
// declarations:
//
//	zkernels_amd64.s   GEMM microkernels, B-panel transposes, exp, max
//	zkernels_amd64.go  the matching Go declarations and kernel tables
//
// Run it from internal/kernels with `go generate` (see gen.go there), or
// here with `go run . -out ..`.
//
// The GEMM microkernels all compute an mr x (nv*W) block of C from mr rows
// of A (row stride lda) and k rows of B (row stride ldb), where W is the
// vector width in elements: for p in 0..k, acc[i][:] += A[i,p] * B[p,:],
// broadcasting A's entries against B's row segment. The block is either
// added to C (acc != 0) or stored over it (acc == 0). Masked variants load
// and store only the first `tail` lanes of their last vector, so any n can
// be covered without touching memory outside C or B.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/format"
	"log"
	"math"
	"os"
	"path/filepath"
	"strings"
)

type isa struct {
	name   string // AVX2, AVX512
	reg    string // Y, Z
	vbytes int
	nregs  int
}

type dtype struct {
	name  string // F32, F64
	gotyp string
	size  int
	shift int // log2(size)
	sfx   string
	bcast string
}

var (
	avx2   = isa{"AVX2", "Y", 32, 16}
	avx512 = isa{"AVX512", "Z", 64, 32}
	f32    = dtype{"F32", "float32", 4, 2, "PS", "VBROADCASTSS"}
	f64    = dtype{"F64", "float64", 8, 3, "PD", "VBROADCASTSD"}
	// bf16 is bfloat16 products accumulated in float32: a GEMM "element"
	// of A or B is a pair of bfloat16 values along k (4 bytes), multiplied
	// pairwise by VDPBF16PS into float32 lanes of C.
	bf16 = dtype{"BF16", "uint16", 4, 2, "PS", "VPBROADCASTD"}
)

// config is the register block of one (isa, dtype) microkernel family.
type config struct {
	is isa
	dt dtype
	mr int // rows of A per kernel
	nv int // vectors of B per row
	// packed (bfloat16 only): B is the AMX layout of amx.go, panels of 16
	// columns whose rows are 64 bytes apart, and ldb is the stride from
	// one panel to the next, so GemmPackedBF16 runs on VDPBF16PS without
	// repacking where AMX is absent.
	packed bool
}

func (c config) w() int  { return c.is.vbytes / c.dt.size }
func (c config) nr() int { return c.nv * c.w() }

var configs = []config{
	{avx2, f32, 6, 2, false},
	{avx2, f64, 6, 2, false},
	{avx512, f32, 6, 4, false},
	{avx512, f64, 6, 4, false},
	{avx512, bf16, 12, 2, false},
	{avx512, bf16, 12, 2, true},
}

// ---------------------------------------------------------------- signatures

// param is one argument or result of an assembly function.
type param struct{ name, typ string }

// sizes of the Go types the kernels take, for the ABI0 frame layout.
var typeSize = map[string]int{"int": 8, "bool": 1, "float32": 4, "float64": 8, "uint16": 2,
	"*float32": 8, "*float64": 8, "*uint16": 8, "*uint32": 8, "*uint64": 8, "*int32": 8}

// signature is one assembly function: the single source of its Go
// declaration, the comment above its TEXT line, its frame size and the
// FP offsets of its arguments, so these cannot disagree (go vet's asmdecl
// checks the result).
type signature struct {
	name            string
	params, results []param
	off             map[string]int
	size            int
}

// sig lays out the frame as ABI0 does: each argument at a multiple of its
// size, the results starting at the next multiple of 8.
func sig(name string, params, results []param) *signature {
	f := &signature{name: name, params: params, results: results, off: map[string]int{}}
	o := 0
	place := func(ps []param) {
		for _, p := range ps {
			sz := typeSize[p.typ]
			if sz == 0 {
				log.Fatalf("%s: no size for type %s", name, p.typ)
			}
			o = (o + sz - 1) / sz * sz
			f.off[p.name] = o
			o += sz
		}
	}
	place(params)
	o = (o + 7) / 8 * 8
	place(results)
	f.size = o
	return f
}

// ps builds a parameter list from name, type pairs.
func ps(nameType ...string) []param {
	var out []param
	for i := 0; i < len(nameType); i += 2 {
		out = append(out, param{nameType[i], nameType[i+1]})
	}
	return out
}

// fp is the assembler operand of argument or result n.
func (f *signature) fp(n string) string {
	o, ok := f.off[n]
	if !ok {
		log.Fatalf("%s: no argument %s", f.name, n)
	}
	return fmt.Sprintf("%s+%d(FP)", n, o)
}

func (f *signature) goDecl() string {
	list := func(ps []param) string {
		var b bytes.Buffer
		for i, p := range ps {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "%s %s", p.name, p.typ)
		}
		return b.String()
	}
	d := fmt.Sprintf("func %s(%s)", f.name, list(f.params))
	if len(f.results) > 0 {
		d += fmt.Sprintf(" (%s)", list(f.results))
	}
	return d
}

// text starts the assembly of f and writes its Go declaration.
func text(f *signature) {
	fmt.Fprintf(&s, "// %s\n", f.goDecl())
	fmt.Fprintf(&s, "TEXT ·%s(SB), NOSPLIT, $0-%d\n", f.name, f.size)
	fmt.Fprintf(&gs, "//go:noescape\n%s\n\n", f.goDecl())
}

var (
	s  bytes.Buffer // assembly
	gs bytes.Buffer // Go declarations
)

func emit(format string, args ...any) {
	fmt.Fprintf(&s, "\t"+format+"\n", args...)
}

func label(l string) { fmt.Fprintf(&s, "%s:\n", l) }

func main() {
	out := flag.String("out", "..", "directory to write the generated files to")
	flag.Parse()

	fmt.Fprintf(&s, "// Code generated by internal/kernels/_asm; DO NOT EDIT.\n\n")
	fmt.Fprintf(&s, "//go:build amd64 && gc && !purego\n\n#include \"textflag.h\"\n\n")
	fmt.Fprintf(&gs, "// Code generated by internal/kernels/_asm; DO NOT EDIT.\n\n")
	fmt.Fprintf(&gs, "//go:build amd64 && gc && !purego\n\npackage kernels\n\n")

	genData()
	for _, c := range configs {
		genGemmFamily(c)
	}
	genTranspose8x8F32()
	genTranspose4x4F64()
	for _, is := range []isa{avx2, avx512} {
		genExp(is, f32)
		genExp(is, f64)
	}
	genMax(f32)
	genMax(f64)
	genFinite(f32)
	genFinite(f64)
	genMaxAVX512(f32)
	genMaxAVX512(f64)
	genAccumulate()
	for _, is := range []isa{avx2, avx512} {
		genDrain(is) // drain.go
	}
	for _, is := range []isa{avx2, avx512} {
		genWiden(is, "bf16ToF32", "VPMOVZXWD", true)
		genWiden(is, "f16ToF32", "VCVTPH2PS", false)
	}
	genNarrowBF16()
	genPackPairs()
	genPackNT()
	genHalfB() // half_decode.go
	genHalfNT()
	genSoftmaxGrad(f32)
	genSoftmaxGrad(f64)
	genMul()
	genDots() // dots.go
	genMono() // mono.go
	genMonoMoments()
	genPeak("peakFMAF32AVX512", func(i int) { emit("VFMADD231PS Z30, Z31, Z%d", i) })
	genPeak("peakFMAF64AVX512", func(i int) { emit("VFMADD231PD Z30, Z31, Z%d", i) })
	genPeak("peakDPBF16AVX512", func(i int) { vdpbf16ps(i, 30, 31) })
	genAMX()
	genScans()
	genPrefetch()
	genCopyRows()         // tn.go
	genExp2All()          // exp2.go
	genRows()             // rows.go
	genStrips(f32, false) // strips.go
	genStrips(f64, false)
	genStrips(f32, true)
	genTN() // tn.go

	if err := os.WriteFile(filepath.Join(*out, "zkernels_amd64.s"), s.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
	src, err := format.Source(gs.Bytes())
	if err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(*out, "zkernels_amd64.go"), src, 0o644); err != nil {
		log.Fatal(err)
	}
}

// ---------------------------------------------------------------- constants

// data32 and data64 emit a 64-byte constant: the value replicated, so both
// YMM and ZMM code can use it as a memory operand.
func data32(name string, v float32) {
	bits := uint64(math.Float32bits(v))
	for off := 0; off < 64; off += 8 {
		fmt.Fprintf(&s, "DATA %s<>+%d(SB)/8, $0x%016x\n", name, off, bits|bits<<32)
	}
	fmt.Fprintf(&s, "GLOBL %s<>(SB), RODATA|NOPTR, $64\n\n", name)
}

func data64(name string, v float64) {
	for off := 0; off < 64; off += 8 {
		fmt.Fprintf(&s, "DATA %s<>+%d(SB)/8, $0x%016x\n", name, off, math.Float64bits(v))
	}
	fmt.Fprintf(&s, "GLOBL %s<>(SB), RODATA|NOPTR, $64\n\n", name)
}

func dataI32(name string, v uint32) {
	u := uint64(v)
	for off := 0; off < 64; off += 8 {
		fmt.Fprintf(&s, "DATA %s<>+%d(SB)/8, $0x%016x\n", name, off, u|u<<32)
	}
	fmt.Fprintf(&s, "GLOBL %s<>(SB), RODATA|NOPTR, $64\n\n", name)
}

// expCoefs64 are the float64 exponential's polynomial for e^r on
// [-ln2/2, ln2/2], c0 first: a degree-11 Chebyshev fit (mpmath's chebyfit
// at 50 digits on the interval widened by 1e-4, coefficients rounded to
// float64), whose own relative error is 0.15 units of 2^-53 where the
// Taylor polynomial of degree 11 is off by 57; it replaced the degree-13
// Taylor polynomial, two FMAs fewer per vector.
var expCoefs64 = [...]float64{
	1.0, 1.0, 0.5000000000000019, 0.1666666666666668, 0.04166666666648795,
	0.008333333333319589, 0.0013888888952352863, 0.00019841269890076403,
	2.4801485441561313e-05, 2.755724088722987e-06, 2.763265472252779e-07,
	2.5110049204818658e-08,
}

// expDeg64 is the degree of expCoefs64.
const expDeg64 = len(expCoefs64) - 1

func genData() {
	// maskTbl: 32 bytes of ones then 32 of zeros; loading 32 bytes at
	// maskTbl+32-t*size gives a YMM mask of t leading lanes.
	for off := 0; off < 64; off += 8 {
		v := uint64(0)
		if off < 32 {
			v = math.MaxUint64
		}
		fmt.Fprintf(&s, "DATA maskTbl<>+%d(SB)/8, $0x%016x\n", off, v)
	}
	fmt.Fprintf(&s, "GLOBL maskTbl<>(SB), RODATA|NOPTR, $64\n\n")
	// maskK: uint16 (1<<t)-1 for t = 0..16, for KMOVW.
	for t := 0; t <= 16; t++ {
		fmt.Fprintf(&s, "DATA maskK<>+%d(SB)/2, $0x%04x\n", 2*t, (1<<t)-1)
	}
	fmt.Fprintf(&s, "GLOBL maskK<>(SB), RODATA|NOPTR, $34\n\n")
	// iota32: int32 0..15, for gather offsets.
	for t := range 16 {
		fmt.Fprintf(&s, "DATA iota32<>+%d(SB)/4, $%d\n", 4*t, t)
	}
	fmt.Fprintf(&s, "GLOBL iota32<>(SB), RODATA|NOPTR, $64\n\n")

	// float32 exp: x = k ln2 + r, |r| <= ln2/2, e^r by Cephes' expf
	// polynomial, 2^k through the exponent bits.
	data32("e32min", -110)
	data32("e32max", 89)
	data32("e32log2e", float32(math.Log2E))
	ln2hi := float32(math.Ln2)
	data32("e32ln2hi", ln2hi)
	data32("e32ln2lo", float32(math.Ln2-float64(ln2hi)))
	for i, c := range []float32{5.0000001201e-1, 1.6666665459e-1, 4.1665795894e-2, 8.3334519073e-3, 1.3981999507e-3, 1.9875691500e-4} {
		data32(fmt.Sprintf("e32c%d", i), c)
	}
	data32("e32one", 1)
	dataI32("e32bias", 127)
	// Flushing results below the normal range to zero (see expBody).
	data32("e32kfloor", -126)

	data64("e64min", -750)
	data64("e64max", 710)
	data64("e64log2e", math.Log2E)
	data64("e64ln2hi", math.Ln2)
	data64("e64ln2lo", 2.319046813846299558e-17)
	for n, c := range expCoefs64 {
		data64(fmt.Sprintf("e64c%d", n), c)
	}
	// Flushing results below the normal range to zero (see expBody).
	data64("e64kfloor", -1022)
	data64("e64half", 0.5)
	data64("e64magic", 1<<52+1023)
}

// ---------------------------------------------------------------- GEMM

// rowAddr addresses row i (of at most 15) at byte offset off, given bases
// b[0..2] for rows 0, 5, 10, the stride register st and 3*stride st3.
func rowAddr(i, off int, b [3]string, st, st3 string) string {
	base := b[i/5]
	switch i % 5 {
	case 0:
		return fmt.Sprintf("%d(%s)", off, base)
	case 1:
		return fmt.Sprintf("%d(%s)(%s*1)", off, base, st)
	case 2:
		return fmt.Sprintf("%d(%s)(%s*2)", off, base, st)
	case 3:
		return fmt.Sprintf("%d(%s)(%s*1)", off, base, st3)
	default:
		return fmt.Sprintf("%d(%s)(%s*4)", off, base, st)
	}
}

func kernName(c config, mr, nv int, masked bool) string {
	name := "gemm" + c.dt.name
	if c.packed {
		name = "gemmPacked" + c.dt.name
	}
	n := fmt.Sprintf("%s%s_%dx%d", name, c.is.name, mr, nv)
	if masked {
		n += "m"
	}
	return n
}

func genGemmFamily(c config) {
	if c.packed && (c.dt != bf16 || c.nv > 2) {
		log.Fatalf("%s: the packed layout is for bfloat16, at most two panels", kernName(c, c.mr, c.nv, false))
	}
	for mr := 1; mr <= c.mr; mr++ {
		genGemm(c, mr, c.nv, false)
	}
	for nv := 1; nv <= c.nv; nv++ {
		for mr := 1; mr <= c.mr; mr++ {
			genGemm(c, mr, nv, true)
		}
	}
	// Go side: declarations and the table.
	tb, trans := 8, "transpose8x8F32"
	if c.dt.size == 8 {
		tb, trans = 4, "transpose4x4F64"
	}
	typ, kern := fmt.Sprintf("gemmKernels[%s]", c.dt.gotyp), fmt.Sprintf("kern[%s]", c.dt.gotyp)
	fields := fmt.Sprintf("mr: %d, nr: %d, w: %d, tb: %d, trans: %s", c.mr, c.nr(), c.w(), tb, trans)
	if c.dt == bf16 {
		typ, kern = "bf16Kernels", "kernBF16"
		fields = fmt.Sprintf("mr: %d, nr: %d, w: %d", c.mr, c.nr(), c.w())
	}
	fmt.Fprintf(&gs, "var %s = %s{\n\t%s,\n", strings.Split(kernName(c, 1, 1, false), "_")[0], typ, fields)
	fmt.Fprintf(&gs, "\tfull: []%s{", kern)
	for mr := 1; mr <= c.mr; mr++ {
		fmt.Fprintf(&gs, "%s, ", kernName(c, mr, c.nv, false))
	}
	fmt.Fprintf(&gs, "},\n\tpart: [][]%s{\n", kern)
	for nv := 1; nv <= c.nv; nv++ {
		fmt.Fprintf(&gs, "\t\t{")
		for mr := 1; mr <= c.mr; mr++ {
			fmt.Fprintf(&gs, "%s, ", kernName(c, mr, nv, true))
		}
		fmt.Fprintf(&gs, "},\n")
	}
	fmt.Fprintf(&gs, "\t},\n}\n\n")
}

// gemmSig is the signature every GEMM microkernel shares (kern in
// kernels_amd64.go).
func gemmSig(name string, dt dtype) *signature {
	p := "*" + dt.gotyp
	if dt == bf16 {
		// k counts pairs; lda is in bfloat16 elements; b is a panel of
		// pairs with ldb pairs per row (kernBF16 in kernels_amd64.go).
		return sig(name, ps("k", "int", "a", "*uint16", "lda", "int", "b", "*uint32", "ldb", "int", "c", "*float32", "ldc", "int", "tail", "int", "acc", "int"), nil)
	}
	return sig(name, ps("k", "int", "a", p, "lda", "int", "b", p, "ldb", "int", "c", p, "ldc", "int", "tail", "int", "acc", "int"), nil)
}

// evex512 encodes the register form of a 512-bit EVEX instruction
// "op dst, src1, src2" (Intel order; src1 in EVEX.vvvv, src2 in ModRM.rm)
// as BYTE directives, for the AVX512_BF16 instructions Go's assembler does
// not know. pp: 1 = 66, 2 = F3, 3 = F2; map 2 = 0F38; W0.
func evex512(mnemonic string, pp int, op byte, dst, src1, src2 int) {
	inv := func(x, bit int) int { return ^(x >> bit) & 1 }
	b := []byte{
		0x62,
		byte(inv(dst, 3)<<7 | inv(src2, 4)<<6 | inv(src2, 3)<<5 | inv(dst, 4)<<4 | 2),
		byte((^src1&15)<<3 | 1<<2 | pp),
		byte(2<<5 | inv(src1, 4)<<3),
		op,
		byte(3<<6 | (dst&7)<<3 | src2&7),
	}
	line := fmt.Sprintf("// %s %d, %d, %d (register numbers, Intel order: dst, src1, src2)\n\t", mnemonic, dst, src1, src2)
	for i, c := range b {
		if i > 0 {
			line += "; "
		}
		line += fmt.Sprintf("BYTE $0x%02x", c)
	}
	emit("%s", line)
}

// vdpbf16ps adds to each float32 lane of Z<acc> the two products of the
// bfloat16 pairs in the same lane of Z<x> and Z<y>.
func vdpbf16ps(acc, x, y int) { evex512("VDPBF16PS", 2, 0x52, acc, x, y) }

func genGemm(c config, mr, nv int, masked bool) {
	is, dt := c.is, c.dt
	// Strides: A's in elements (bfloat16: halves of a k step), B's and
	// C's in their own elements; C is float32 for bfloat16.
	aShift, bShift, cdt := dt.shift, dt.shift, dt
	if dt == bf16 {
		aShift, cdt = 1, f32
	}
	R := func(n int) string { return fmt.Sprintf("%s%d", is.reg, n) }
	acc := func(i, v int) string { return R(i*nv + v) }
	breg := func(v int) string { return R(mr*nv + v) }
	bc := R(mr*nv + nv)
	mask := R(is.nregs - 1) // AVX2 only
	if need := mr*nv + nv + 1; need > is.nregs || (masked && is == avx2 && need > is.nregs-1) {
		log.Fatalf("%s: %d registers needed", kernName(c, mr, nv, masked), need)
	}
	f := gemmSig(kernName(c, mr, nv, masked), dt)
	text(f)
	f.load("k", "CX", "a", "SI", "lda", "R8")
	emit("SHLQ $%d, R8", aShift)
	emit("MOVQ %s, DX", f.fp("b"))
	emit("MOVQ %s, R9", f.fp("ldb"))
	emit("SHLQ $%d, R9", bShift)
	emit("LEAQ (R8)(R8*2), R11")
	if mr > 5 {
		emit("LEAQ (R8)(R8*4), AX")
		emit("LEAQ (SI)(AX*1), R12")
		if mr > 10 {
			emit("LEAQ (R12)(AX*1), R13")
		}
	}
	if masked {
		emit("MOVQ %s, BX", f.fp("tail"))
		if is == avx2 {
			emit("LEAQ maskTbl<>+32(SB), AX")
			emit("SHLQ $%d, BX", dt.shift)
			emit("SUBQ BX, AX")
			emit("VMOVDQU (AX), %s", mask)
		} else {
			emit("LEAQ maskK<>(SB), AX")
			emit("KMOVW (AX)(BX*2), K1")
		}
	}
	for i := 0; i < mr; i++ {
		for v := 0; v < nv; v++ {
			if is == avx2 {
				emit("VXORPS %[1]s, %[1]s, %[1]s", acc(i, v))
			} else {
				emit("VPXORD %[1]s, %[1]s, %[1]s", acc(i, v))
			}
		}
	}
	aBases := [3]string{"SI", "R12", "R13"}
	step := func(u int) {
		for v := 0; v < nv; v++ {
			addr := fmt.Sprintf("%d(DX)", v*is.vbytes)
			if c.packed && v > 0 {
				addr = "(DX)(R9*1)" // the next panel
			}
			switch {
			case masked && v == nv-1 && is == avx2:
				emit("VMASKMOV%s %s, %s, %s", dt.sfx, addr, mask, breg(v))
			case masked && v == nv-1:
				emit("VMOVU%s.Z %s, K1, %s", dt.sfx, addr, breg(v))
			default:
				emit("VMOVU%s %s, %s", dt.sfx, addr, breg(v))
			}
		}
		if c.packed {
			emit("ADDQ $%d, DX", is.vbytes)
		} else {
			emit("ADDQ R9, DX")
		}
		for i := 0; i < mr; i++ {
			a := rowAddr(i, u*dt.size, aBases, "R8", "R11")
			if dt == bf16 {
				emit("%s %s, %s", dt.bcast, a, bc)
				for v := 0; v < nv; v++ {
					vdpbf16ps(i*nv+v, mr*nv+nv, mr*nv+v)
				}
				continue
			}
			if nv == 1 && is == avx512 {
				emit("VFMADD231%s.BCST %s, %s, %s", dt.sfx, a, breg(0), acc(i, 0))
				continue
			}
			emit("%s %s, %s", dt.bcast, a, bc)
			for v := 0; v < nv; v++ {
				emit("VFMADD231%s %s, %s, %s", dt.sfx, breg(v), bc, acc(i, v))
			}
		}
	}
	advanceA := func(elems int) {
		emit("ADDQ $%d, SI", elems*dt.size)
		if mr > 5 {
			emit("ADDQ $%d, R12", elems*dt.size)
		}
		if mr > 10 {
			emit("ADDQ $%d, R13", elems*dt.size)
		}
	}
	kLoop(step, advanceA)

	genStore(f, is, dt.sfx, cdt.shift, mr, nv, masked, acc, bc, mask)
	s.WriteString("\n")
}

// genStore writes a GEMM microkernel's epilogue, from label "store": the
// mr x nv accumulator vectors added to C (when the argument acc is not 0)
// or stored over it, C's rows ldc elements of 1<<cShift bytes apart; when
// masked, each row's last vector goes through K1 (AVX-512) or the mask
// register (AVX2). bc is a free vector register.
func genStore(f *signature, is isa, sfx string, cShift, mr, nv int, masked bool, acc func(i, v int) string, bc, mask string) {
	label("store")
	emit("MOVQ %s, DI", f.fp("c"))
	emit("MOVQ %s, R10", f.fp("ldc"))
	emit("SHLQ $%d, R10", cShift)
	emit("LEAQ (R10)(R10*2), R11")
	if mr > 5 {
		emit("LEAQ (R10)(R10*4), AX")
		emit("LEAQ (DI)(AX*1), R12")
		if mr > 10 {
			emit("LEAQ (R12)(AX*1), R13")
		}
	}
	cBases := [3]string{"DI", "R12", "R13"}
	emit("MOVQ %s, BX", f.fp("acc"))
	emit("TESTQ BX, BX")
	emit("JZ over")
	for i := 0; i < mr; i++ {
		for v := 0; v < nv; v++ {
			a := rowAddr(i, v*is.vbytes, cBases, "R10", "R11")
			switch {
			case masked && v == nv-1 && is == avx2:
				emit("VMASKMOV%s %s, %s, %s", sfx, a, mask, bc)
				emit("VADD%s %s, %s, %s", sfx, bc, acc(i, v), acc(i, v))
				emit("VMASKMOV%s %s, %s, %s", sfx, acc(i, v), mask, a)
			case masked && v == nv-1:
				emit("VMOVU%s.Z %s, K1, %s", sfx, a, bc)
				emit("VADD%s %s, %s, %s", sfx, bc, acc(i, v), acc(i, v))
				emit("VMOVU%s %s, K1, %s", sfx, acc(i, v), a)
			default:
				emit("VADD%s %s, %s, %s", sfx, a, acc(i, v), acc(i, v))
				emit("VMOVU%s %s, %s", sfx, acc(i, v), a)
			}
		}
	}
	emit("VZEROUPPER")
	emit("RET")
	label("over")
	for i := 0; i < mr; i++ {
		for v := 0; v < nv; v++ {
			a := rowAddr(i, v*is.vbytes, cBases, "R10", "R11")
			switch {
			case masked && v == nv-1 && is == avx2:
				emit("VMASKMOV%s %s, %s, %s", sfx, acc(i, v), mask, a)
			case masked && v == nv-1:
				emit("VMOVU%s %s, K1, %s", sfx, acc(i, v), a)
			default:
				emit("VMOVU%s %s, %s", sfx, acc(i, v), a)
			}
		}
	}
	emit("VZEROUPPER")
	emit("RET")
}

// ---------------------------------------------------------------- packing

// transpose8x8F32(kb int, b *float32, ldb int, dst *float32, ldd int)
// reads 8 rows of b, 8*kb columns each, and writes their transpose: row p
// of dst (stride ldd) gets column p of the 8 rows.
func genTranspose8x8F32() {
	f := sig("transpose8x8F32", ps("kb", "int", "b", "*float32", "ldb", "int", "dst", "*float32", "ldd", "int"), nil)
	text(f)
	f.load("kb", "CX", "b", "SI", "ldb", "R8<<2")
	emit("LEAQ (R8)(R8*2), R11")
	emit("LEAQ (SI)(R8*4), R12")
	emit("MOVQ %s, DI", f.fp("dst"))
	emit("MOVQ %s, R9", f.fp("ldd"))
	emit("SHLQ $2, R9")
	emit("LEAQ (R9)(R9*2), R10")
	emit("LEAQ (DI)(R9*4), R13")
	emit("TESTQ CX, CX")
	emit("JZ done")
	label("loop")
	srcs := []string{"(SI)", "(SI)(R8*1)", "(SI)(R8*2)", "(SI)(R11*1)", "(R12)", "(R12)(R8*1)", "(R12)(R8*2)", "(R12)(R11*1)"}
	for i, a := range srcs {
		emit("VMOVUPS %s, Y%d", a, i)
	}
	for i := 0; i < 8; i += 2 {
		emit("VUNPCKLPS Y%d, Y%d, Y%d", i+1, i, 8+i)
		emit("VUNPCKHPS Y%d, Y%d, Y%d", i+1, i, 9+i)
	}
	// s0..s3 from t0..t3 (Y8..Y11) into Y0..Y3; s4..s7 from Y12..Y15 into Y4..Y7.
	for h := 0; h < 2; h++ {
		t := 8 + 4*h
		o := 4 * h
		emit("VSHUFPS $0x44, Y%d, Y%d, Y%d", t+2, t, o)
		emit("VSHUFPS $0xEE, Y%d, Y%d, Y%d", t+2, t, o+1)
		emit("VSHUFPS $0x44, Y%d, Y%d, Y%d", t+3, t+1, o+2)
		emit("VSHUFPS $0xEE, Y%d, Y%d, Y%d", t+3, t+1, o+3)
	}
	for j := 0; j < 4; j++ {
		emit("VPERM2F128 $0x20, Y%d, Y%d, Y%d", 4+j, j, 8+j)
		emit("VPERM2F128 $0x31, Y%d, Y%d, Y%d", 4+j, j, 12+j)
	}
	dsts := []string{"(DI)", "(DI)(R9*1)", "(DI)(R9*2)", "(DI)(R10*1)", "(R13)", "(R13)(R9*1)", "(R13)(R9*2)", "(R13)(R10*1)"}
	for i, a := range dsts {
		emit("VMOVUPS Y%d, %s", 8+i, a)
	}
	emit("ADDQ $32, SI")
	emit("ADDQ $32, R12")
	emit("LEAQ (DI)(R9*8), DI")
	emit("LEAQ (R13)(R9*8), R13")
	emit("DECQ CX")
	emit("JNZ loop")
	label("done")
	emit("VZEROUPPER")
	emit("RET\n")
}

// transpose4x4F64 is transpose8x8F32 for 4 rows of float64, 4*kb columns.
func genTranspose4x4F64() {
	f := sig("transpose4x4F64", ps("kb", "int", "b", "*float64", "ldb", "int", "dst", "*float64", "ldd", "int"), nil)
	text(f)
	f.load("kb", "CX", "b", "SI", "ldb", "R8<<3")
	emit("LEAQ (R8)(R8*2), R11")
	emit("MOVQ %s, DI", f.fp("dst"))
	emit("MOVQ %s, R9", f.fp("ldd"))
	emit("SHLQ $3, R9")
	emit("LEAQ (R9)(R9*2), R10")
	emit("TESTQ CX, CX")
	emit("JZ done")
	label("loop")
	emit("VMOVUPD (SI), Y0")
	emit("VMOVUPD (SI)(R8*1), Y1")
	emit("VMOVUPD (SI)(R8*2), Y2")
	emit("VMOVUPD (SI)(R11*1), Y3")
	emit("VUNPCKLPD Y1, Y0, Y4")
	emit("VUNPCKHPD Y1, Y0, Y5")
	emit("VUNPCKLPD Y3, Y2, Y6")
	emit("VUNPCKHPD Y3, Y2, Y7")
	emit("VPERM2F128 $0x20, Y6, Y4, Y0")
	emit("VPERM2F128 $0x20, Y7, Y5, Y1")
	emit("VPERM2F128 $0x31, Y6, Y4, Y2")
	emit("VPERM2F128 $0x31, Y7, Y5, Y3")
	emit("VMOVUPD Y0, (DI)")
	emit("VMOVUPD Y1, (DI)(R9*1)")
	emit("VMOVUPD Y2, (DI)(R9*2)")
	emit("VMOVUPD Y3, (DI)(R10*1)")
	emit("ADDQ $32, SI")
	emit("LEAQ (DI)(R9*4), DI")
	emit("DECQ CX")
	emit("JNZ loop")
	label("done")
	emit("VZEROUPPER")
	emit("RET\n")
}

// ---------------------------------------------------------------- exp

// expBody emits the exponential of the vectors in regs xs (in place into
// ps), using ks and ps as temporaries; min/max clamps are in registers.
func expBody(is isa, dt dtype, xs, ks, ps []string, cmin, cmax string, regs map[string]string) {
	p := "e32"
	if dt == f64 {
		p = "e64"
	}
	c := func(n string) string {
		if r, ok := regs[n]; ok {
			return r
		}
		return p + n + "<>(SB)"
	}
	each := eachVector(xs, ks, ps)
	sf := dt.sfx
	// The AVX-512 forms need no lower clamp: a lane whose k falls below
	// kfloor (float32 -126: every x under about -87.7; float64 -1022:
	// under about -708.7; -Inf included) is zeroed by the flush mask at the
	// end whatever its polynomial gave.
	flushMask := is == avx512
	if !flushMask {
		each(func(x, k, q string) { emit("VMAX%s %s, %s, %s", sf, x, cmin, x) })
	}
	each(func(x, k, q string) { emit("VMIN%s %s, %s, %s", sf, x, cmax, x) })
	each(func(x, k, q string) { emit("VMUL%s %s, %s, %s", sf, c("log2e"), x, k) })
	if is == avx2 {
		each(func(x, k, q string) { emit("VROUND%s $0, %s, %s", sf, k, k) })
	} else {
		each(func(x, k, q string) { emit("VRNDSCALE%s $0, %s, %s", sf, k, k) })
	}
	each(func(x, k, q string) { emit("VFNMADD231%s %s, %s, %s", sf, c("ln2hi"), k, x) })
	each(func(x, k, q string) { emit("VFNMADD231%s %s, %s, %s", sf, c("ln2lo"), k, x) })
	var coefs []string
	if dt == f32 {
		// q = c5; q = q r + c4 ... + c0; then (q r + 1) r + 1.
		for i := 5; i >= 0; i-- {
			coefs = append(coefs, fmt.Sprintf("c%d", i))
		}
		coefs = append(coefs, "one", "one")
	} else {
		for i := expDeg64; i >= 0; i-- {
			coefs = append(coefs, fmt.Sprintf("c%d", i))
		}
	}
	each(func(x, k, q string) {
		if _, ok := regs[coefs[0]]; ok {
			emit("VMOVAPS %s, %s", c(coefs[0]), q)
		} else {
			emit("VMOVU%s %s, %s", sf, c(coefs[0]), q)
		}
	})
	for _, cf := range coefs[1:] {
		each(func(x, k, q string) { emit("VFMADD213%s %s, %s, %s", sf, c(cf), x, q) })
	}
	// Scale by 2^k.
	if is == avx512 {
		if flushMask {
			// Results below the normal range are flushed to zero: lanes
			// with k < kfloor are zeroed by the scaling (a compare into
			// mask register K2.. and a zeroing VSCALEF, one instruction
			// where pushing k down took three). Subnormal weights slowed
			// the float32 P V products twofold (microcode assists) when
			// logits spread over more than about 87, and float64 exact
			// attention at d = 2 tenfold when they spread over more than
			// about 708; a weight under 2^-126 (2^-1022 in float64)
			// changes a row sum of at least 1 by less than that. The compare
			// is "not less than, unordered": a NaN lane keeps its NaN.
			for i := range ks {
				emit("VCMP%s $5, %s, %s, K%d", sf, c("kfloor"), ks[i], 2+i)
			}
			for i := range ks {
				emit("VSCALEF%s.Z %s, %s, K%d, %s", sf, ks[i], ps[i], 2+i, ps[i])
			}
			return
		}
		each(func(x, k, q string) { emit("VSCALEF%s %s, %s, %s", sf, k, q, q) })
		return
	}
	// AVX2: 2^k = 2^k1 2^k2 with k1 = floor(k/2), so that results down in
	// the subnormal range round once, correctly, and k up to the overflow
	// threshold stays representable in each factor.
	if dt == f32 {
		each(func(x, k, q string) { emit("VCVTPS2DQ %s, %s", k, k) })
		each(func(x, k, q string) { emit("VPSRAD $1, %s, %s", k, x) })
		each(func(x, k, q string) { emit("VPSUBD %s, %s, %s", x, k, k) })
		each(func(x, k, q string) { emit("VPADDD %s, %s, %s", c("bias"), x, x) })
		each(func(x, k, q string) { emit("VPADDD %s, %s, %s", c("bias"), k, k) })
		each(func(x, k, q string) { emit("VPSLLD $23, %s, %s", x, x) })
		each(func(x, k, q string) { emit("VPSLLD $23, %s, %s", k, k) })
	} else {
		each(func(x, k, q string) { emit("VMULPD %s, %s, %s", c("half"), k, x) })
		each(func(x, k, q string) { emit("VROUNDPD $1, %s, %s", x, x) })
		each(func(x, k, q string) { emit("VSUBPD %s, %s, %s", x, k, k) })
		each(func(x, k, q string) { emit("VADDPD %s, %s, %s", c("magic"), x, x) })
		each(func(x, k, q string) { emit("VADDPD %s, %s, %s", c("magic"), k, k) })
		each(func(x, k, q string) { emit("VPSLLQ $52, %s, %s", x, x) })
		each(func(x, k, q string) { emit("VPSLLQ $52, %s, %s", k, k) })
	}
	each(func(x, k, q string) { emit("VMUL%s %s, %s, %s", sf, x, q, q) })
	each(func(x, k, q string) { emit("VMUL%s %s, %s, %s", sf, k, q, q) })
}

// genExp emits expShiftSum<dt><isa>(x *T, n int, scale, shift T) T. The
// main loop works on several vectors at once so that their polynomial
// chains (each FMA waits for the previous one) overlap: 4 on AVX-512, whose
// 32 registers hold them, 2 on AVX2.
func genExp(is isa, dt dtype) {
	name := fmt.Sprintf("expShiftSum%s%s", dt.name, is.name)
	f := sig(name, ps("x", "*"+dt.gotyp, "n", "int", "scale", dt.gotyp, "shift", dt.gotyp), ps("ret", dt.gotyp))
	text(f)
	R := func(n int) string { return fmt.Sprintf("%s%d", is.reg, n) }
	sf := dt.sfx
	u := 2
	if is == avx512 {
		u = 4
	}
	// Registers: x, k, q of vector i at i, u+i, 2u+i; the running sums at
	// 3u+i; then scale, shift, min, max and the AVX2 tail mask.
	xr := func(i int) string { return R(i) }
	kr := func(i int) string { return R(u + i) }
	qr := func(i int) string { return R(2*u + i) }
	sum := func(i int) string { return R(3*u + i) }
	scale, shift, cmin, cmax, mask := R(4*u), R(4*u+1), R(4*u+2), R(4*u+3), R(4*u+4)
	pre := "e32"
	if dt == f64 {
		pre = "e64"
	}
	emit("MOVQ %s, DI", f.fp("x"))
	emit("MOVQ %s, CX", f.fp("n"))
	emit("%s %s, %s", dt.bcast, f.fp("scale"), scale)
	emit("%s %s, %s", dt.bcast, f.fp("shift"), shift)
	emit("VMOVU%s %smin<>(SB), %s", sf, pre, cmin)
	emit("VMOVU%s %smax<>(SB), %s", sf, pre, cmax)
	zero := func(r string) {
		if is == avx2 {
			emit("VXORPS %[1]s, %[1]s, %[1]s", r)
		} else {
			emit("VPXORD %[1]s, %[1]s, %[1]s", r)
		}
	}
	for i := range u {
		zero(sum(i))
	}
	// On AVX-512 the constants live in the upper registers, so the loop's
	// loads are only its data.
	regs := map[string]string{}
	if is == avx512 {
		names := []string{"log2e", "ln2hi", "ln2lo"}
		if dt == f32 {
			names = append(names, "one")
			for i := 0; i <= 5; i++ {
				names = append(names, fmt.Sprintf("c%d", i))
			}
			names = append(names, "kfloor")
		} else {
			for i := 0; i <= expDeg64; i++ {
				names = append(names, fmt.Sprintf("c%d", i))
			}
		}
		for i, n := range names {
			if 31-i <= 4*u+4 {
				break
			}
			r := R(31 - i)
			regs[n] = r
			emit("VMOVU%s %s%s<>(SB), %s", sf, pre, n, r)
		}
	}
	expLoop(is, dt, u, scale, shift, xr, kr, qr, sum, func(xs, ks, qs []string) {
		expBody(is, dt, xs, ks, qs, cmin, cmax, regs)
	})
	label("tail")
	emit("TESTQ CX, CX")
	emit("JZ reduce")
	x0, q0 := xr(0), qr(0)
	if is == avx2 {
		emit("LEAQ maskTbl<>+32(SB), AX")
		emit("SHLQ $%d, CX", dt.shift)
		emit("SUBQ CX, AX")
		emit("VMOVDQU (AX), %s", mask)
		emit("VMASKMOV%s (DI), %s, %s", sf, mask, x0)
	} else {
		emit("LEAQ maskK<>(SB), AX")
		emit("KMOVW (AX)(CX*2), K1")
		emit("VMOVU%s.Z (DI), K1, %s", sf, x0)
	}
	emit("VMUL%s %s, %s, %s", sf, scale, x0, x0)
	emit("VSUB%s %s, %s, %s", sf, shift, x0, x0)
	expBody(is, dt, []string{x0}, []string{kr(0)}, []string{q0}, cmin, cmax, regs)
	if is == avx2 {
		emit("VANDPS %s, %s, %s", mask, q0, q0)
		emit("VMASKMOV%s %s, %s, (DI)", sf, q0, mask)
		emit("VADD%s %s, %s, %s", sf, q0, sum(0), sum(0))
	} else {
		emit("VMOVU%s %s, K1, (DI)", sf, q0)
		emit("VADD%s %s, %s, K1, %s", sf, q0, sum(0), sum(0))
	}
	label("reduce")
	for i := 1; i < u; i++ {
		emit("VADD%s %s, %s, %s", sf, sum(i), sum(0), sum(0))
	}
	hreduce("ADD", dt, 3*u, is == avx512, f.fp("ret"))
	emit("VZEROUPPER")
	emit("RET\n")
}

// hreduce folds the lanes of register number r (ZMM when wide, else YMM)
// with op ("ADD" or "MAX") into its lowest lane and stores that to the
// result operand res, using register 1 as scratch.
func hreduce(op string, dt dtype, r int, wide bool, res string) {
	sf := dt.sfx
	if wide {
		emit("VEXTRACTF64X4 $1, Z%d, Y1", r)
		emit("V%s%s Y1, Y%d, Y%d", op, sf, r, r)
	}
	emit("VEXTRACTF128 $1, Y%d, X1", r)
	emit("V%s%s X1, X%d, X%d", op, sf, r, r)
	emit("VPERMILPD $1, X%d, X1", r) // swap 64-bit halves
	emit("V%s%s X1, X%d, X%d", op, sf, r, r)
	if dt == f32 {
		emit("VPERMILPS $0xB1, X%d, X1", r)
		emit("V%sPS X1, X%d, X%d", op, r, r)
		emit("VMOVSS X%d, %s", r, res)
	} else {
		emit("VMOVSD X%d, %s", r, res)
	}
}

// ---------------------------------------------------------------- max

// genMax emits max<dt>AVX2(x *T, n int) (m T, nan bool) for n >= one
// vector: the largest element, and whether any element is NaN.
func genMax(dt dtype) {
	name := fmt.Sprintf("max%sAVX2", dt.name)
	w := 32 / dt.size
	sf := dt.sfx
	f := sig(name, ps("x", "*"+dt.gotyp, "n", "int"), ps("m", dt.gotyp, "nan", "bool"))
	text(f)
	emit("MOVQ %s, SI", f.fp("x"))
	emit("MOVQ %s, CX", f.fp("n"))
	emit("VMOVU%s (SI), Y0", sf)
	emit("VMOVAPS Y0, Y1")
	emit("VCMP%s $3, Y0, Y0, Y2", sf)
	emit("VMOVAPS Y2, Y3")
	// Last (possibly overlapping) vector first.
	emit("LEAQ -%d(SI)(CX*%d), AX", 32, dt.size)
	emit("VMOVU%s (AX), Y4", sf)
	emit("VMAX%s Y4, Y1, Y1", sf)
	emit("VCMP%s $3, Y4, Y4, Y5", sf)
	emit("VORPS Y5, Y3, Y3")
	label("loop2")
	emit("CMPQ CX, $%d", 2*w)
	emit("JLT loop1")
	emit("VMOVU%s (SI), Y4", sf)
	emit("VMOVU%s 32(SI), Y5", sf)
	emit("VMAX%s Y4, Y0, Y0", sf)
	emit("VMAX%s Y5, Y1, Y1", sf)
	emit("VCMP%s $3, Y4, Y4, Y4", sf)
	emit("VCMP%s $3, Y5, Y5, Y5", sf)
	emit("VORPS Y4, Y2, Y2")
	emit("VORPS Y5, Y3, Y3")
	emit("ADDQ $64, SI")
	emit("SUBQ $%d, CX", 2*w)
	emit("JMP loop2")
	label("loop1")
	emit("CMPQ CX, $%d", w)
	emit("JLT reduce")
	emit("VMOVU%s (SI), Y4", sf)
	emit("VMAX%s Y4, Y0, Y0", sf)
	emit("VCMP%s $3, Y4, Y4, Y4", sf)
	emit("VORPS Y4, Y2, Y2")
	label("reduce")
	emit("VMAX%s Y1, Y0, Y0", sf)
	emit("VORPS Y3, Y2, Y2")
	hreduce("MAX", dt, 0, false, f.fp("m"))
	emit("VMOVMSK%s Y2, AX", sf)
	emit("TESTL AX, AX")
	emit("SETNE %s", f.fp("nan"))
	emit("VZEROUPPER")
	emit("RET\n")
}

// genAccumulate writes accumulateAVX2(dst *float64, src *float32, n int,
// alpha float64): dst[i] = alpha*dst[i] + float64(src[i]) (one FMA) for
// i < n, n a multiple of 4; the caller does the tail.
func genAccumulate() {
	f := sig("accumulateAVX2", ps("dst", "*float64", "src", "*float32", "n", "int", "alpha", "float64"), nil)
	text(f)
	f.load("dst", "DI", "src", "SI", "n", "CX")
	emit("VBROADCASTSD %s, Y15", f.fp("alpha"))
	label("acc16")
	emit("CMPQ CX, $16")
	emit("JLT acc4")
	for i := 0; i < 4; i++ {
		emit("VCVTPS2PD %d(SI), Y%d", 16*i, 4+i)
	}
	for i := 0; i < 4; i++ {
		emit("VMOVUPD %d(DI), Y%d", 32*i, i)
	}
	for i := 0; i < 4; i++ {
		emit("VFMADD213PD Y%d, Y15, Y%d", 4+i, i)
	}
	for i := 0; i < 4; i++ {
		emit("VMOVUPD Y%d, %d(DI)", i, 32*i)
	}
	emit("ADDQ $64, SI")
	emit("ADDQ $128, DI")
	emit("SUBQ $16, CX")
	emit("JMP acc16")
	label("acc4")
	emit("CMPQ CX, $4")
	emit("JLT accdone")
	emit("VCVTPS2PD (SI), Y4")
	emit("VMOVUPD (DI), Y0")
	emit("VFMADD213PD Y4, Y15, Y0")
	emit("VMOVUPD Y0, (DI)")
	emit("ADDQ $16, SI")
	emit("ADDQ $32, DI")
	emit("SUBQ $4, CX")
	emit("JMP acc4")
	label("accdone")
	emit("VZEROUPPER")
	emit("RET\n")
}

// ---------------------------------------------------------------- half precision

// genWiden emits <name><isa>(dst *float32, src *uint16, n int) for n a
// multiple of 4 vectors: each 16-bit value widened to float32, by ins (a
// zero extension, then a 16-bit shift that makes bfloat16 bits float32
// bits, when shift is set; or VCVTPH2PS for IEEE half precision).
func genWiden(is isa, name, ins string, shift bool) {
	f := sig(name+is.name, ps("dst", "*float32", "src", "*uint16", "n", "int"), nil)
	text(f)
	w := is.vbytes / 4
	f.load("dst", "DI", "src", "SI", "n", "CX")
	emit("SHRQ $%d, CX", bitsLen(4*w)-1)
	emit("JZ done")
	label("loop")
	for i := range 4 {
		emit("%s %d(SI), %s%d", ins, i*w*2, is.reg, i)
	}
	if shift {
		for i := range 4 {
			emit("VPSLLD $16, %[1]s%[2]d, %[1]s%[2]d", is.reg, i)
		}
	}
	for i := range 4 {
		emit("VMOVUPS %s%d, %d(DI)", is.reg, i, i*is.vbytes)
	}
	emit("ADDQ $%d, SI", 4*w*2)
	emit("ADDQ $%d, DI", 4*is.vbytes)
	emit("DECQ CX")
	emit("JNZ loop")
	label("done")
	emit("VZEROUPPER")
	emit("RET\n")
}

// bitsLen is the number of bits needed for x (x a power of two: log2 x + 1).
func bitsLen(x int) int {
	n := 0
	for ; x > 0; x >>= 1 {
		n++
	}
	return n
}

// genNarrowBF16 emits f32ToBF16AVX512(dst *uint16, src *float32, n int) for
// n a multiple of 64: VCVTNEPS2BF16 (AVX512_BF16), round to nearest even,
// NaN to a quiet NaN, and, as that instruction does, subnormal inputs to
// zero of the same sign.
func genNarrowBF16() { genRoundBF16(false) }

// genRoundBF16 emits the loop of genNarrowBF16 and, with split, of
// genSplitBF16 (amx.go), which also stores the rounding's remainder.
func genRoundBF16(split bool) {
	if split {
		f := sig("splitBF16AVX512", ps("hi", "*uint16", "lo", "*uint16", "src", "*float32", "n", "int"), nil)
		text(f)
		f.load("hi", "DI", "lo", "R8", "src", "SI", "n", "CX")
	} else {
		f := sig("f32ToBF16AVX512", ps("dst", "*uint16", "src", "*float32", "n", "int"), nil)
		text(f)
		f.load("dst", "DI", "src", "SI", "n", "CX")
	}
	emit("SHRQ $6, CX")
	emit("JZ done")
	label("loop")
	for i := range 4 {
		emit("VMOVUPS %d(SI), Z%d", 64*i, i)
	}
	for i := range 4 {
		evex512("VCVTNEPS2BF16", 2, 0x72, 4+i, 0, i) // Y(4+i) = bf16(Z i); vvvv unused
	}
	for i := range 4 {
		emit("VMOVDQU Y%d, %d(DI)", 4+i, 32*i)
		if split {
			emit("VPMOVZXWD Y%d, Z%d", 4+i, 8+i)
			emit("VPSLLD $16, Z%d, Z%d", 8+i, 8+i)
			emit("VSUBPS Z%d, Z%d, Z%d", 8+i, i, 12+i) // Z(12+i) = x - hi
		}
	}
	if split {
		for i := range 4 {
			evex512("VCVTNEPS2BF16", 2, 0x72, 4+i, 0, 12+i)
		}
		for i := range 4 {
			emit("VMOVDQU Y%d, %d(R8)", 4+i, 32*i)
		}
	}
	emit("ADDQ $256, SI")
	emit("ADDQ $128, DI")
	if split {
		emit("ADDQ $128, R8")
	}
	emit("DECQ CX")
	emit("JNZ loop")
	label("done")
	emit("VZEROUPPER")
	emit("RET\n")
}

// genPackPairs emits packPairsBF16AVX512(kp int, b *uint16, ldb int, dst
// *uint32, ldd int, groups int): for pair rows pp < kp, the 16*groups
// columns of B's rows 2pp and 2pp+1 interleaved, column j of the pair row
// at dst[pp*ldd + j] = B[2pp][j] | B[2pp+1][j]<<16. This is the layout the
// bfloat16 microkernels read B in for C += A B.
func genPackPairs() {
	f := sig("packPairsBF16AVX512", ps("kp", "int", "b", "*uint16", "ldb", "int", "dst", "*uint32", "ldd", "int", "groups", "int"), nil)
	text(f)
	f.load("kp", "CX", "b", "SI", "ldb", "R8")
	emit("SHLQ $1, R8") // row stride in bytes
	f.load("dst", "DI", "ldd", "R9<<2", "groups", "R10")
	emit("TESTQ CX, CX")
	emit("JZ done")
	label("row")
	emit("MOVQ SI, AX")
	emit("MOVQ DI, BX")
	emit("MOVQ R10, DX")
	label("group")
	emit("VPMOVZXWD (AX), Z0")
	emit("VPMOVZXWD (AX)(R8*1), Z1")
	emit("VPSLLD $16, Z1, Z1")
	emit("VPORD Z1, Z0, Z0")
	emit("VMOVDQU32 Z0, (BX)")
	emit("ADDQ $32, AX")
	emit("ADDQ $64, BX")
	emit("DECQ DX")
	emit("JNZ group")
	emit("LEAQ (SI)(R8*2), SI")
	emit("ADDQ R9, DI")
	emit("DECQ CX")
	emit("JNZ row")
	label("done")
	emit("VZEROUPPER")
	emit("RET\n")
}

// genPackNT emits packNTBF16AVX512(kp int, b *uint16, ldb int, dst *uint32):
// for pair columns pp < kp of 16 rows of B (row stride ldb), the pair of
// each row side by side, dst[pp*16 + j] = B[j][2pp] | B[j][2pp+1]<<16: one
// panel of PackBF16NT's layout (attention's keys, 16 at a time), a
// VPGATHERDD per 64-byte row of it.
func genPackNT() {
	f := sig("packNTBF16AVX512", ps("kp", "int", "b", "*uint16", "ldb", "int", "dst", "*uint32"), nil)
	text(f)
	f.load("kp", "CX", "b", "SI", "ldb", "R8", "dst", "DI")
	emit("SHLQ $1, R8") // row stride in bytes
	// Z1 = the 16 rows' byte offsets, j*ldb*2.
	emit("VPBROADCASTD R8, Z2")
	emit("VPMULLD iota32<>(SB), Z2, Z1")
	emit("TESTQ CX, CX")
	emit("JZ done")
	label("pair")
	emit("KXNORW K1, K1, K1")
	emit("VPGATHERDD (SI)(Z1*1), K1, Z0")
	emit("VMOVDQU32 Z0, (DI)")
	emit("ADDQ $4, SI")
	emit("ADDQ $64, DI")
	emit("DECQ CX")
	emit("JNZ pair")
	label("done")
	emit("VZEROUPPER")
	emit("RET\n")
}

// genFinite emits finite<dt>AVX2(x *T, n int) (ok bool) for n a multiple
// of one YMM vector: whether no element is NaN or ±Inf. x*0 is 0 for a
// finite x and NaN otherwise, and a NaN survives the sums: four
// independent sums, so the loop runs at the loads' rate, not the adds'
// latency.
func genFinite(dt dtype) {
	name := fmt.Sprintf("finite%sAVX2", dt.name)
	w := 32 / dt.size
	sf := dt.sfx
	f := sig(name, ps("x", "*"+dt.gotyp, "n", "int"), ps("ok", "bool"))
	text(f)
	emit("MOVQ %s, SI", f.fp("x"))
	emit("MOVQ %s, CX", f.fp("n"))
	emit("VXORPS Y15, Y15, Y15")
	for i := range 4 {
		emit("VXORPS Y%[1]d, Y%[1]d, Y%[1]d", i)
	}
	label("loop4")
	emit("CMPQ CX, $%d", 4*w)
	emit("JLT loop1")
	for i := range 4 {
		emit("VMUL%s %d(SI), Y15, Y%d", sf, 32*i, 4+i)
	}
	for i := range 4 {
		emit("VADD%s Y%d, Y%d, Y%d", sf, 4+i, i, i)
	}
	emit("ADDQ $128, SI")
	emit("SUBQ $%d, CX", 4*w)
	emit("JMP loop4")
	label("loop1")
	emit("TESTQ CX, CX")
	emit("JZ reduce")
	emit("VMUL%s (SI), Y15, Y4", sf)
	emit("VADD%s Y4, Y0, Y0", sf)
	emit("ADDQ $32, SI")
	emit("SUBQ $%d, CX", w)
	emit("JMP loop1")
	label("reduce")
	emit("VADD%s Y1, Y0, Y0", sf)
	emit("VADD%s Y3, Y2, Y2", sf)
	emit("VADD%s Y2, Y0, Y0", sf)
	emit("VCMP%s $3, Y0, Y0, Y0", sf) // unordered: NaN lanes
	emit("VMOVMSK%s Y0, AX", sf)
	emit("TESTL AX, AX")
	emit("SETEQ %s", f.fp("ok"))
	emit("VZEROUPPER")
	emit("RET\n")
}

// genMaxAVX512 emits max<dt>AVX512(x *T, n int) (m T, nan bool, finite
// bool) for n a multiple of one ZMM vector: as max<dt>AVX2 with four
// 512-bit running maxima and the NaN test in a mask register, and whether
// every element is finite (VFPCLASS, AVX512DQ), so exact attention's scan
// for NaN and Inf rides on the max's pass.
func genMaxAVX512(dt dtype) {
	name := fmt.Sprintf("max%sAVX512", dt.name)
	w := 64 / dt.size
	sf := dt.sfx
	f := sig(name, ps("x", "*"+dt.gotyp, "n", "int"), ps("m", dt.gotyp, "nan", "bool", "finite", "bool"))
	text(f)
	emit("MOVQ %s, SI", f.fp("x"))
	emit("MOVQ %s, CX", f.fp("n"))
	emit("VMOVU%s (SI), Z0", sf)
	for i := 1; i < 4; i++ {
		emit("VMOVAPS Z0, Z%d", i)
	}
	emit("KXORW K2, K2, K2")
	emit("KXORW K4, K4, K4")
	// VFPCLASS class bits: quiet NaN, +Inf, -Inf, signalling NaN.
	class := func(z int) {
		emit("VFPCLASS%sZ $0x99, Z%d, K3", sf, z)
		emit("KORW K3, K4, K4")
	}
	label("loop4")
	emit("CMPQ CX, $%d", 4*w)
	emit("JLT loop1")
	for i := range 4 {
		emit("VMOVU%s %d(SI), Z%d", sf, 64*i, 4+i)
	}
	for i := range 4 {
		emit("VMAX%s Z%d, Z%d, Z%d", sf, 4+i, i, i)
	}
	for i := range 4 {
		emit("VCMP%s $3, Z%[2]d, Z%[2]d, K1", sf, 4+i)
		emit("KORW K1, K2, K2")
		class(4 + i)
	}
	emit("ADDQ $256, SI")
	emit("SUBQ $%d, CX", 4*w)
	emit("JMP loop4")
	label("loop1")
	emit("TESTQ CX, CX")
	emit("JZ reduce")
	emit("VMOVU%s (SI), Z4", sf)
	emit("VMAX%s Z4, Z0, Z0", sf)
	emit("VCMP%s $3, Z4, Z4, K1", sf)
	emit("KORW K1, K2, K2")
	class(4)
	emit("ADDQ $64, SI")
	emit("SUBQ $%d, CX", w)
	emit("JMP loop1")
	label("reduce")
	emit("VMAX%s Z1, Z0, Z0", sf)
	emit("VMAX%s Z3, Z2, Z2", sf)
	emit("VMAX%s Z2, Z0, Z0", sf)
	hreduce("MAX", dt, 0, true, f.fp("m"))
	emit("KORTESTW K2, K2")
	emit("SETNE %s", f.fp("nan"))
	emit("KORTESTW K4, K4")
	emit("SETEQ %s", f.fp("finite"))
	emit("VZEROUPPER")
	emit("RET\n")
}

// genPeak emits name(n int): n rounds of 24 independent instructions
// (ins(i) writes register i), for benchmarks of the issue rate of FMA and
// VDPBF16PS: the limit a microkernel can approach.
func genPeak(name string, ins func(i int)) {
	f := sig(name, ps("n", "int"), nil)
	text(f)
	emit("MOVQ %s, CX", f.fp("n"))
	for i := range 24 {
		emit("VPXORD Z%[1]d, Z%[1]d, Z%[1]d", i)
	}
	emit("VPXORD Z30, Z30, Z30")
	emit("VPXORD Z31, Z31, Z31")
	emit("TESTQ CX, CX")
	emit("JZ done")
	label("loop")
	for i := range 24 {
		ins(i)
	}
	emit("DECQ CX")
	emit("JNZ loop")
	label("done")
	emit("VZEROUPPER")
	emit("RET\n")
}

// kLoop emits a microkernel's loop over its CX steps of k: four per
// iteration (step(0..3), then advanceA(4)), then the rest one at a time;
// it falls through, and jumps, to the label "store" its caller emits next.
func kLoop(step func(u int), advanceA func(elems int)) {
	emit("MOVQ CX, BX")
	emit("SHRQ $2, BX")
	emit("JZ tail")
	label("loop4")
	for u := range 4 {
		step(u)
	}
	advanceA(4)
	emit("DECQ BX")
	emit("JNZ loop4")
	label("tail")
	emit("ANDQ $3, CX")
	emit("JZ store")
	label("loop1")
	step(0)
	advanceA(1)
	emit("DECQ CX")
	emit("JNZ loop1")
}

// load emits the loads of arguments into registers, in order: pairs of an
// argument's name and its register; a register written "R9<<3" is shifted
// left by 3 after the load (an element stride made a byte stride).
func (f *signature) load(pairs ...string) {
	for i := 0; i+1 < len(pairs); i += 2 {
		reg, shift, _ := strings.Cut(pairs[i+1], "<<")
		emit("MOVQ %s, %s", f.fp(pairs[i]), reg)
		if shift != "" {
			emit("SHLQ $%s, %s", shift, reg)
		}
	}
}
