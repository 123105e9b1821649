//go:build amd64 && gc && !purego

package kernels

import (
	"math"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/cpu"
)

var (
	// hasBW: the 512-bit 16-bit-element instructions (VPMOVZXWD on ZMM).
	hasBW = maxLevel == levelAVX512 && cpu.X86.HasAVX512BW
	// hasBF16 is VDPBF16PS and VCVTNEPS2BF16 (AVX512_BF16).
	hasBF16 = hasBW && cpu.X86.HasAVX512BF16
	// useBF16 is hasBF16 unless a test turns it off to check the path
	// that widens to float32.
	useBF16 = hasBF16
	hasF16C = cpu.X86.HasF16C
	// bf16Calibrated, when a test sets it, replaces the calibration.
	bf16Calibrated *bool
)

// bf16Faster says whether VDPBF16PS beats widening to float32 and FMAs on
// this CPU, measured once. It does on cores that run it at the FMA's rate
// (two products per float32 lane per instruction: twice the flops). Cores
// that issue it at half the FMA rate or less (measured: a 2-vCPU Intel
// Xeon VM with AMX, 1.9e9 VDPBF16PS/s against 7.6e9 FMA/s) are faster on
// the float32 kernels, so the choice is measured rather than assumed.
var bf16Faster = sync.OnceValue(calibrateBF16)

// calibrateBF16 times the 12 x 32 microkernels on an L1-resident panel, 256
// values deep, bfloat16 against float32, best of 20 runs of 8 calls each
// (about 0.1 ms in all), and prefers bfloat16 when it does the same
// product in less time.
func calibrateBF16() bool {
	const kp = 128
	a := make([]uint16, 12*2*kp)
	panel := make([]uint32, kp*32)
	a32 := make([]float32, 12*2*kp)
	p32 := make([]float32, 2*kp*32)
	c := make([]float32, 12*32)
	best := func(f func()) time.Duration {
		b := time.Duration(math.MaxInt64)
		for range 20 {
			t := time.Now()
			for range 8 {
				f()
			}
			b = min(b, time.Since(t))
		}
		return b
	}
	tBF16 := best(func() { gemmBF16AVX512_12x2(kp, &a[0], 2*kp, &panel[0], 32, &c[0], 32, 16, 0) })
	// The float32 family's full kernel on its own mr x nr block, k deep:
	// compared per flop with the bfloat16 12 x 32 block.
	g := &gemmF32AVX512
	p32 = make([]float32, 2*kp*g.nr)
	c32 := make([]float32, g.mr*g.nr)
	tF32 := best(func() { g.full[g.mr-1](2*kp, &a32[0], 2*kp, &p32[0], g.nr, &c32[0], g.nr, g.w, 0) })
	tF32 = tF32 * (12 * 32) / time.Duration(g.mr*g.nr)
	return tBF16 < tF32
}

// kernBF16 is the signature of the bfloat16 microkernels (see _asm): k
// pairs along the product's inner dimension, A read in place (lda in
// bfloat16 elements), B as a panel of pairs with ldb pairs per row.
type kernBF16 func(k int, a *uint16, lda int, b *uint32, ldb int, c *float32, ldc int, tail int, acc int)

// bf16Kernels is the bfloat16 microkernel family: mr x nr blocks of C.
type bf16Kernels struct {
	mr, nr, w int
	full      []kernBF16   // [rows-1]: full nr columns
	part      [][]kernBF16 // [vectors-1][rows-1]: last vector masked
}

func (g *bf16Kernels) pick(nb int) ([]kernBF16, int) {
	if nb == g.nr {
		return g.full, g.w
	}
	nv := (nb + g.w - 1) / g.w
	return g.part[nv-1], nb - (nv-1)*g.w
}

func bf16Dot() bool {
	if level != levelAVX512 || !useBF16 {
		return false
	}
	if bf16Calibrated != nil {
		return *bf16Calibrated
	}
	return bf16Faster()
}

// bf16Convert says whether VCVTNEPS2BF16 may be used: whatever the speed
// of the dot products, it converts 16 values per instruction.
func bf16Convert() bool { return level == levelAVX512 && useBF16 }

func bf16ToF32(dst []float32, src []uint16) {
	n, body := len(src), 0
	switch {
	case level == levelAVX512 && hasBW:
		body = n &^ 63
		if body > 0 {
			bf16ToF32AVX512(&dst[0], &src[0], body)
		}
	case level >= levelAVX2:
		body = n &^ 31
		if body > 0 {
			bf16ToF32AVX2(&dst[0], &src[0], body)
		}
	}
	bf16ToF32Go(dst[body:], src[body:])
}

func f16ToF32(dst []float32, src []uint16) {
	n, body := len(src), 0
	switch {
	case level == levelAVX512:
		body = n &^ 63
		if body > 0 {
			f16ToF32AVX512(&dst[0], &src[0], body)
		}
	case level == levelAVX2 && hasF16C:
		body = n &^ 31
		if body > 0 {
			f16ToF32AVX2(&dst[0], &src[0], body)
		}
	}
	f16ToF32Go(dst[body:], src[body:])
}

func f32ToBF16(dst []uint16, src []float32) {
	body := 0
	if bf16Convert() {
		body = len(src) &^ 63
		if body > 0 {
			f32ToBF16AVX512(&dst[0], &src[0], body)
		}
	}
	f32ToBF16Go(dst[body:], src[body:])
}

var pool16, poolPairs sync.Pool

func gemmBF16(nt bool, m, n, k int, a []uint16, lda int, b []uint16, ldb int, c []float32, ldc int) {
	ok := nt && ntOK(m, n, k, len(a), lda, len(b), ldb, len(c), ldc) ||
		!nt && nnOK(m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	switch {
	case !ok || level == levelGo:
		gemmBF16Go(nt, m, n, k, a, lda, b, ldb, c, ldc)
	case bf16Dot():
		gemmBF16Asm(nt, m, n, k, a, lda, b, ldb, c, ldc)
	default:
		gemmBF16Widen(nt, m, n, k, a, lda, b, ldb, c, ldc)
	}
}

// gemmBF16Widen converts A and B to float32 and runs the float32 kernels:
// the path for CPUs without AVX512_BF16.
func gemmBF16Widen(nt bool, m, n, k int, a []uint16, lda int, b []uint16, ldb int, c []float32, ldc int) {
	na, nb := (m-1)*lda+k, (n-1)*ldb+k
	if !nt {
		nb = (k-1)*ldb + n
	}
	ap, bp := getBuf[float32](&pool32, na), getBuf[float32](&pool32, nb)
	a32, b32 := *ap, *bp
	bf16ToF32(a32, a[:na])
	bf16ToF32(b32, b[:nb])
	if nt {
		gemmNT32(m, n, k, a32, lda, b32, ldb, c, ldc, nil)
	} else {
		gemmNN32(m, n, k, a32, lda, b32, ldb, c, ldc)
	}
	pool32.Put(ap)
	pool32.Put(bp)
}

// kcPairs is the bfloat16 GEMM's k block, in pairs: 256 values along k,
// as kcBlock for float32.
const kcPairs = kcBlock / 2

// gemmBF16Asm runs the VDPBF16PS microkernels, blocked as gemmAsm: B is
// packed per kc x nc block into nr-wide panels of pairs (transposed for
// NT, two rows interleaved for NN); A is read in place, a pair of bfloat16
// values at a time, so an odd k first goes through copies padded with a
// zero column (row of B).
func gemmBF16Asm(nt bool, m, n, k int, a []uint16, lda int, b []uint16, ldb int, c []float32, ldc int) {
	if k%2 == 1 {
		gemmBF16Odd(nt, m, n, k, a, lda, b, ldb, c, ldc)
		return
	}
	g := &gemmBF16AVX512
	kp := k / 2
	kcMax := min(kcPairs, kp)
	bp := getBuf[uint32](&poolPairs, kcMax*min(ncBlock, (n+g.nr-1)/g.nr*g.nr))
	bbuf := *bp
	for j0 := 0; j0 < n; j0 += ncBlock {
		nc := min(ncBlock, n-j0)
		for p0 := 0; p0 < kp; p0 += kcPairs {
			kc := min(kcPairs, kp-p0)
			acc := 1
			if nt && p0 == 0 {
				acc = 0
			}
			if nt {
				packNTPairs(nc, kc, b[j0*ldb+2*p0:], ldb, bbuf)
			} else {
				packNNPairs(g, nc, kc, b[2*p0*ldb+j0:], ldb, bbuf)
			}
			for i0 := 0; i0 < m; i0 += mcBlock {
				i1 := min(i0+mcBlock, m)
				for j := 0; j < nc; j += g.nr {
					kr, tail := g.pick(min(g.nr, nc-j))
					for i := i0; i < i1; i += g.mr {
						kr[min(g.mr, i1-i)-1](kc, &a[i*lda+2*p0], lda, &bbuf[j*kc], g.nr, &c[i*ldc+j0+j], ldc, tail, acc)
					}
				}
			}
		}
	}
	poolPairs.Put(bp)
}

// gemmBF16Odd pads k to even: A gets a zero column, and B a zero column
// (NT) or row (NN).
func gemmBF16Odd(nt bool, m, n, k int, a []uint16, lda int, b []uint16, ldb int, c []float32, ldc int) {
	k2 := k + 1
	ap := getBuf[uint16](&pool16, m*k2)
	a2 := *ap
	for i := range m {
		copy(a2[i*k2:i*k2+k], a[i*lda:i*lda+k])
		a2[i*k2+k] = 0
	}
	var bp *[]uint16
	if nt {
		bp = getBuf[uint16](&pool16, n*k2)
		b2 := *bp
		for j := range n {
			copy(b2[j*k2:j*k2+k], b[j*ldb:j*ldb+k])
			b2[j*k2+k] = 0
		}
		gemmBF16Asm(nt, m, n, k2, a2, k2, b2, k2, c, ldc)
	} else {
		bp = getBuf[uint16](&pool16, k2*n)
		b2 := *bp
		for p := range k {
			copy(b2[p*n:(p+1)*n], b[p*ldb:p*ldb+n])
		}
		clear(b2[k*n : k2*n])
		gemmBF16Asm(nt, m, n, k2, a2, k2, b2, n, c, ldc)
	}
	pool16.Put(ap)
	pool16.Put(bp)
}

// pairPanels describes the panels of pairs for packNT: 32 pairs wide, as
// the bfloat16 microkernels read them, built by the float32 transposer.
var pairPanels = gemmKernels[float32]{nr: 32, tb: 8, trans: transpose8x8F32}

// packNTPairs lays out B's first nc rows (kc pairs each) as panels of nr
// columns of pairs: panel q at dst[q*nr*kc:], pair p of row q*nr+jj at
// p*nr + jj; rows past nc are zero. A pair of bfloat16 values is 32 bits,
// so this is the float32 transpose packNT does, on B seen as a matrix of
// pairs, when B's rows start on pair boundaries (ldb even).
func packNTPairs(nc, kc int, b []uint16, ldb int, dst []uint32) {
	g := &pairPanels
	if ldb%2 == 0 {
		bv := unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/2)
		dv := unsafe.Slice((*float32)(unsafe.Pointer(unsafe.SliceData(dst))), len(dst))
		packNT(g, nc, kc, bv, ldb/2, dv)
		return
	}
	nr := g.nr
	for j := 0; j < nc; j += nr {
		panel := dst[j*kc : (j+nr)*kc]
		for jj := range nr {
			if j+jj >= nc {
				for p := range kc {
					panel[p*nr+jj] = 0
				}
				continue
			}
			row := b[(j+jj)*ldb:]
			for p := range kc {
				panel[p*nr+jj] = uint32(row[2*p]) | uint32(row[2*p+1])<<16
			}
		}
	}
}

// packNNPairs lays out B's 2*kc rows (nc columns each) as panels of nr
// columns: panel q at dst[q*nr*kc:], entry (p, jj) the pair B[2p][q*nr+jj],
// B[2p+1][q*nr+jj]. Columns past nc are left as they are: the
// microkernels mask them off.
func packNNPairs(g *bf16Kernels, nc, kc int, b []uint16, ldb int, dst []uint32) {
	nr := g.nr
	for j := 0; j < nc; j += nr {
		nb := min(nr, nc-j)
		panel := dst[j*kc : (j+nr)*kc]
		groups := nb / 16
		if groups > 0 {
			packPairsBF16AVX512(kc, &b[j], ldb, &panel[0], nr, groups)
		}
		for p := range kc {
			r0, r1 := b[2*p*ldb+j:], b[(2*p+1)*ldb+j:]
			for jj := groups * 16; jj < nb; jj++ {
				panel[p*nr+jj] = uint32(r0[jj]) | uint32(r1[jj])<<16
			}
		}
	}
}
