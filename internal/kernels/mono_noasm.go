//go:build !amd64 || !gc || purego

package kernels

func monoApplyFast(int) bool { return false }

func monoApply64(y []float64, ldy int, s []float64, nc int, x []float64, ldx, cnt int, parent, vari []int32, r int, h []float64) {
	monoApply64Go(y, ldy, s, nc, x, ldx, cnt, parent, vari, r, h)
}
