//go:build amd64 && gc && !purego

package kernels

import "sync"

func gemmTN32(m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	gemmTNLevel(&gemmTNF32AVX512, &gemmF32AVX2, &pool32, m, n, k, a, lda, b, ldb, c, ldc)
}

func gemmTN64(m, n, k int, a []float64, lda int, b []float64, ldb int, c []float64, ldc int) {
	gemmTNLevel(&gemmTNF64AVX512, &gemmF64AVX2, &pool64, m, n, k, a, lda, b, ldb, c, ldc)
}

// gemmTNLevel dispatches C += A^T B: the TN microkernels tn on AVX-512, a
// transposed copy of A and the NN kernels nn on AVX2, else portable Go.
func gemmTNLevel[T float32 | float64](tn, nn *gemmKernels[T], pool *sync.Pool, m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int) {
	switch {
	case level == levelGo || !tnOK(m, n, k, len(a), lda, len(b), ldb, len(c), ldc):
		gemmTNGo(m, n, k, a, lda, b, ldb, c, ldc)
	case level == levelAVX512:
		gemmTNAsm(tn, m, n, k, a, lda, b, ldb, c, ldc)
	default:
		gemmTNViaNN(nn, pool, m, n, k, a, lda, b, ldb, c, ldc)
	}
}

// gemmTNAsm runs the TN microkernels over C in kcBlock slices of k: a kc x
// nr panel of B (read in place) stays in L1 down a column of mr x nr
// blocks, each reading its mr columns of A a row at a time.
func gemmTNAsm[T float32 | float64](g *gemmKernels[T], m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int) {
	for p0 := 0; p0 < k; p0 += kcBlock {
		kc := min(kcBlock, k-p0)
		for j := 0; j < n; j += g.nr {
			kr, tail := g.pick(min(g.nr, n-j))
			for i := 0; i < m; i += g.mr {
				kr[min(g.mr, m-i)-1](kc, &a[p0*lda+i], lda, &b[p0*ldb+j], ldb, &c[i*ldc+j], ldc, tail, 1)
			}
		}
	}
}

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
