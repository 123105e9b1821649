package exact

import (
	"context"
	"fmt"
	"math"
	"runtime"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/kernels"
	"github.com/fastattn/fastattn/internal/parallel"
)

// DecodeBlock is how many keys one block of a decoding cache holds: one
// key tile, so a block is one pass of the kernels.
const DecodeBlock = keyTile

// DecodeKeys are the cached keys and values of one attention head, stored
// in the layout the decoding kernels read, so that a decoding step streams
// over them without repacking anything:
//
//   - keys in blocks of DecodeBlock rows of D, row-major (entry t of key j
//     at (j%DecodeBlock)*D + t), so the scores of a few queries against a
//     block are one product Q Kᵀ whose kernels read the block's rows in
//     place, as a stateless call's scores read K (kernels.GemmNT32);
//   - values in blocks of DecodeBlock rows of E, row-major, read in place by
//     the P V product.
//
// (16-bit stores keep other layouts: see NewDecodeKeysHalf.) Appending a
// key writes its row; blocks are allocated as keys arrive (or ahead of
// time by Reserve) and never move, so growing never copies.
type DecodeKeys[T attn.Float] struct {
	D, E int
	// Keys and Values hold the blocks; block b holds keys
	// b*DecodeBlock <= j < (b+1)*DecodeBlock.
	Keys, Values [][]T
	// Format, when not attn.NoHalf, stores the blocks in 16 bits instead,
	// in Keys16 and Values16, in panels of halfPanel keys or value entries
	// (see NewDecodeKeysHalf); T is float32.
	Format           attn.HalfFormat
	Keys16, Values16 [][]uint16
	n                int // keys held
	row              []T // Value's widened row
}

// NewDecodeKeys returns an empty store for keys of d entries and values of e.
func NewDecodeKeys[T attn.Float](d, e int) *DecodeKeys[T] {
	return &DecodeKeys[T]{D: d, E: e}
}

// Reserve allocates the blocks for n keys in all.
func (kv *DecodeKeys[T]) Reserve(n int) {
	for kv.blocks()*DecodeBlock < n {
		if kv.Format != attn.NoHalf {
			kv.Keys16 = append(kv.Keys16, make([]uint16, kv.D*DecodeBlock))
			kv.Values16 = append(kv.Values16, make([]uint16, DecodeBlock*kv.E))
			continue
		}
		kv.Keys = append(kv.Keys, make([]T, kv.D*DecodeBlock))
		kv.Values = append(kv.Values, make([]T, DecodeBlock*kv.E))
	}
}

func (kv *DecodeKeys[T]) blocks() int { return max(len(kv.Keys), len(kv.Keys16)) }

// Round returns x as the store keeps it: rounded to its 16-bit format (in
// place), or unchanged.
func (kv *DecodeKeys[T]) Round(x []T) []T {
	if kv.Format != attn.NoHalf {
		for i, v := range x {
			x[i] = T(attn.HalfToFloat32(kv.Format, attn.Float32ToHalf(kv.Format, float32(v))))
		}
	}
	return x
}

// Len is the number of keys held.
func (kv *DecodeKeys[T]) Len() int { return kv.n }

// Truncate keeps the first n keys (n <= Len); their blocks stay allocated.
func (kv *DecodeKeys[T]) Truncate(n int) { kv.n = min(max(n, 0), kv.n) }

// Append adds one key (D entries) and its value (E entries).
func (kv *DecodeKeys[T]) Append(k, v []T) {
	j := kv.n
	kv.Reserve(j + 1)
	b, c := j/DecodeBlock, j%DecodeBlock
	kv.n++
	if kv.Format != attn.NoHalf {
		for t, x := range k[:kv.D] {
			kv.Keys16[b][kv.keyAt16(c, t)] = attn.Float32ToHalf(kv.Format, float32(x))
		}
		for t, x := range v[:kv.E] {
			kv.Values16[b][kv.valueAt16(c, t)] = attn.Float32ToHalf(kv.Format, float32(x))
		}
		return
	}
	copy(kv.Keys[b][c*kv.D:(c+1)*kv.D], k[:kv.D])
	copy(kv.Values[b][c*kv.E:(c+1)*kv.E], v[:kv.E])
}

// Key copies key j into dst (D entries) as float64.
func (kv *DecodeKeys[T]) Key(j int, dst []float64) {
	b, c := j/DecodeBlock, j%DecodeBlock
	if kv.Format != attn.NoHalf {
		for t := range kv.D {
			dst[t] = float64(attn.HalfToFloat32(kv.Format, kv.Keys16[b][kv.keyAt16(c, t)]))
		}
		return
	}
	for t, x := range kv.Keys[b][c*kv.D : (c+1)*kv.D] {
		dst[t] = float64(x)
	}
}

// Value returns the value of key j (E entries): aliasing the store, or,
// for a 16-bit store, widened into a buffer the next call overwrites.
func (kv *DecodeKeys[T]) Value(j int) []T {
	b, c := j/DecodeBlock, j%DecodeBlock
	if kv.Format != attn.NoHalf {
		kv.row = grow(kv.row, kv.E)
		// The value is one contiguous row in each panel.
		for t := 0; t < kv.E; t += halfPanel {
			at, w := kv.valueAt16(c, t), kv.valuePanel(t/halfPanel)
			widen(kv.Format, kv.row[t:t+w], kv.Values16[b][at:at+w])
		}
		return kv.row
	}
	return kv.Values[b][c*kv.E : (c+1)*kv.E]
}

func grow[S ~[]E, E any](s S, n int) S {
	if cap(s) < n {
		return make(S, n)
	}
	return s[:n]
}

// DecodeUnit is a group of query rows that attend the same head's cached
// keys: the queries of one step (or of a prefill) of one head, or of every
// query head sharing one key head (grouped-query attention). Row r attends
// keys Lo[r] <= j < Hi[r], which expresses causal masks and sliding windows.
type DecodeUnit[T attn.Float] struct {
	Keys *DecodeKeys[T]
	Rows int
	// Q is Rows x D, Out Rows x E, LSE Rows: the log of each row's softmax
	// denominator (-Inf for a row with neither keys nor sink).
	Q   []T
	Out []T
	LSE []float64
	// Lo and Hi hold each row's key range.
	Lo, Hi []int
	// Sinks, when not nil, holds a logit per row that joins the row's
	// softmax denominator without a value (attention sinks).
	Sinks []float64
}

// Decoder computes exact attention of DecodeUnits. It keeps its workers'
// buffers between calls, so a decoding step allocates nothing once the
// first step has sized them. A Decoder must not be used by two goroutines
// at once.
type Decoder[T attn.Float] struct {
	ops     ops[T]
	workers int
	states  []*tileState[T]
	parts   []partial
	tasks   []decodeTask
	units   []DecodeUnit[T]
	scale   float64
	ctx     context.Context
	crew    parallel.Crew // the workers of a step
}

// decodeTask is one worker's piece of a call: rows i0..i0+rows-1 of a unit
// against keys ja <= j < jb. part is the index of its first partial when its
// tile is split (chunks > 1), of which it is chunk c.
type decodeTask struct {
	unit, i0, rows, ja, jb int
	part, chunk, chunks    int
}

// NewDecoder returns a Decoder using up to workers goroutines (0 means
// GOMAXPROCS).
func NewDecoder[T attn.Float](workers int) *Decoder[T] {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	d := &Decoder[T]{workers: workers, ops: opsFor[T]()}
	d.crew.Work = d.work
	return d
}

// DecodeFlops is the conventional flop count of units: 2 (d + e) per
// (row, key) pair.
func DecodeFlops[T attn.Float](units []DecodeUnit[T]) float64 {
	var f float64
	for _, u := range units {
		for r := range u.Rows {
			f += 2 * float64(max(u.Hi[r]-u.Lo[r], 0)) * float64(u.Keys.D+u.Keys.E)
		}
	}
	return f
}

// Attend computes every unit's rows with scale s. The keys of each tile of
// rows are split across the workers when there are fewer tiles than
// workers (one token per step), and the pieces merged by log-sum-exp.
func (d *Decoder[T]) Attend(ctx context.Context, units []DecodeUnit[T], scale float64) error {
	for i := range units {
		u := &units[i]
		if u.Rows == 0 {
			continue
		}
		kv := u.Keys
		if len(u.Q) < u.Rows*kv.D || len(u.Out) < u.Rows*kv.E || len(u.LSE) < u.Rows || len(u.Lo) < u.Rows || len(u.Hi) < u.Rows || (u.Sinks != nil && len(u.Sinks) < u.Rows) {
			return fmt.Errorf("exact: decode unit %d is smaller than its %d rows", i, u.Rows)
		}
		for r := range u.Rows {
			if u.Lo[r] < 0 || u.Hi[r] > kv.Len() {
				return fmt.Errorf("exact: decode unit %d row %d attends keys [%d, %d) of %d", i, r, u.Lo[r], u.Hi[r], kv.Len())
			}
		}
	}
	d.plan(units)
	d.units, d.scale, d.ctx = units, scale, ctx
	e := 0
	for _, u := range units {
		e = max(e, u.Keys.E)
	}
	for len(d.states) < min(d.workers, len(d.tasks)) {
		d.states = append(d.states, newTileState[T](e))
	}
	for _, st := range d.states {
		if len(st.acc) < queryTile*e {
			*st = *newTileState[T](e)
		}
	}
	d.run()
	// Merge the split tiles: their chunks are consecutive tasks.
	if ctx.Err() == nil {
		for t := 0; t < len(d.tasks); {
			tk := d.tasks[t]
			if tk.chunks > 1 {
				d.mergeParts(d.states[0], &units[tk.unit], tk)
			}
			t += tk.chunks
		}
	}
	d.units, d.ctx = nil, nil
	if err := ctx.Err(); err != nil {
		return err
	}
	for i := range units {
		for r, l := range units[i].LSE[:units[i].Rows] {
			if math.IsNaN(l) || math.IsInf(l, 1) {
				return fmt.Errorf("%w: the logits of row %d of decode unit %d overflow %s (|s q.k| beyond its range); scale the inputs down or use float64", attn.ErrBadProblem, r, i, attn.DTypeName[T]())
			}
		}
	}
	return nil
}

// plan fills d.tasks: every unit in tiles of queryTile rows, and each tile's
// keys in chunks (multiples of DecodeBlock) when there are too few tiles to
// keep the workers busy.
func (d *Decoder[T]) plan(units []DecodeUnit[T]) {
	tiles := 0
	for _, u := range units {
		tiles += (u.Rows + queryTile - 1) / queryTile
	}
	want := 1
	if d.workers > 1 && tiles < splitTarget*d.workers {
		want = (splitTarget*d.workers + tiles - 1) / max(tiles, 1)
	}
	d.tasks = d.tasks[:0]
	parts := 0
	for ui, u := range units {
		for i0 := 0; i0 < u.Rows; i0 += queryTile {
			rows := min(queryTile, u.Rows-i0)
			lo, hi := u.Keys.Len(), 0
			for r := i0; r < i0+rows; r++ {
				if u.Lo[r] < u.Hi[r] {
					lo, hi = min(lo, u.Lo[r]), max(hi, u.Hi[r])
				}
			}
			lo = min(lo, hi) / DecodeBlock * DecodeBlock
			chunks, size := splitKeys(lo, hi, want)
			for c := range chunks {
				d.tasks = append(d.tasks, decodeTask{unit: ui, i0: i0, rows: rows,
					ja: min(lo+c*size, hi), jb: min(lo+(c+1)*size, hi), part: parts, chunk: c, chunks: chunks})
			}
			if chunks > 1 {
				parts += chunks
			}
		}
	}
	for len(d.parts) < parts {
		d.parts = append(d.parts, partial{})
	}
	e := 0
	for _, u := range units {
		e = max(e, u.Keys.E)
	}
	for i := range d.parts[:parts] {
		if len(d.parts[i].acc) < queryTile*e {
			d.parts[i] = partial{acc: make([]float64, queryTile*e), rowMax: make([]float64, queryTile), rowSum: make([]float64, queryTile)}
		}
	}
}

// splitKeys divides keys lo..hi-1 into at most want chunks (split-K) of
// at least splitMinKeys keys: it returns how many and their size, a
// multiple of keyTile (= DecodeBlock), the last chunk taking the rest.
func splitKeys(lo, hi, want int) (chunks, size int) {
	chunks = max(1, min(want, (hi-lo)/splitMinKeys))
	size = ((hi-lo+chunks-1)/chunks + keyTile - 1) / keyTile * keyTile
	if chunks > 1 {
		chunks = (hi - lo + size - 1) / size
	}
	return chunks, size
}

// run executes d.tasks on the calling goroutine and pooled helpers.
func (d *Decoder[T]) run() {
	if len(d.tasks) > 0 {
		d.crew.Run(min(d.workers, len(d.tasks)))
	}
}

func (d *Decoder[T]) work(w int) {
	st := d.states[w]
	for d.ctx.Err() == nil {
		t, ok := d.crew.Take(len(d.tasks))
		if !ok {
			return
		}
		tk := d.tasks[t]
		u := &d.units[tk.unit]
		d.attendKeys(st, u, tk.i0, tk.rows, tk.ja, tk.jb)
		if tk.chunks == 1 {
			d.finishRows(u, st.acc, st.rowMax, st.rowSum, tk.i0, tk.rows)
			continue
		}
		e := u.Keys.E
		pt := &d.parts[tk.part+tk.chunk]
		copy(pt.acc, st.acc[:tk.rows*e])
		copy(pt.rowMax, st.rowMax[:tk.rows])
		copy(pt.rowSum, st.rowSum[:tk.rows])
	}
}

// attendKeys runs the online softmax of rows i0..i0+rows-1 of u over keys
// ja <= j < jb, block by block, leaving in st each row's max and sum of the
// scaled logits and its unnormalised output; keys outside a row's range
// are skipped.
func (d *Decoder[T]) attendKeys(st *tileState[T], u *DecodeUnit[T], i0, rows, ja, jb int) {
	kv := u.Keys
	dim, e := kv.D, kv.E
	q := u.Q[i0*dim : (i0+rows)*dim]
	lo, hi := u.Lo[i0:i0+rows], u.Hi[i0:i0+rows]
	acc := st.acc[:rows*e]
	clear(acc)
	acc64, direct := any(acc).([]T)
	for r := range rows {
		st.rowMax[r] = math.Inf(-1)
		st.rowSum[r] = 0
	}
	scale := T(d.scale)
	for j0, n := ja, 0; j0 < jb; n++ {
		if n%cancelCheckTiles == cancelCheckTiles-1 && d.ctx.Err() != nil {
			return
		}
		b := j0 / DecodeBlock
		start := b * DecodeBlock
		j1 := min(start+DecodeBlock, jb)
		cols := j1 - j0
		s := st.scores[:(rows-1)*scoreStride+cols]
		half := kv.Format != attn.NoHalf
		switch {
		case half:
			for r := range rows {
				clear(s[r*scoreStride : r*scoreStride+cols])
			}
			kv.halfScores(b, j0-start, cols, rows, q, s)
		case rows >= valuePrefetchRows && d.ops.gemmNTNext != nil:
			// As attendRows does, the scores bring the values in.
			keys, vals := kv.Keys[b][(j0-start)*dim:], kv.Values[b][(j0-start)*e:(j1-start)*e]
			d.ops.gemmNTNext(rows, cols, dim, q, dim, keys, dim, s, scoreStride, vals)
		default:
			d.ops.gemmNT(rows, cols, dim, q, dim, kv.Keys[b][(j0-start)*dim:], dim, s, scoreStride)
		}
		for r := range rows {
			row := s[r*scoreStride : r*scoreStride+cols]
			a, z := min(max(lo[r]-j0, 0), cols), min(max(hi[r]-j0, 0), cols)
			st.alpha[r] = 1
			if a >= z {
				clear(row)
				continue
			}
			clear(row[:a])
			clear(row[z:])
			// Rounded as the exp kernel rounds scale*x, as attend does.
			tileMax := float64(T(scale * d.ops.max(row[a:z])))
			if tileMax > st.rowMax[r] {
				alpha := math.Exp(st.rowMax[r] - tileMax)
				st.alpha[r] = alpha
				st.rowSum[r] *= alpha
				st.rowMax[r] = tileMax
			}
			st.rowSum[r] += float64(d.ops.expShift(row[a:z], scale, T(st.rowMax[r])))
		}
		if direct {
			vals := kv.Values[b][(j0-start)*e:]
			for r := range rows {
				if a := st.alpha[r]; a != 1 {
					scaleRow(acc[r*e:(r+1)*e], a)
				}
			}
			d.ops.gemmNN(rows, e, cols, s, scoreStride, vals, e, acc64, e)
		} else {
			pv := st.pv[:rows*e]
			clear(pv)
			if half {
				kv.halfValues(b, j0-start, cols, rows, s, pv)
			} else {
				d.ops.gemmNN(rows, e, cols, s, scoreStride, kv.Values[b][(j0-start)*e:], e, pv, e)
			}
			pv32 := any(pv).([]float32)
			if allOne(st.alpha[:rows]) {
				kernels.Accumulate32(acc, 1, pv32)
			} else {
				for r := range rows {
					kernels.Accumulate32(acc[r*e:(r+1)*e], st.alpha[r], pv32[r*e:(r+1)*e])
				}
			}
		}
		j0 = j1
	}
}

// finishRows writes rows i0..i0+rows-1 of u from an accumulated state.
func (d *Decoder[T]) finishRows(u *DecodeUnit[T], acc, rowMax, rowSum []float64, i0, rows int) {
	e := u.Keys.E
	for r := range rows {
		sink := math.Inf(-1)
		if u.Sinks != nil {
			sink = u.Sinks[i0+r]
		}
		u.LSE[i0+r] = finishRow(u.Out[(i0+r)*e:(i0+r+1)*e], acc[r*e:(r+1)*e], rowMax[r], rowSum[r], sink)
	}
}

// finishRow writes one output row o = acc / sum from the online softmax's
// row max m and row sum, the sink (-Inf for none) joining the sum, and
// returns the row's LSE; a row with neither keys nor sink is zero with LSE
// -Inf.
func finishRow[T attn.Float](o []T, acc []float64, m, sum, sink float64) float64 {
	inv, lse, ok := rowScale(m, sum, sink)
	if !ok {
		clear(o)
		return lse
	}
	for c := range o {
		o[c] = T(acc[c] * inv)
	}
	return lse
}

// finishRow16 is finishRow for a row of 16-bit output in format f: each
// value rounded to float32, then to f, in one pass (through a float64 row
// first, 4096 rows at d = 64 took 434 µs on one core, against 342).
func finishRow16(o []uint16, f attn.HalfFormat, acc []float64, m, sum, sink float64) float64 {
	inv, lse, ok := rowScale(m, sum, sink)
	if !ok {
		clear(o)
		return lse
	}
	acc = acc[:len(o)]
	if f == attn.BFloat16 {
		for c, a := range acc {
			o[c] = attn.Float32ToBFloat16(float32(a * inv))
		}
		return lse
	}
	for c, a := range acc {
		o[c] = attn.Float32ToHalf(f, float32(a*inv))
	}
	return lse
}

// rowScale is what finishRow multiplies a row's accumulator by, and the
// row's LSE; ok false (and LSE -Inf) for a row with neither keys nor sink.
func rowScale(m, sum, sink float64) (inv, lse float64, ok bool) {
	w := 1.0
	if !math.IsInf(sink, -1) {
		switch {
		case sum == 0:
			m, sum = sink, 1
		case sink > m:
			w = math.Exp(m - sink)
			m, sum = sink, sum*w+1
		default:
			sum += math.Exp(sink - m)
		}
	}
	if sum == 0 {
		return 0, math.Inf(-1), false
	}
	return w / sum, m + math.Log(sum), true
}

// combineParts merges split-K chunks of rows rows into st (returning its
// accumulator) as the online softmax combines tiles: with M the largest
// chunk max, the row sum is sum_c s_c exp(m_c - M) and the output
// sum_c acc_c exp(m_c - M), over the chunks that saw any key.
func combineParts[T attn.Float](st *tileState[T], parts []partial, rows, e int) []float64 {
	acc := st.acc[:rows*e]
	clear(acc)
	for r := range rows {
		m := math.Inf(-1)
		for _, pt := range parts {
			if pt.rowSum[r] > 0 {
				m = max(m, pt.rowMax[r])
			}
		}
		st.rowMax[r], st.rowSum[r] = m, 0
		a := acc[r*e : (r+1)*e]
		for _, pt := range parts {
			if pt.rowSum[r] == 0 {
				continue
			}
			w := math.Exp(pt.rowMax[r] - m)
			st.rowSum[r] += pt.rowSum[r] * w
			for c, v := range pt.acc[r*e : (r+1)*e] {
				a[c] += v * w
			}
		}
	}
	return acc
}

// mergeParts combines the chunks of a split tile and writes its rows.
func (d *Decoder[T]) mergeParts(st *tileState[T], u *DecodeUnit[T], tk decodeTask) {
	acc := combineParts(st, d.parts[tk.part:tk.part+tk.chunks], tk.rows, u.Keys.E)
	d.finishRows(u, acc, st.rowMax, st.rowSum, tk.i0, tk.rows)
}
