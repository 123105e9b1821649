package exact

import (
	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/kernels"
)

// A DecodeKeys with a 16-bit Format stores its keys and values as float16
// or bfloat16 bits in Keys16 and Values16, which halves the bytes a
// decoding step streams. The decoder's products read them in place
// (kernels.GemmNN32F16, GemmNN32BF16), widening each vector in registers:
// no float32 copy of a block is written or read back. The query heads of a
// grouped-query group are the rows of one product, so each cached byte is
// read once per group.
//
// Within a block the keys are in panels of halfPanel keys, each D rows of
// halfPanel (key c's entry t at keyAt16(c, t)), and the values in panels
// of halfPanel columns, each DecodeBlock rows (valueAt16): one product of
// the AVX-512 kernels (64 columns) then reads one contiguous stretch of
// memory. Blocks transposed whole, as the float32 stores were until
// they became row-major, make it read 128 bytes of every 512, which
// measured up to 1.5 times slower from memory.

// halfPanel is the width of a 16-bit store's panels: the AVX-512 kernels'
// block of columns.
const halfPanel = 64

// NewDecodeKeysHalf returns an empty float32 store whose keys and values are
// kept in format f (attn.Float16 or attn.BFloat16): appended values are
// rounded to it, to nearest with ties to even.
func NewDecodeKeysHalf(d, e int, f attn.HalfFormat) *DecodeKeys[float32] {
	return &DecodeKeys[float32]{D: d, E: e, Format: f}
}

// keyAt16 is the index in a 16-bit key block of entry t of its key c.
func (kv *DecodeKeys[T]) keyAt16(c, t int) int {
	return c/halfPanel*kv.D*halfPanel + t*halfPanel + c%halfPanel
}

// valueAt16 is the index in a 16-bit value block of entry t of its value
// c: panel t/halfPanel holds DecodeBlock rows of that panel's width.
func (kv *DecodeKeys[T]) valueAt16(c, t int) int {
	p := t / halfPanel
	return p*DecodeBlock*halfPanel + c*kv.valuePanel(p) + t%halfPanel
}

// valuePanel is the width of value panel p: halfPanel but for the last.
func (kv *DecodeKeys[T]) valuePanel(p int) int { return min(halfPanel, kv.E-p*halfPanel) }

// halfProduct returns the kernel adding A B to C for float32 A and B in
// format f.
func halfProduct(f attn.HalfFormat) func(m, n, k int, a []float32, lda int, b []uint16, ldb int, c []float32, ldc int) {
	if f == attn.BFloat16 {
		return kernels.GemmNN32BF16
	}
	return kernels.GemmNN32F16
}

// halfScores adds to s (rows x cols, row stride scoreStride) the products
// of the rows x D queries q with keys c0..c0+cols-1 of 16-bit block b, one
// panel at a time.
func (kv *DecodeKeys[T]) halfScores(b, c0, cols, rows int, q, s []T) {
	gemm, q32, s32, blk := halfProduct(kv.Format), any(q).([]float32), any(s).([]float32), kv.Keys16[b]
	for c := c0; c < c0+cols; {
		p := c / halfPanel
		end := min(c0+cols, (p+1)*halfPanel)
		gemm(rows, end-c, kv.D, q32, kv.D, blk[kv.keyAt16(c, 0):], halfPanel, s32[c-c0:], scoreStride)
		c = end
	}
}

// halfValues adds to pv (rows x E) the products of the probabilities p
// (rows x cols, row stride scoreStride) with the values of keys
// c0..c0+cols-1 of 16-bit block b, one panel of columns at a time.
func (kv *DecodeKeys[T]) halfValues(b, c0, cols, rows int, p, pv []T) {
	gemm, p32, pv32, blk := halfProduct(kv.Format), any(p).([]float32), any(pv).([]float32), kv.Values16[b]
	for t := 0; t < kv.E; t += halfPanel {
		w := kv.valuePanel(t / halfPanel)
		gemm(rows, w, cols, p32, scoreStride, blk[kv.valueAt16(c0, t):], w, pv32[t:], kv.E)
	}
}
