//go:build amd64 && gc && !purego

package kernels

import (
	"sync"
	"unsafe"
)

func gemmTN32(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	tnSetup.Do(chooseTNModes)
	gemmTNLevel(&gemmTNF32AVX512, &gemmF32AVX2, &pool32, tnInPlace32, m, n, k, a, lda, b, ldb, c, ldc)
}

func gemmTN64(m, n, k int, a []float64, lda int, b []float64, ldb int, c []float64, ldc int) {
	tnSetup.Do(chooseTNModes)
	gemmTNLevel(&gemmTNF64AVX512, &gemmF64AVX2, &pool64, false, m, n, k, a, lda, b, ldb, c, ldc)
}

// tnInPlace32 is whether float32 TN products read B in place, k whole,
// instead of copying it into panels of tnPanelBytes (see gemmTNAsm): on
// cores whose L1 data cache holds 48 KiB or more (see chooseTNModes). On a
// 2-vCPU Intel Xeon with AMX (48 KiB L1, 2 MiB L2), a 256 x 128 x 192
// product in cache (dK += dS^T Q at d = 128) took 62.1 us at best read
// in place and 67.1 us through 16 KiB panels, and whole float32 backward
// calls (n = 16384, calls alternating in one process) took 0.979-0.985
// of the time (median pairs) at d = 64 and 128. float64 read in place
// did not gain (0.991 on the median, 1.020 at best) and takes the larger
// panels instead. On the Skylake-class core with a 32 KiB L1 for which
// the panels were made, reading in place was the slower (see
// tnPanelBytes). A variable, as tnPanelBytes, so that tests can run
// every mode.
var tnInPlace32 bool

// gemmTNLevel dispatches C += A^T B: the TN microkernels tn on AVX-512
// (B read in place if inPlace, else through packed panels), a transposed
// copy of A and the NN kernels nn on AVX2, else portable Go.
func gemmTNLevel[T float32 | float64](tn, nn *gemmKernels[T], pool *sync.Pool, inPlace bool, m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int) {
	switch {
	case level == levelGo || !tnOK(m, n, k, len(a), lda, len(b), ldb, len(c), ldc):
		gemmTNGo(m, n, k, a, lda, b, ldb, c, ldc)
	case level == levelAVX512 && inPlace:
		gemmTNInPlace(tn, m, n, k, a, lda, b, ldb, c, ldc)
	case level == levelAVX512:
		gemmTNAsm(tn, pool, m, n, k, a, lda, b, ldb, c, ldc)
	default:
		gemmTNViaNN(nn, pool, m, n, k, a, lda, b, ldb, c, ldc)
	}
}

// tnPanelBytes bounds the packed panel of B that gemmTNAsm keeps in L1
// down a column of C's blocks: half of the L1, with room for the rows of
// A, as 16 KiB of a 32 KiB L1 or 24 KiB of 48 KiB or more. Read in place,
// a 192-row float32 panel (48 KiB, and at d = 128 a 512-byte row stride
// that maps its lines to half of L1's sets) came back from L2 for every
// block: on a 32 KiB-L1 Skylake, packed 16 KiB panels made the backward
// 2-4% faster (median of paired calls), 24 KiB ones no faster than 16.
// On the 48 KiB-L1 Xeon of tnInPlace32, 24 KiB panels hold the float64
// backward's 96 query rows whole (16 KiB split them in two): whole
// float64 backward calls at d = 128, n = 16384 took 0.981-0.998 of the
// time on the median pair in four runs of alternating calls, and at
// d = 64 0.985-1.017 in three.
var tnPanelBytes = 16 << 10

// tnSetup runs chooseTNModes once, at the first TN product rather than
// at start-up: reading sysfs takes about 65 us, which a program that
// never runs a backward pass need not pay.
var tnSetup sync.Once

// chooseTNModes sets tnPanelBytes and tnInPlace32 from the L1 data
// cache's size.
func chooseTNModes() {
	if l1DataBytes() >= 48<<10 {
		tnPanelBytes, tnInPlace32 = 24<<10, true
	}
}

// copyRowBytes is the row that copyRows256AVX512 copies: a whole panel
// row of the AVX-512 TN families (64 float32, 32 float64).
const copyRowBytes = 256

// gemmTNAsm runs the TN microkernels over C in slices of k, each a
// kc x nr panel of B packed into a contiguous buffer that stays in L1
// down a column of mr x nr blocks, each reading its mr columns of A a row
// at a time.
func gemmTNAsm[T float32 | float64](g *gemmKernels[T], pool *sync.Pool, m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int) {
	kcMax := max(tnPanelBytes/(g.nr*int(unsafe.Sizeof(T(0)))), 1)
	parts := (k + kcMax - 1) / kcMax
	step := (k + parts - 1) / parts // k in equal slices
	bp := getBuf[T](pool, step*g.nr)
	panel := *bp
	for j := 0; j < n; j += g.nr {
		nb := min(g.nr, n-j)
		kr, tail := g.pick(nb)
		for p0 := 0; p0 < k; p0 += step {
			kc := min(step, k-p0)
			// Whole rows by vector moves: memmove's call per row took
			// 3.4-4.2% of backward profiles at d = 128, the moves 1.2-3%.
			if size := int(unsafe.Sizeof(T(0))); nb*size == copyRowBytes {
				copyRows256AVX512((*byte)(unsafe.Pointer(&panel[0])), (*byte)(unsafe.Pointer(&b[p0*ldb+j])), ldb*size, kc)
			} else {
				for p := range kc {
					copy(panel[p*g.nr:p*g.nr+nb], b[(p0+p)*ldb+j:(p0+p)*ldb+j+nb])
				}
			}
			for i := 0; i < m; i += g.mr {
				kr[min(g.mr, m-i)-1](kc, &a[p0*lda+i], lda, &panel[0], g.nr, &c[i*ldc+j], ldc, tail, 1)
			}
		}
	}
	pool.Put(bp)
}

// gemmTNInPlace runs the TN microkernels over C with B read in place, in
// slices of up to tnInPlaceK rows of k: each mr x nr block of C is loaded
// and stored once a slice, where gemmTNAsm's panels of tnPanelBytes split
// k more finely (at 192 rows, three for float32) and copy B first.
func gemmTNInPlace[T float32 | float64](g *gemmKernels[T], m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int) {
	parts := (k + tnInPlaceK - 1) / tnInPlaceK
	step := (k + parts - 1) / parts // k in equal slices
	for j := 0; j < n; j += g.nr {
		kr, tail := g.pick(min(g.nr, n-j))
		for p0 := 0; p0 < k; p0 += step {
			kc := min(step, k-p0)
			for i := 0; i < m; i += g.mr {
				kr[min(g.mr, m-i)-1](kc, &a[p0*lda+i], lda, &b[p0*ldb+j], ldb, &c[i*ldc+j], ldc, tail, 1)
			}
		}
	}
}

// tnInPlaceK is the most rows of k that gemmTNInPlace gives one kernel
// call, so that a slice of B (tnInPlaceK x 64 float32, 48 KiB) is read
// from memory once and from cache by the rest of a column's blocks. With
// k whole, a product over k = 4096 rows (a linear layer's weight gradient
// over 4096 tokens) read B's whole column from L3 for every block: on one
// core of a 2-vCPU Xeon with AMX, 38-72 GFLOP/s against 122-155 in
// slices of 192 (BenchmarkGemmTNLongK); slices of 128 and 256, tried in a
// throw-away benchmark, did about as well. The backward pass's k is a
// query tile, at most this, and so one slice: its products are unchanged.
// A variable so that the benchmark can compare it with k whole.
var tnInPlaceK = 192

// gemmTNViaNN transposes A into a pooled buffer and runs the NN driver
// of g: the levels without TN microkernels.
func gemmTNViaNN[T float32 | float64](g *gemmKernels[T], pool *sync.Pool, m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int) {
	bp := getBuf[T](pool, m*k)
	at := *bp
	for p := range k {
		for i, x := range a[p*lda : p*lda+m] {
			at[i*k+p] = x
		}
	}
	gemmAsm(g, pool, false, nil, m, n, k, at, k, b, ldb, c, ldc, nil)
	pool.Put(bp)
}
