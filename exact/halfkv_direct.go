package exact

import (
	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/kernels"
)

// Decoding-shaped calls with 16-bit keys and values (a few query rows per
// key/value head, such as a grouped-query group's one query each) are
// memory-bound: the time is the reading of the keys and values. attendRows
// then reads them in place, as the caller laid them out, with the 16-bit
// kernels (kernels.GemmNT32F16 for the scores, GemmNN32F16 for P V), which
// widen each vector in registers: every key and value byte is read once
// and no widened copy is written or read back. Tiles of more rows widen a
// key tile and a value tile to float32 first and use the float32 kernels,
// whose higher arithmetic rate pays for the copies.

// halfInPlaceRows is the most query rows of a tile whose 16-bit keys and
// values are read in place.
var halfInPlaceRows = 16

// readsHalfInPlace reports whether attendRows reads p's 16-bit keys and
// values in place for a tile of rows query rows: unpacked keys (a packed
// head has several tiles, so many rows) and few rows.
func readsHalfInPlace[T attn.Float](p *attn.Problem[T], pk packer[T], rows int) bool {
	return p.KVFormat != attn.NoHalf && pk == nil && rows <= halfInPlaceRows
}

// halfScores sets s (nb x cols, row stride scoreStride) to the products of
// the nb x D queries q with keys j0..j0+cols-1 of key/value head kh, read
// from p.K16 in place.
func halfScores[T attn.Float](p *attn.Problem[T], kh, j0, nb, cols int, q, s []T) {
	gemm := kernels.GemmNT32F16
	if p.KVFormat == attn.BFloat16 {
		gemm = kernels.GemmNT32BF16
	}
	d := p.D
	gemm(nb, cols, d, any(q).([]float32), d, p.K16[(kh*p.M+j0)*d:], d, any(s).([]float32), scoreStride)
}

// halfValues sets pv (nb x E) to the products of the probabilities s
// (nb x cols, row stride scoreStride) with the values of keys
// j0..j0+cols-1 of key/value head kh, read from p.V16 in place.
func halfValues[T attn.Float](p *attn.Problem[T], kh, j0, nb, cols int, s, pv []T) {
	e, pv32 := p.E, any(pv).([]float32)
	clear(pv32)
	halfProduct(p.KVFormat)(nb, e, cols, any(s).([]float32), scoreStride, p.V16[(kh*p.M+j0)*e:], e, pv32, e)
}
