//go:build amd64 && gc && !purego

package kernels

func monoApplyFast(nc int) bool {
	return level >= levelAVX512 && nc >= 1 && nc <= len(monoApplyF64AVX512)
}

func monoApply64(y []float64, ldy int, s []float64, nc int, x []float64, ldx, cnt int, parent, vari []int32, r int, h []float64) {
	if !monoApplyFast(nc) {
		monoApply64Go(y, ldy, s, nc, x, ldx, cnt, parent, vari, r, h)
		return
	}
	m1, m2 := 1<<min(cnt, 8)-1, 1<<max(cnt-8, 0)-1
	monoApplyF64AVX512[nc-1](&y[0], ldy, &s[0], &x[0], ldx, &parent[0], &vari[0], r, &h[0], m1, m2)
}

func monoMomentsFast() bool { return level >= levelAVX512 }

func monoMoments64(mom []float64, e1 int, vt, u []float64, ldu int, parent, vari []int32, r int, h []float64) {
	if !monoMomentsFast() {
		monoMoments64Go(mom, e1, vt, u, ldu, parent, vari, r, h)
		return
	}
	monoMomentsF64AVX512(&mom[0], e1, &vt[0], &u[0], ldu, &parent[0], &vari[0], r, &h[0])
}
