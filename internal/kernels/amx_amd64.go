//go:build amd64 && gc && !purego

package kernels

import (
	"sync"

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

func gemmPackedBF16(m, n, k, kPacked int, a []uint16, lda int, bp []uint16, c []float32, ldc int, accumulate bool) {
	if !amxAvailable() {
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
