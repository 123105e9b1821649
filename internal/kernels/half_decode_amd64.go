//go:build amd64 && gc && !purego

package kernels

// kernHalfB is the signature of the 16-bit-B microkernels (see
// _asm/half_decode.go): the GEMM microkernels' frame with B in 16-bit
// elements, ldb counting them.
type kernHalfB func(k int, a *float32, lda int, b *uint16, ldb int, c *float32, ldc int, tail int, acc int)

// halfBKernels is one family of them: mr x nr blocks of C, nr = nv*w.
// part is nil for AVX2, whose kernels cover whole vectors only.
type halfBKernels struct {
	mr, nr, w int
	full      []kernHalfB   // [rows-1]: full nr columns
	part      [][]kernHalfB // [vectors-1][rows-1]: last vector masked to tail lanes
}

// halfBFamily returns the kernels for the current level and format, or nil
// where the CPU lacks an instruction they need (AVX512BW's 512-bit
// VPMOVZXWD for bfloat16, F16C for float16 on AVX2).
func halfBFamily(bf bool) *halfBKernels {
	switch {
	case level == levelAVX512 && bf && hasBW:
		return &gemm32xBF16AVX512
	case level == levelAVX512 && !bf:
		return &gemm32xF16AVX512
	case level >= levelAVX2 && bf:
		return &gemm32xBF16AVX2
	case level >= levelAVX2 && hasF16C:
		return &gemm32xF16AVX2
	}
	return nil
}

func gemmNN32Half(bf bool, m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int) {
	g := halfBFamily(bf)
	if g == nil || !nnOK(m, n, k, len(a), lda, len(b), ldb, len(c), ldc) {
		gemmNN32HalfGo(bf, m, n, k, a, lda, b, ldb, c, ldc)
		return
	}
	// Column blocks of nr (the last masked, or left to the portable code
	// where there are no masked kernels), each over every row block: a
	// block's k rows of B are read once per mr rows of A.
	for j := 0; j < n; j += g.nr {
		nb := min(g.nr, n-j)
		kr, tail := g.full, g.w
		if nb < g.nr {
			if g.part == nil {
				gemmNN32HalfGo(bf, m, nb, k, a, lda, b[j:], ldb, c[j:], ldc)
				break
			}
			nv := (nb + g.w - 1) / g.w
			kr, tail = g.part[nv-1], nb-(nv-1)*g.w
		}
		for i := 0; i < m; i += g.mr {
			kr[min(g.mr, m-i)-1](k, &a[i*lda], lda, &b[j], ldb, &c[i*ldc+j], ldc, tail, 1)
		}
	}
}
