//go:build !amd64 || !gc || purego

package kernels

func columnRange32(x []float32, d int, lo, hi []float32) { columnRangeGo(x, d, 0, d, lo, hi) }

func columnMaxAbsBits32(x []float32, d int, m []uint32) { columnMaxAbsBitsGo(x, d, 0, d, m) }
