package exact

import (
	"math"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/kernels"
)

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

// RoundHalf rounds x to format f, to nearest with ties to even (NaN stays
// NaN, values beyond the format's range become Inf).
func RoundHalf(f attn.HalfFormat, x float32) uint16 {
	if f == attn.BFloat16 {
		var h [1]uint16
		kernels.Float32ToBF16(h[:], []float32{x})
		return h[0]
	}
	b := math.Float32bits(x)
	sign := uint16(b>>16) & 0x8000
	abs := b & 0x7fffffff
	switch {
	case abs > 0x7f800000:
		return sign | 0x7e00
	case abs >= 0x477ff000: // 65520 and up round to Inf
		return sign | 0x7c00
	case abs >= 0x38800000: // normal: rebias the exponent, round 23 -> 10 bits
		m := abs - 0x38000000
		return sign | uint16((m+0xfff+(m>>13)&1)>>13)
	}
	return sign | uint16(math.RoundToEven(float64(math.Float32frombits(abs))*(1<<24)))
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
