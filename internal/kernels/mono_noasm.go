//go:build !amd64 || !gc || purego

package kernels

func monoApplyFast(int) bool { return false }

func monoApply64(y []float64, ldy int, s []float64, nc int, x []float64, ldx, cnt int, parent, vari []int32, r int, h []float64) {
	monoApply64Go(y, ldy, s, nc, x, ldx, cnt, parent, vari, r, h)
}

func monoMomentsFast() bool { return false }

func monoMoments64(mom []float64, e1 int, vt, u []float64, ldu int, parent, vari []int32, r int, h []float64) {
	monoMoments64Go(mom, e1, vt, u, ldu, parent, vari, r, h)
}
