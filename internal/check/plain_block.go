package check

import (
	"context"
	"math"
	"runtime"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/kernels"
	"github.com/fastattn/fastattn/internal/parallel"
)

// plainRows is plainRow for several rows of one head at once, the way
// exact attention computes a tile: each block of keys is centred in
// float64 once for all the rows, the block's logits are one product of
// the rows' queries by those keys and its outputs one product of the
// weights by the block's values, and the key blocks are shared among the
// cores. At a million keys, sixteen rows one at a time cost about a fifth
// of a certified poly call.
//
// Only rows shifted by their logit bound (A <= plainSmall, no pass for the
// maximum) are served: served[x] says whether rows[x] was, and then
// out[x*e:] holds it and refErr[x] its a priori error (plainError: the
// products' dot products and sums are in an order of the kernels'
// choosing, which that bound allows). Rows not served are left to
// plainRow and the accurate reference.
func plainRows[T attn.Float](p *attn.Problem[T], h int, rows []int, box headBox, out, refErr []float64, served []bool) {
	colMin, ok := plainHead(p, h, box)
	if !ok {
		return
	}
	d, e, kh := p.D, p.E, p.KVHead(h)
	// The served rows: their queries in float64, shifts and key ranges.
	var idx, los, his []int
	var wq, shifts []float64
	jLo, jHi := math.MaxInt, 0
	for x, i := range rows {
		q := p.Q[(h*p.N+i)*d : (h*p.N+i+1)*d]
		a, ok := logitBound(p, q, box)
		if !ok || a > plainSmall {
			continue
		}
		lo, hi := p.KeyRange(h, i)
		clear(out[x*e : (x+1)*e])
		served[x] = true
		if hi <= lo {
			refErr[x] = 0 // no key: a zero row, as the accurate reference gives
			continue
		}
		refErr[x] = plainError(d, hi-lo, a, colMin, true)
		idx, los, his, shifts = append(idx, x), append(los, lo), append(his, hi), append(shifts, a)
		for _, v := range q {
			wq = append(wq, float64(v))
		}
		jLo, jHi = min(jLo, lo), max(jHi, hi)
	}
	cnt := len(idx)
	if cnt == 0 {
		return
	}
	// Tasks of a fixed number of keys, whatever the core count, so the
	// sums are grouped the same way on every machine; each task's partial
	// numerators and denominators are added in task order.
	const block, taskKeys = 256, 1 << 14
	tasks := (jHi - jLo + taskKeys - 1) / taskKeys
	nums := make([]float64, tasks*cnt*e)
	dens := make([]float64, tasks*cnt)
	type buffers struct{ kc, lg, vb []float64 }
	workers := make([]*buffers, max(1, min(runtime.GOMAXPROCS(0), tasks)))
	for w := range workers {
		workers[w] = &buffers{kc: make([]float64, block*d), lg: make([]float64, cnt*block), vb: make([]float64, block*e)}
	}
	c := box.centre
	parallel.ForEach(context.Background(), workers, 0, tasks, func(b *buffers, task int) {
		num, den := nums[task*cnt*e:(task+1)*cnt*e], dens[task*cnt:(task+1)*cnt]
		for j0 := jLo + task*taskKeys; j0 < min(jLo+(task+1)*taskKeys, jHi); j0 += block {
			j1 := min(j0+block, jHi)
			bs := j1 - j0
			kc := b.kc[:bs*d]
			for x, k := range p.K[(kh*p.M+j0)*d : (kh*p.M+j1)*d] {
				kc[x] = float64(k) - c[x%d]
			}
			lg := b.lg[:cnt*bs]
			kernels.GemmNT64(cnt, bs, d, wq, d, kc, d, lg, bs)
			for k := range cnt {
				row := lg[k*bs : (k+1)*bs]
				v0, v1 := min(max(los[k]-j0, 0), bs), min(max(his[k]-j0, 0), bs)
				clear(row[:v0])
				clear(row[v1:])
				if v1 > v0 {
					den[k] += kernels.ExpShiftSum64(row[v0:v1], p.Scale, shifts[k])
				}
			}
			vb := b.vb[:bs*e]
			for x, v := range p.V[(kh*p.M+j0)*e : (kh*p.M+j1)*e] {
				vb[x] = float64(v)
			}
			kernels.GemmNN64(cnt, e, bs, lg, bs, vb, e, num, e)
		}
	})
	for k, x := range idx {
		var den float64
		o := out[x*e : (x+1)*e]
		for task := range tasks {
			den += dens[task*cnt+k]
			addTo(o, nums[(task*cnt+k)*e:(task*cnt+k+1)*e])
		}
		for c := range o {
			o[c] /= den
		}
	}
}

func addTo(dst, src []float64) {
	for i, v := range src {
		dst[i] += v
	}
}
