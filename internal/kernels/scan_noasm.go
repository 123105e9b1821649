//go:build !amd64 || !gc || purego

package kernels

func columnRange32(x []float32, d int, lo, hi []float32) { columnRangeGo(x, d, 0, d, lo, hi) }

func columnRange64(x []float64, d int, lo, hi []float64) { columnRangeGo(x, d, 0, d, lo, hi) }

func columnMaxAbsBits32(x []float32, d int, m []uint32) { columnMaxAbsBitsGo(x, d, 0, d, m) }

func columnMaxAbsBits64(x []float64, d int, m []uint64) { columnMaxAbsBitsGo(x, d, 0, d, m) }

func columnMaxAbsBits16(x []uint16, d int, colMax []uint16, least uint16) uint16 {
	return columnMaxAbsBits16Go(x, d, 0, d, colMax, least)
}
