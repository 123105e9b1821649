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
//
// As on the float32 path, each product prefetches the other's next
// operand into L2: the scores bring in the tile's values, P V the next
// tile's keys. In decoding steps at 32768 keys (8/2 heads, d = 128, a
// loaded machine, variants in rotation, least CPU time of 40 rounds) this
// took 0.86x the time of no prefetch with the keys and values in memory
// (caches flushed before each call), and prefetching two tiles further
// 1.07x; with them warm in the caches no prefetch was fastest (0.76-0.84x).

// halfInPlaceRows is the most query rows of a group whose 16-bit keys and
// values are read in place. At 4096 keys, d = 128, reading in place took
// 0.67x the widening path's CPU time for 8 rows, 0.91x for 16, 1.05x for
// 32 and 1.34x for 128. Past kernels.NTInPlaceRows it does not count: the
// backward's scores must match the forward's (scoresInPlace). A variable
// so tests can turn the path off.
var halfInPlaceRows = 24

// readsHalfInPlace reports whether attendRows reads p's 16-bit keys and
// values in place: unpacked keys (a packed head has several tiles, so
// many rows), few rows in every group (scoresInPlace: the 16-bit kernels
// give each score the bits the float32 in-place kernels give it on the
// widened keys, which the backward uses), and vector kernels for the
// scores (the portable code is slower than widening).
func readsHalfInPlace[T attn.Float](p *attn.Problem[T], pk packer[T]) bool {
	return p.KVFormat != attn.NoHalf && pk == nil && scoresInPlace(p) && p.Group()*p.N <= halfInPlaceRows && kernels.HalfNTVector(p.KVFormat == attn.BFloat16)
}

// halfScores sets s (nb x cols, row stride ld) to the products of
// the nb x D queries q with keys j0..j0+cols-1 of key/value head kh, read
// from p.K16 in place.
func halfScores[T attn.Float](p *attn.Problem[T], kh, j0, nb, cols int, q, s []T, ld int) {
	gemm := kernels.GemmNT32F16Next
	if p.KVFormat == attn.BFloat16 {
		gemm = kernels.GemmNT32BF16Next
	}
	d, e, off := p.D, p.E, kh*p.M+j0
	var next []uint16
	if prefetch {
		next = p.V16[off*e : (off+cols)*e]
	}
	gemm(nb, cols, d, any(q).([]float32), d, p.K16[off*d:], d, any(s).([]float32), ld, next)
}

// halfValues sets pv (nb x E) to the products of the probabilities s
// (nb x cols, row stride ld) with the values of keys
// j0..j0+cols-1 of key/value head kh, read from p.V16 in place, and
// prefetches the next tile's keys (up to key jb).
func halfValues[T attn.Float](p *attn.Problem[T], kh, j0, jb, nb, cols int, s []T, ld int, pv []T) {
	gemm := kernels.GemmNN32F16Next
	if p.KVFormat == attn.BFloat16 {
		gemm = kernels.GemmNN32BF16Next
	}
	d, e, off, pv32 := p.D, p.E, kh*p.M, any(pv).([]float32)
	var next []uint16
	if t := tileWidth[T](d, e); prefetch && j0+t < jb {
		next = p.K16[(off+j0+t)*d : (off+min(j0+2*t, jb))*d]
	}
	clear(pv32)
	gemm(nb, e, cols, any(s).([]float32), ld, p.V16[(off+j0)*e:], e, pv32, e, next)
}
