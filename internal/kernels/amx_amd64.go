//go:build amd64 && gc && !purego

package kernels

import (
	"sync"
	"unsafe"

	"golang.org/x/sys/cpu"
)

var (
	// amxReady says, once, whether the CPU has AMX-TILE and AMX-BF16
	// (CPUID, through golang.org/x/sys/cpu, which GODEBUG=cpu.amxtile=off
	// also turns off) and the OS grants this process the tile state
	// (amxPermit). Asked on first use, not at start-up, so programs that
	// never multiply bfloat16 tiles never enlarge their signal frames.
	amxReady = sync.OnceValue(func() bool {
		return cpu.X86.HasAMXTile && cpu.X86.HasAMXBF16 && amxPermit()
	})
	// amxOff, set by tests, sends GemmPackedBF16 to portable Go.
	amxOff bool
)

func amxAvailable() bool { return !amxOff && amxReady() }

func packedBF16Fast() bool { return amxAvailable() || bf16Dot() }

func gemmPackedBF16(m, n, k, kPacked int, a []uint16, lda int, bp []uint16, c []float32, ldc int, accumulate bool) {
	switch {
	case amxAvailable():
	case bf16Dot():
		gemmPackedBF16Dot(m, n, k, kPacked, a, lda, bp, c, ldc, accumulate)
		return
	default:
		gemmPackedBF16Go(m, n, k, kPacked, a, lda, bp, c, ldc, accumulate)
		return
	}
	ks := roundUp(k, amxDepth) / amxDepth
	panel := roundUp(kPacked, amxDepth) * amxCols // values per packed panel
	if k%amxDepth != 0 {
		// A's rows are read 32 values at a time: copy them, zero-padded.
		kp := ks * amxDepth
		pa := make([]uint16, m*kp)
		for i := range m {
			copy(pa[i*kp:i*kp+k], a[i*lda:i*lda+k])
		}
		a, lda = pa, kp
	}
	mFull, nFull := m/amxCols*amxCols, n/amxCols*amxCols
	if mFull > 0 && nFull > 0 {
		amxGemm(mFull/amxCols, nFull/amxCols, ks, a, lda, bp, panel, c, ldc, accumulate)
	}
	if nFull < n && mFull > 0 {
		// The last, partial panel: through a 16-column buffer.
		t := make([]float32, mFull*amxCols)
		edge(mFull, n-nFull, c[nFull:], ldc, t, amxCols, accumulate, func() {
			amxGemm(mFull/amxCols, 1, ks, a, lda, bp[nFull/amxCols*panel:], panel, t, amxCols, accumulate)
		})
	}
	if mFull < m {
		// The last, partial row tile: A and C through buffers of 16 rows.
		kp, np := ks*amxDepth, roundUp(n, amxCols)
		ta := make([]uint16, amxCols*kp)
		for i := mFull; i < m; i++ {
			copy(ta[(i-mFull)*kp:(i-mFull)*kp+k], a[i*lda:i*lda+k])
		}
		t := make([]float32, amxCols*np)
		edge(m-mFull, n, c[mFull*ldc:], ldc, t, np, accumulate, func() {
			amxGemm(1, np/amxCols, ks, ta, kp, bp, panel, t, np, accumulate)
		})
	}
}

// gemmPackedBF16Dot is GemmPackedBF16 on VDPBF16PS: the microkernels of
// gemmPackedBF16AVX512 read two 16-column panels of the packed layout as
// they are (a panel's rows of pairs are 64 bytes apart, the panels
// panel values apart), A in place, a pair of values at a time.
func gemmPackedBF16Dot(m, n, k, kPacked int, a []uint16, lda int, bp []uint16, c []float32, ldc int, accumulate bool) {
	if k%2 == 1 {
		// A's rows are read two values at a time: copy them, zero-padded.
		// The zero meets B's row k: zero beyond the packed depth, and
		// finite within it (GemmPackedBF16Prefix asks that).
		pa := make([]uint16, m*(k+1))
		for i := range m {
			copy(pa[i*(k+1):i*(k+1)+k], a[i*lda:i*lda+k])
		}
		a, lda, k = pa, k+1, k+1
	}
	g := &gemmPackedBF16AVX512
	panel := roundUp(kPacked, amxDepth) * amxCols / 2 // pairs per packed panel
	pairs := unsafe.Slice((*uint32)(unsafe.Pointer(&bp[0])), len(bp)/2)
	acc := 0
	if accumulate {
		acc = 1
	}
	// Row blocks of nearly equal size: 64 rows as 11, 11, 11, 11, 10, 10
	// rather than five of 12 and one of 4, whose two loads of B serve
	// only eight products per step.
	blocks := (m + g.mr - 1) / g.mr
	for j0 := 0; j0 < n; j0 += g.nr {
		kern, tail := g.pick(min(g.nr, n-j0))
		b := &pairs[j0/amxCols*panel]
		for x, i0 := 0, 0; x < blocks; x++ {
			rows := (m - i0) / (blocks - x)
			kern[rows-1](k/2, &a[i0*lda], lda, b, panel, &c[i0*ldc+j0], ldc, tail, acc)
			i0 += rows
		}
	}
}

// asmPanels is how many of the n rows (PackBF16NT) or columns (PackBF16NN)
// of B the packing assembly covers: its whole panels of 16, or none
// without AVX-512, for k < 2 (no whole pair) or where dst is not 4-byte
// aligned (the assembly stores pairs as uint32).
func asmPanels(dst []uint16, n, k int) int {
	full := n / amxCols * amxCols
	if level != levelAVX512 || k < 2 || full == 0 || uintptr(unsafe.Pointer(&dst[0]))%4 != 0 {
		return 0
	}
	return full
}

// panelPairs is panel j0/16 of the packed layout for depth k, as pairs.
func panelPairs(dst []uint16, j0, k int) *uint32 {
	ks := roundUp(k, amxDepth) / amxDepth
	panel := dst[j0/amxCols*ks*amxTile:][:ks*amxTile]
	return (*uint32)(unsafe.Pointer(&panel[0]))
}

// packBF16NTPanels packs, with packNTBF16AVX512, the whole pairs (the
// first k/2 pair rows) of PackBF16NT's panels of 16 rows of B, and returns
// how many rows it packed (asmPanels).
func packBF16NTPanels(dst []uint16, n, k int, b []uint16, ldb int) int {
	full := asmPanels(dst, n, k)
	if full > 0 {
		_ = b[(full-1)*ldb+k-1]
	}
	for j0 := 0; j0 < full; j0 += amxCols {
		packNTBF16AVX512(k/2, &b[j0*ldb], ldb, panelPairs(dst, j0, k))
	}
	return full
}

// packBF16NNPanels packs, with packPairsBF16AVX512, the whole pairs (the
// first k/2 pair rows) of PackBF16NN's panels of 16 columns of B, and
// returns how many columns it packed (asmPanels).
func packBF16NNPanels(dst []uint16, k, n int, b []uint16, ldb int) int {
	full := asmPanels(dst, n, k)
	if full > 0 {
		_ = b[(k/2*2-1)*ldb+full-1]
	}
	for j0 := 0; j0 < full; j0 += amxCols {
		packPairsBF16AVX512(k/2, &b[j0], ldb, panelPairs(dst, j0, k), amxCols, 1)
	}
	return full
}

// edge runs f, which computes into the buffer t (row stride ldt), for the
// rows x cols block of C at c: C's entries are copied into t first when
// accumulating, and the result back.
func edge(rows, cols int, c []float32, ldc int, t []float32, ldt int, accumulate bool, f func()) {
	if accumulate {
		for i := range rows {
			copy(t[i*ldt:i*ldt+cols], c[i*ldc:i*ldc+cols])
		}
	}
	f()
	for i := range rows {
		copy(c[i*ldc:i*ldc+cols], t[i*ldt:i*ldt+cols])
	}
}

// amxGemm runs the assembly on mt x nt full tiles of C: A has ks*32
// readable values per row, B's panels are panel values apart and hold at
// least ks tiles.
func amxGemm(mt, nt, ks int, a []uint16, lda int, bp []uint16, panel int, c []float32, ldc int, accumulate bool) {
	_ = a[((mt*amxCols)-1)*lda+ks*amxDepth-1]
	_ = bp[(nt-1)*panel+ks*amxTile-1]
	_ = c[(mt*amxCols-1)*ldc+nt*amxCols-1]
	acc := 0
	if accumulate {
		acc = 1
	}
	amxGemmBF16(mt, nt, ks, &a[0], 2*lda, 2*amxCols*lda, &bp[0], 2*panel, &c[0], 4*ldc, 4*amxCols*ldc, acc)
}

func splitBF16(hi, lo []uint16, src []float32) {
	n := 0
	if useBF16 {
		n = len(src) / 64 * 64
		if n > 0 {
			splitBF16AVX512(&hi[0], &lo[0], &src[0], n)
		}
	}
	splitBF16Go(hi[n:], lo[n:], src[n:])
}
