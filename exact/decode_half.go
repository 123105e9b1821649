package exact

import "github.com/fastattn/fastattn/attn"

// A DecodeKeys with a 16-bit Format stores its keys and values as float16
// or bfloat16 bits in Keys16 and Values16 (same layout as Keys and Values),
// which halves the bytes a decoding step streams. The decoder widens each
// block to float32 in a worker's scratch (SIMD conversions) and runs the
// float32 kernels on it.

// NewDecodeKeysHalf returns an empty float32 store whose keys and values are
// kept in format f (attn.Float16 or attn.BFloat16): appended values are
// rounded to it, to nearest with ties to even.
func NewDecodeKeysHalf(d, e int, f attn.HalfFormat) *DecodeKeys[float32] {
	return &DecodeKeys[float32]{D: d, E: e, Format: f}
}

// widenBlock returns the float32 keys (D x DecodeBlock, columns c0..c0+cols-1
// filled) and values (rows c0..c0+cols-1 of E filled) of 16-bit block b, in
// the scratch kt and vt.
func (kv *DecodeKeys[T]) widenBlock(b, c0, cols int, kt, vt []float32) {
	k16, v16 := kv.Keys16[b], kv.Values16[b]
	for t := range kv.D {
		widen(kv.Format, kt[t*DecodeBlock+c0:t*DecodeBlock+c0+cols], k16[t*DecodeBlock+c0:t*DecodeBlock+c0+cols])
	}
	widen(kv.Format, vt[c0*kv.E:(c0+cols)*kv.E], v16[c0*kv.E:(c0+cols)*kv.E])
}
