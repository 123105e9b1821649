//go:build amd64 && gc && !purego

package kernels

import (
	"math"
	"sync"
	"unsafe"

	"golang.org/x/sys/cpu"
)

// Dispatch levels, in increasing order of capability.
const (
	levelGo     = iota // portable Go
	levelAVX2          // AVX2 + FMA, 16 YMM registers
	levelAVX512        // AVX-512F, 32 ZMM registers and mask registers
)

var (
	// maxLevel is what this CPU and OS support.
	maxLevel = detectLevel()
	// level is the one in use: maxLevel, unless a test lowers it.
	level = maxLevel
)

func levelName(l int) string {
	return [...]string{"go", "avx2", "avx512"}[l]
}

// detectLevel asks golang.org/x/sys/cpu, which checks both the CPUID
// feature bits and that the OS saves the register state (XCR0): AVX2 needs
// AVX2 and FMA; AVX-512 needs AVX512F on top.
func detectLevel() int {
	switch {
	case !cpu.X86.HasAVX2 || !cpu.X86.HasFMA:
		return levelGo
	case cpu.X86.HasAVX512F:
		return levelAVX512
	}
	return levelAVX2
}

// kern is the signature of every GEMM microkernel: see _asm/main.go.
type kern[T float32 | float64] func(k int, a *T, lda int, b *T, ldb int, c *T, ldc int, tail int, acc int)

// gemmKernels is one microkernel family: mr x nr blocks of C, nr = nv*w.
type gemmKernels[T float32 | float64] struct {
	mr, nr, w int
	full      []kern[T]   // [rows-1]: full nr columns
	part      [][]kern[T] // [vectors-1][rows-1]: last vector masked to tail lanes
	tb        int         // block size of trans
	trans     func(kb int, b *T, ldb int, dst *T, ldd int)
}

// pick returns the kernels for a block of nb <= nr columns and the number
// of lanes of its last vector.
func (g *gemmKernels[T]) pick(nb int) ([]kern[T], int) {
	if nb == g.nr {
		return g.full, g.w
	}
	nv := (nb + g.w - 1) / g.w
	return g.part[nv-1], nb - (nv-1)*g.w
}

// Cache blocking, as in BLIS: the driver loops are
//
//	for each ncBlock columns of C:
//	  for each kcBlock-slice of k:
//	    pack B's kc x nc block into nr-wide panels (NT always, transposing;
//	    NN only for large m, where the copy pays off: else the microkernels
//	    read B in place)
//	    for each mcBlock rows of A:
//	      (copy the mc x kc block of A to a buffer whose row stride does not
//	      alias in L1, when A's stride would)
//	      for each nr columns: for each mr rows: microkernel
//
// so a kc x nr panel of B stays in L1 across a column of microkernels and
// the mc x kc block of A in L2.
const (
	kcBlock = 256
	mcBlock = 192 // multiple of every mr
	ncBlock = 512 // multiple of every nr

	// packNNRows is the least m for which GemmNN packs B.
	packNNRows = 2 * mcBlock
)

func gemmNT32(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, next []float32) {
	if m <= NTInPlaceRows && gemmNTRows(f32NTFamily(), m, n, k, a, lda, b, ldb, c, ldc, next, dot[float32]) {
		return
	}
	gemmNT32PackedNext(m, n, k, a, lda, b, ldb, c, ldc, next)
}

// gemmNT32Packed is gemmNT32 with B packed whatever m, the product
// PackedNT's must match bit for bit.
func gemmNT32Packed(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	gemmNT32PackedNext(m, n, k, a, lda, b, ldb, c, ldc, nil)
}

// gemmNT32PackedNext is gemmNT32Packed that prefetches next on the way.
func gemmNT32PackedNext(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, next []float32) {
	switch {
	case level == levelGo || !ntOK(m, n, k, len(a), lda, len(b), ldb, len(c), ldc):
		gemmNTGo(m, n, k, a, lda, b, ldb, c, ldc)
	case level == levelAVX512:
		gemmAsm(&gemmF32AVX512, &pool32, true, nil, m, n, k, a, lda, b, ldb, c, ldc, next)
	default:
		gemmAsm(&gemmF32AVX2, &pool32, true, nil, m, n, k, a, lda, b, ldb, c, ldc, next)
	}
}

func gemmNT64(m, n, k int, a []float64, lda int, b []float64, ldb int, c []float64, ldc int, next []float64) {
	if m <= multiDotRows64 && level == levelAVX512 && ntOK(m, n, k, len(a), lda, len(b), ldb, len(c), ldc) {
		for i := range m {
			multiDot64(c[i*ldc:i*ldc+n], a[i*lda:i*lda+k], b, ldb)
		}
		return
	}
	if m <= NTInPlaceRows64 && gemmNTRows(f64NTFamily(), m, n, k, a, lda, b, ldb, c, ldc, next, dot[float64]) {
		return
	}
	gemmNT64PackedNext(m, n, k, a, lda, b, ldb, c, ldc, next)
}

// multiDotRows64 is the most rows of A for which GemmNT64 reads B in
// place a row at a time with MultiDot64's kernel (8 keys at a time, one
// vector of A per 8 FMAs that read B from memory) instead of the
// few-row kernels. Alone on one core those took the same time for one
// row and 0.70x for 4 (32768 keys from L3), but in decoding steps on
// both cores (2 key/value heads, 32768 keys, d = 128, best of 100 steps
// of each way alternating, where two copies of the unchanged code
// differed by up to 4%) 1.04-1.08x at one and two rows, 1.00-1.05x at
// four and 0.80-0.88x at eight.
const multiDotRows64 = 4

// gemmNT64Packed is gemmNT32Packed for float64.
func gemmNT64Packed(m, n, k int, a []float64, lda int, b []float64, ldb int, c []float64, ldc int) {
	gemmNT64PackedNext(m, n, k, a, lda, b, ldb, c, ldc, nil)
}

// gemmNT64PackedNext is gemmNT64Packed that prefetches next on the way.
func gemmNT64PackedNext(m, n, k int, a []float64, lda int, b []float64, ldb int, c []float64, ldc int, next []float64) {
	switch {
	case level == levelGo || !ntOK(m, n, k, len(a), lda, len(b), ldb, len(c), ldc):
		gemmNTGo(m, n, k, a, lda, b, ldb, c, ldc)
	case level == levelAVX512:
		gemmAsm(&gemmF64AVX512, &pool64, true, nil, m, n, k, a, lda, b, ldb, c, ldc, next)
	default:
		gemmAsm(&gemmF64AVX2, &pool64, true, nil, m, n, k, a, lda, b, ldb, c, ldc, next)
	}
}

func gemmNN32(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	gemmNNNext32(m, n, k, a, lda, b, ldb, c, ldc, nil, false)
}

// gemmNNNext32 adds A B to C, or with set stores it over C.
func gemmNNNext32(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, next []float32, set bool) {
	switch {
	case level == levelGo || !nnOK(m, n, k, len(a), lda, len(b), ldb, len(c), ldc):
		if set {
			clearRows(m, n, c, ldc)
		}
		gemmNNGo(m, n, k, a, lda, b, ldb, c, ldc)
	case level == levelAVX512:
		gemmAsmSet(&gemmF32AVX512, &pool32, false, set, nil, m, n, k, a, lda, b, ldb, c, ldc, next)
	default:
		gemmAsmSet(&gemmF32AVX2, &pool32, false, set, nil, m, n, k, a, lda, b, ldb, c, ldc, next)
	}
}

func gemmNNAccumulate32(m, n, k int, a []float32, lda int, b []float32, ldb int, scratch []float32, ldc int, dst []float64, ldd int, alphas []float64, next []float32) {
	if level != levelAVX512 || !useStrips || !nnOK(m, n, k, len(a), lda, len(b), ldb, len(scratch), ldc) {
		gemmNNAccumulate32Split(m, n, k, a, lda, b, ldb, scratch, ldc, dst, ldd, alphas, next)
		return
	}
	gemmAsmSetTo(&gemmF32AVX512, &pool32, false, true, nil, m, n, k, a, lda, b, ldb, scratch, ldc, next, &fusedAcc{dst, ldd, alphas})
}

// fusedAcc is where gemmAsmSetTo's last pass over k adds its float32
// results (GemmNNAccumulate32): float64 rows of dst, stride ldd, each
// scaled by its alphas entry first.
type fusedAcc struct {
	dst    []float64
	ldd    int
	alphas []float64
}

func gemmNN64(m, n, k int, a []float64, lda int, b []float64, ldb int, c []float64, ldc int) {
	gemmNNNext64(m, n, k, a, lda, b, ldb, c, ldc, nil)
}

func gemmNNNext64(m, n, k int, a []float64, lda int, b []float64, ldb int, c []float64, ldc int, next []float64) {
	switch {
	case level == levelGo || !nnOK(m, n, k, len(a), lda, len(b), ldb, len(c), ldc):
		gemmNNGo(m, n, k, a, lda, b, ldb, c, ldc)
	case level == levelAVX512:
		gemmAsm(&gemmF64AVX512, &pool64, false, nil, m, n, k, a, lda, b, ldb, c, ldc, next)
	default:
		gemmAsm(&gemmF64AVX2, &pool64, false, nil, m, n, k, a, lda, b, ldb, c, ldc, next)
	}
}

// ntOK and nnOK report whether the assembly may run: a non-empty product
// whose operands lie inside their slices. Anything else goes to the
// portable code, which then does or panics exactly as it always did.
func ntOK(m, n, k, la, lda, lb, ldb, lc, ldc int) bool {
	return m > 0 && n > 0 && k > 0 && lda >= 0 && ldb >= 0 && ldc >= n &&
		la >= (m-1)*lda+k && lb >= (n-1)*ldb+k && lc >= (m-1)*ldc+n
}

func nnOK(m, n, k, la, lda, lb, ldb, lc, ldc int) bool {
	return m > 0 && n > 0 && k > 0 && lda >= 0 && ldb >= 0 && ldc >= n &&
		la >= (m-1)*lda+k && lb >= (k-1)*ldb+n && lc >= (m-1)*ldc+n
}

// gemmAsm computes C = A B^T (nt) or C += A B (!nt) with the microkernels
// of g; see the blocking above. A non-nil pre is B^T already packed (nt
// only): panels of nr rows of B holding all k columns, panel q at
// pre[q*nr*k:], entry (p, jj) at p*nr + jj (see PackedNT); b is then unused.
// next, when not empty, is memory the caller reads soon after: it is
// prefetched into L2 a few lines before each microkernel call.
func gemmAsm[T float32 | float64](g *gemmKernels[T], pool *sync.Pool, nt bool, pre []T, m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int, next []T) {
	gemmAsmSet(g, pool, nt, nt, pre, m, n, k, a, lda, b, ldb, c, ldc, next)
}

// gemmAsmSet is gemmAsm that stores the product over C (set) or adds it
// to C (!set), for either product (nt); NT always sets.
func gemmAsmSet[T float32 | float64](g *gemmKernels[T], pool *sync.Pool, nt, set bool, pre []T, m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int, next []T) {
	gemmAsmSetTo(g, pool, nt, set, pre, m, n, k, a, lda, b, ldb, c, ldc, next, nil)
}

// gemmAsmSetTo is gemmAsmSet that, with fuse (float32 NN with the 6 x 64
// AVX-512 family only), adds the results of the last pass over k to
// fuse.dst as Accumulate32 would: whole strips in the microkernel
// (gemmStripsAccF32AVX512), the rest stored into C first.
func gemmAsmSetTo[T float32 | float64](g *gemmKernels[T], pool *sync.Pool, nt, set bool, pre []T, m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int, next []T, fuse *fusedAcc) {
	var zero T
	size := int(unsafe.Sizeof(zero))
	var pf prefetcher
	if len(next) > 0 {
		calls := ((n + g.nr - 1) / g.nr) * ((k + kcBlock - 1) / kcBlock) * ((m + g.mr - 1) / g.mr)
		pf = newPrefetcher(unsafe.Pointer(&next[0]), len(next)*size, calls)
	}
	packB := pre == nil && (nt || m >= packNNRows)
	// Rows of A whose stride is a multiple of 2 KiB fall into few L1
	// sets; copy A when the copy is reused across enough columns.
	copyA := (lda*size)%2048 == 0 && n > 2*g.nr && m > g.mr
	kcMax := min(kcBlock, k)
	var bbuf, abuf []T
	var bp, ap *[]T
	if packB {
		bp = getBuf[T](pool, kcMax*min(ncBlock, (n+g.nr-1)/g.nr*g.nr))
		bbuf = *bp
	}
	ldA := lda
	if copyA {
		ldA = (kcMax+15)/16*16 + 16
		ap = getBuf[T](pool, min(mcBlock, m)*ldA)
		abuf = *ap
	}
	for j0 := 0; j0 < n; j0 += ncBlock {
		nc := min(ncBlock, n-j0)
		for p0 := 0; p0 < k; p0 += kcBlock {
			kc := min(kcBlock, k-p0)
			acc := 1
			if set && p0 == 0 {
				acc = 0
			}
			if pre != nil {
				// already packed
			} else if nt {
				packNT(g, nc, kc, b[j0*ldb+p0:], ldb, bbuf)
			} else if packB {
				packNN(g, nc, kc, b[p0*ldb+j0:], ldb, bbuf)
			}
			for i0 := 0; i0 < m; i0 += mcBlock {
				i1 := min(i0+mcBlock, m)
				as, ao := a, i0*lda+p0
				if copyA {
					for i := i0; i < i1; i++ {
						copy(abuf[(i-i0)*ldA:(i-i0)*ldA+kc], a[i*lda+p0:i*lda+p0+kc])
					}
					as, ao = abuf, 0
				}
				for j := 0; j < nc; j += g.nr {
					kr, tail := g.pick(min(g.nr, nc-j))
					pb, ld := (*T)(nil), g.nr
					if pre != nil {
						pb = &pre[(j0+j)*k+p0*g.nr]
					} else if packB {
						pb = &bbuf[j*kc]
					} else {
						pb, ld = &b[p0*ldb+j0+j], ldb
					}
					i := i0
					if strips := (i1 - i0) / g.mr; strips > 0 && stripsOK(g, nc-j) {
						// Whole strips of a whole panel in one call.
						ptr, lines := pf.take(strips)
						if fuse != nil && p0+kc == k {
							gemmStripsAccF32AVX512(strips, kc, (*float32)(unsafe.Pointer(&as[ao])), ldA, (*float32)(unsafe.Pointer(pb)), ld,
								(*float32)(unsafe.Pointer(&c[i0*ldc+j0+j])), ldc, acc, ptr, lines, &fuse.dst[i0*fuse.ldd+j0+j], fuse.ldd, &fuse.alphas[i0])
						} else if size == 4 {
							gemmStripsF32AVX512(strips, kc, (*float32)(unsafe.Pointer(&as[ao])), ldA, (*float32)(unsafe.Pointer(pb)), ld,
								(*float32)(unsafe.Pointer(&c[i0*ldc+j0+j])), ldc, acc, ptr, lines)
						} else {
							gemmStripsF64AVX512(strips, kc, (*float64)(unsafe.Pointer(&as[ao])), ldA, (*float64)(unsafe.Pointer(pb)), ld,
								(*float64)(unsafe.Pointer(&c[i0*ldc+j0+j])), ldc, acc, ptr, lines)
						}
						i += strips * g.mr
					}
					for ; i < i1; i += g.mr {
						pf.step()
						rows := min(g.mr, i1-i)
						kr[rows-1](kc, &as[ao+(i-i0)*ldA], ldA, pb, ld, &c[i*ldc+j0+j], ldc, tail, acc)
						if fuse != nil && p0+kc == k {
							cols := min(g.nr, nc-j)
							for r := i; r < i+rows; r++ {
								at, from := r*fuse.ldd+j0+j, r*ldc+j0+j
								accumulate32(fuse.dst[at:at+cols], fuse.alphas[r], any(c[from:from+cols]).([]float32))
							}
						}
					}
				}
			}
		}
	}
	if bp != nil {
		pool.Put(bp)
	}
	if ap != nil {
		pool.Put(ap)
	}
}

// stripsOK reports whether gemmStripsF32AVX512 or gemmStripsF64AVX512
// computes the strips of a panel of cols columns: the AVX-512 families
// (6 x 64 floats, 6 x 32 doubles) and a whole panel.
func stripsOK[T float32 | float64](g *gemmKernels[T], cols int) bool {
	return useStrips && (any(g) == any(&gemmF32AVX512) || any(g) == any(&gemmF64AVX512)) && cols >= g.nr
}

// useStrips turns the strips kernels on; a variable so tests and
// benchmarks can compare.
var useStrips = true

// take returns the next lines of steps calls' share of the prefetch, as
// steps calls of step would prefetch them (nil, 0 when none are left),
// for a kernel that prefetches between strips itself.
func (f *prefetcher) take(steps int) (*byte, int) {
	if f.off >= f.bytes {
		return nil, 0
	}
	l := min(f.each, (f.bytes-f.off+63)/64)
	p := (*byte)(unsafe.Add(f.p, f.off))
	f.off = min(f.bytes, f.off+64*l*steps)
	return p, l
}

// prefetch is PrefetchL2 on the bytes at p.
func prefetch(p unsafe.Pointer, bytes int) {
	prefetchL2((*byte)(p), (bytes+63)/64)
}

// prefetcher spreads the prefetch of a region over calls steps.
type prefetcher struct {
	p                unsafe.Pointer
	off, bytes, each int // each: lines per step
}

func newPrefetcher(p unsafe.Pointer, bytes, calls int) prefetcher {
	lines := (bytes + 63) / 64
	return prefetcher{p: p, bytes: bytes, each: (lines + calls - 1) / max(calls, 1)}
}

// step prefetches the next batch of lines, if any are left.
func (f *prefetcher) step() {
	if f.off >= f.bytes {
		return
	}
	l := min(f.each, (f.bytes-f.off+63)/64)
	prefetchL2((*byte)(unsafe.Add(f.p, f.off)), l)
	f.off += 64 * l
}

// packNN copies B's kc x nc block into panels of nr columns: panel q holds
// columns q*nr.. at dst[q*kc*nr:], entry (p, jj) at p*nr + jj. Columns past
// nc are left as they are: the microkernels mask them off.
func packNN[T float32 | float64](g *gemmKernels[T], nc, kc int, b []T, ldb int, dst []T) {
	nr := g.nr
	for j := 0; j < nc; j += nr {
		nb := min(nr, nc-j)
		panel := dst[j*kc : j*kc+kc*nr]
		for p := range kc {
			copy(panel[p*nr:p*nr+nb], b[p*ldb+j:p*ldb+j+nb])
		}
	}
}

// packNT writes the transpose of B's first nc rows (kc entries each) as
// panels of nr columns: panel q holds B rows q*nr.. at dst[q*kc*nr:], entry
// (p, jj) at p*nr + jj, with rows past nc as zeros.
func packNT[T float32 | float64](g *gemmKernels[T], nc, kc int, b []T, ldb int, dst []T) {
	nr, tb := g.nr, g.tb
	kb := kc / tb
	for j := 0; j < nc; j += nr {
		panel := dst[j*kc : (j+nr)*kc]
		for jj := 0; jj < nr; jj += tb {
			r0 := j + jj
			if r0+tb <= nc {
				if kb > 0 {
					g.trans(kb, &b[r0*ldb], ldb, &panel[jj], nr)
				}
				for r := range tb {
					br := b[(r0+r)*ldb : (r0+r)*ldb+kc]
					for p := kb * tb; p < kc; p++ {
						panel[p*nr+jj+r] = br[p]
					}
				}
				continue
			}
			for r := range tb {
				if r0+r < nc {
					br := b[(r0+r)*ldb : (r0+r)*ldb+kc]
					for p, v := range br {
						panel[p*nr+jj+r] = v
					}
				} else {
					for p := range kc {
						panel[p*nr+jj+r] = 0
					}
				}
			}
		}
	}
}

var pool32, pool64 sync.Pool

// getBuf returns a pooled slice of length n; return it with pool.Put.
func getBuf[T float32 | float64 | uint16 | uint32](pool *sync.Pool, n int) *[]T {
	if p, _ := pool.Get().(*[]T); p != nil && cap(*p) >= n {
		*p = (*p)[:n]
		return p
	}
	s := make([]T, n)
	return &s
}

func expShiftSum32(x []float32, scale, shift float32) float32 {
	switch {
	case len(x) == 0:
		return 0
	case level == levelAVX512:
		return expShiftSumF32AVX512(&x[0], len(x), scale, shift)
	case level == levelAVX2:
		return expShiftSumF32AVX2(&x[0], len(x), scale, shift)
	}
	return expShiftSum32Go(x, scale, shift)
}

func exp2ShiftSum32(x []float32, scale, shift float32) float32 {
	switch {
	case len(x) == 0:
		return 0
	case level == levelAVX512 && hasDQ: // VREDUCEPS
		return exp2ShiftSumF32AVX512(&x[0], len(x), scale, shift)
	case level >= levelAVX2:
		return exp2ShiftSumF32AVX2(&x[0], len(x), scale, shift)
	}
	return exp2ShiftSum32Go(x, scale, shift)
}

// rowsAVX512 reports whether the row-block kernels take rows of cols
// entries: whole ZMM vectors, and VFPCLASS (AVX512DQ) for the scan.
func rowsAVX512(cols int) bool {
	return level == levelAVX512 && hasDQ && cols%16 == 0
}

func maxRows32(s []float32, ld, rows, cols int, out []float32) bool {
	if !rowsAVX512(cols) {
		return maxRows32Go(s, ld, rows, cols, out)
	}
	return maxRowsF32AVX512(&s[0], ld, rows, cols, &out[0])
}

func exp2Rows32(s []float32, ld, rows, cols int, scale float32, shifts, sums []float32) {
	if !rowsAVX512(cols) {
		exp2Rows32Go(s, ld, rows, cols, scale, shifts, sums)
		return
	}
	exp2RowsF32AVX512(&s[0], ld, rows, cols, scale, &shifts[0], &sums[0])
}

func exp2RowsBF16(s []float32, ld, rows, cols int, scale float32, shifts, sums []float32, hi, lo []uint16) {
	switch {
	case !rowsAVX512(cols) || !useBF16:
		exp2RowsBF16Go(s, ld, rows, cols, scale, shifts, sums, hi, lo)
	case lo != nil:
		exp2RowsSplitBF16AVX512(&s[0], ld, rows, cols, scale, &shifts[0], &sums[0], &hi[0], &lo[0])
	default:
		exp2RowsRoundBF16AVX512(&s[0], ld, rows, cols, scale, &shifts[0], &sums[0], &hi[0])
	}
}

func exp2RowsMaxBF16(s []float32, ld, rows, cols int, scale float32, shifts, sums []float32, hi, lo []uint16) {
	switch {
	case !rowsAVX512(cols) || !useBF16:
		exp2RowsMaxBF16Go(s, ld, rows, cols, scale, shifts, sums, hi, lo)
	case lo != nil:
		exp2RowsMaxSplitBF16AVX512(&s[0], ld, rows, cols, scale, &shifts[0], &sums[0], &hi[0], &lo[0])
	default:
		exp2RowsMaxRoundBF16AVX512(&s[0], ld, rows, cols, scale, &shifts[0], &sums[0], &hi[0])
	}
}

func expShiftSum64(x []float64, scale, shift float64) float64 {
	switch {
	case len(x) == 0:
		return 0
	case level == levelAVX512:
		return expShiftSumF64AVX512(&x[0], len(x), scale, shift)
	case level == levelAVX2:
		return expShiftSumF64AVX2(&x[0], len(x), scale, shift)
	}
	return expShiftSum64Go(x, scale, shift)
}

func accumulate32(dst []float64, alpha float64, src []float32) {
	n := len(dst)
	if level == levelGo || n < 4 {
		accumulate32Go(dst, alpha, src)
		return
	}
	body := n &^ 3
	accumulateAVX2(&dst[0], &src[0], body, alpha)
	accumulate32Go(dst[body:], alpha, src[body:])
}

func drainScaled32(dst []float32, add bool, scale float64, sum []float64, part []float32) {
	a := 0
	if add {
		a = 1
	}
	body := 0
	switch {
	case level == levelAVX512 && len(dst) >= 16:
		body = len(dst) &^ 15
		drainScaledAVX512(&dst[0], &sum[0], &part[0], body, scale, a)
	case level == levelAVX2 && len(dst) >= 8:
		body = len(dst) &^ 7
		drainScaledAVX2(&dst[0], &sum[0], &part[0], body, scale, a)
	}
	drainScaled32Go(dst[body:], add, scale, sum[body:], part[body:])
}

func max32(x []float32) float32 {
	if level == levelGo || len(x) < 8 {
		return maxGo(x)
	}
	var m float32
	var nan bool
	if body := len(x) &^ 15; level == levelAVX512 && hasDQ && body > 0 {
		m, nan, _ = maxF32AVX512(&x[0], body)
		if rest := len(x) - body; rest > 0 {
			// At least 8 elements from the tail's start, overlapping the
			// body when the tail is shorter: harmless for a maximum.
			from := min(body, len(x)-8)
			m2, nan2 := maxF32AVX2(&x[from], len(x)-from)
			m, nan = max(m, m2), nan || nan2
		}
	} else {
		m, nan = maxF32AVX2(&x[0], len(x))
	}
	if nan {
		return float32(math.NaN())
	}
	if m == 0 { // the max builtin prefers +0 to -0; VMAXPS does not
		return maxGo(x)
	}
	return m
}

func finite32(x []float32) bool {
	body := len(x) &^ 7
	if level == levelGo || body == 0 {
		return finiteGo(x)
	}
	return finiteF32AVX2(&x[0], body) && finiteGo(x[body:])
}

func finite64(x []float64) bool {
	body := len(x) &^ 3
	if level == levelGo || body == 0 {
		return finiteGo(x)
	}
	return finiteF64AVX2(&x[0], body) && finiteGo(x[body:])
}

func max64(x []float64) float64 {
	if level == levelGo || len(x) < 4 {
		return maxGo(x)
	}
	var m float64
	var nan bool
	if body := len(x) &^ 7; level == levelAVX512 && hasDQ && body > 0 {
		m, nan, _ = maxF64AVX512(&x[0], body)
		if rest := len(x) - body; rest > 0 {
			from := min(body, len(x)-4) // as in max32
			m2, nan2 := maxF64AVX2(&x[from], len(x)-from)
			m, nan = max(m, m2), nan || nan2
		}
	} else {
		m, nan = maxF64AVX2(&x[0], len(x))
	}
	if nan {
		return math.NaN()
	}
	if m == 0 {
		return maxGo(x)
	}
	return m
}

// family returns the GEMM microkernels of level l for T, or nil for the
// portable level.
func family[T float32 | float64](l int) *gemmKernels[T] {
	var zero T
	switch any(zero).(type) {
	case float32:
		switch l {
		case levelAVX512:
			return any(&gemmF32AVX512).(*gemmKernels[T])
		case levelAVX2:
			return any(&gemmF32AVX2).(*gemmKernels[T])
		}
	case float64:
		switch l {
		case levelAVX512:
			return any(&gemmF64AVX512).(*gemmKernels[T])
		case levelAVX2:
			return any(&gemmF64AVX2).(*gemmKernels[T])
		}
	}
	return nil
}

func pool[T float32 | float64]() *sync.Pool {
	var zero T
	if _, ok := any(zero).(float32); ok {
		return &pool32
	}
	return &pool64
}

// packedSetup picks the panel width of p.lvl's kernels and sizes the
// panels; at the portable level B stays in place.
func packedSetup[T float32 | float64](p *PackedNT[T]) {
	g := family[T](p.lvl)
	if g == nil {
		return
	}
	p.nr = g.nr
	size := (p.n + g.nr - 1) / g.nr * g.nr * p.k
	if cap(p.data) < size {
		p.data = make([]T, size)
	}
	p.data = p.data[:size]
}

// packedPack transposes rows j0..j1-1 into their panels: the same panels
// GemmNT builds per call, here with all k columns at once.
func packedPack[T float32 | float64](p *PackedNT[T], j0, j1 int) {
	g := family[T](p.lvl)
	packNT(g, j1-j0, p.k, p.b[j0*p.ldb:], p.ldb, p.data[j0*p.k:])
}

// packedGemm runs the microkernels on the packed panels; it returns false
// for arguments the assembly does not take (empty products, short slices),
// which the caller sends to the portable code.
func packedGemm[T float32 | float64](p *PackedNT[T], m, j0, nb int, a []T, lda int, c []T, ldc int, next []T) bool {
	k := p.k
	if !ntOK(m, nb, k, len(a), lda, (nb-1)*k+k, k, len(c), ldc) {
		return false
	}
	gemmAsm(family[T](p.lvl), pool[T](), true, p.data[j0*k:], m, nb, k, a, lda, nil, 0, c, ldc, next)
	return true
}

func softmaxGrad64(s, ds []float64, scale, lse, delta float64) {
	if level != levelAVX512 {
		softmaxGrad64Go(s, ds, scale, lse, delta)
		return
	}
	softmaxGradF64AVX512(&s[0], &ds[0], len(s), scale, lse, delta)
}

func softmaxGradRows32(s, ds []float32, ld, rows, cols int, scale float64, lse, delta []float64) {
	body := cols // the columns the assembly takes: on AVX2 whole vectors
	if level == levelAVX2 {
		body = cols &^ 7
	}
	if level == levelGo || body == 0 {
		softmaxGradRows32Go(s, ds, ld, rows, cols, scale, lse, delta)
		return
	}
	chi, clo := split32(scale * math.Log2E)
	// Runs of rows whose lse the assembly takes go to it in one call; a
	// row with a larger (or non-finite) lse takes the portable path, as
	// accurate.
	for i := 0; i < rows; {
		j := i
		for j < rows && math.Abs(lse[j]) < softmaxGradMaxLSE {
			j++
		}
		switch {
		case j > i && level == levelAVX512:
			softmaxGradRowsF32AVX512(&s[i*ld], &ds[i*ld], ld, j-i, body, chi, clo, &lse[i], &delta[i])
		case j > i: // direct calls: a function value would make lse escape
			softmaxGradRowsF32AVX2(&s[i*ld], &ds[i*ld], ld, j-i, body, chi, clo, &lse[i], &delta[i])
		}
		if j < rows {
			softmaxGradRows32Go(s[j*ld:], ds[j*ld:], ld, 1, body, scale, lse[j:], delta[j:])
			j++
		}
		i = j
	}
	if body < cols { // AVX2: the last columns of every row
		softmaxGradRows32Go(s[body:], ds[body:], ld, rows, cols-body, scale, lse, delta)
	}
}

// split32 returns v as hi + lo, both float32: hi = float32(v), lo the
// rest rounded, so hi + lo is v within 2^-48 |v|.
func split32(v float64) (hi, lo float32) {
	hi = float32(v)
	return hi, float32(v - float64(hi))
}

// softmaxGradMaxLSE bounds the |lse| softmaxGradRowsF32AVX512 takes: its
// correction c_lo x - L_lo, added to the reduced argument after k is
// rounded, is at most about 2^-24 (|t| + 2 |L|), so below 2^18 it moves
// the polynomial's argument by at most 0.03 past [-1/2, 1/2]. Beyond,
// the float64 argument of the portable path keeps the result right
// (logits that large come from queries and keys scaled far from
// attention's usual range).
const softmaxGradMaxLSE = 1 << 18

// hasDQ is AVX512DQ, for VFPCLASS in the AVX-512 max and VREDUCEPS in the
// AVX-512 base-2 exponentials (without it they run on AVX2).
var hasDQ = maxLevel == levelAVX512 && cpu.X86.HasAVX512DQ

func maxFinite32(x []float32) (float32, bool) {
	body := len(x) &^ 15
	if level != levelAVX512 || !hasDQ || body == 0 {
		return max32(x), finite32(x)
	}
	m, nan, fin := maxF32AVX512(&x[0], body)
	if rest := x[body:]; len(rest) > 0 {
		from := min(body, len(x)-8) // as in max32
		m2, nan2 := maxF32AVX2(&x[from], len(x)-from)
		m, nan, fin = max(m, m2), nan || nan2, fin && finiteGo(rest)
	}
	switch {
	case nan:
		return float32(math.NaN()), false
	case m == 0:
		return maxGo(x), fin
	}
	return m, fin
}

func maxFinite64(x []float64) (float64, bool) {
	body := len(x) &^ 7
	if level != levelAVX512 || !hasDQ || body == 0 {
		return max64(x), finite64(x)
	}
	m, nan, fin := maxF64AVX512(&x[0], body)
	if rest := x[body:]; len(rest) > 0 {
		from := min(body, len(x)-4)
		m2, nan2 := maxF64AVX2(&x[from], len(x)-from)
		m, nan, fin = max(m, m2), nan || nan2, fin && finiteGo(rest)
	}
	switch {
	case nan:
		return math.NaN(), false
	case m == 0:
		return maxGo(x), fin
	}
	return m, fin
}
