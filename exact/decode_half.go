package exact

import (
	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/kernels"
)

// A DecodeKeys with a 16-bit Format stores its keys and values as float16
// or bfloat16 bits in Keys16 and Values16 (same layout as Keys and Values),
// which halves the bytes a decoding step streams. The decoder's products
// read them in place (kernels.GemmNN32F16, GemmNN32BF16), widening each
// vector in registers: no float32 copy of a block is written or read back.
// The query heads of a grouped-query group are the rows of one product, so
// each cached byte is read once per group.

// NewDecodeKeysHalf returns an empty float32 store whose keys and values are
// kept in format f (attn.Float16 or attn.BFloat16): appended values are
// rounded to it, to nearest with ties to even.
func NewDecodeKeysHalf(d, e int, f attn.HalfFormat) *DecodeKeys[float32] {
	return &DecodeKeys[float32]{D: d, E: e, Format: f}
}

// halfProduct returns the kernel adding A B to C for float32 A and B in
// format f.
func halfProduct(f attn.HalfFormat) func(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int) {
	if f == attn.BFloat16 {
		return kernels.GemmNN32BF16
	}
	return kernels.GemmNN32F16
}

// halfScores adds to s (rows x cols, row stride scoreStride) the products
// of the rows x D queries q with keys c0..c0+cols-1 of 16-bit block b.
func (kv *DecodeKeys[T]) halfScores(b, c0, cols, rows int, q, s []T) {
	halfProduct(kv.Format)(rows, cols, kv.D, any(q).([]float32), kv.D, kv.Keys16[b][c0:], DecodeBlock,
		any(s).([]float32), scoreStride)
}

// halfValues adds to pv (rows x E) the products of the probabilities p
// (rows x cols, row stride scoreStride) with the values of keys
// c0..c0+cols-1 of 16-bit block b.
func (kv *DecodeKeys[T]) halfValues(b, c0, cols, rows int, p, pv []T) {
	halfProduct(kv.Format)(rows, kv.E, cols, any(p).([]float32), scoreStride, kv.Values16[b][c0*kv.E:], kv.E,
		any(pv).([]float32), kv.E)
}
