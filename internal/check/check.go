// Package check is the one sampled reference check of the approximate
// methods and of the gradient report: which rows to recompute (the ones
// most likely to be wrong, then random ones), a reference accurate enough
// for the bounds it checks, and one tolerance rule.
//
// The forward reference is package accurate's, within accurate.Error(L)
// (about 16 units of float64 rounding) of the exact row, or, for bounds
// at least 64 times its own a priori error, plain float64 arithmetic on
// centred keys (plain.go), several times cheaper.
package check

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/accurate"
	"github.com/fastattn/fastattn/internal/parallel"
	"github.com/fastattn/fastattn/internal/vscale"
)

// ErrExceeded is wrapped by the error Forward returns when a sampled row
// is further from the reference than the reported bound allows.
var ErrExceeded = errors.New("sampled check exceeded the reported bound")

// Within is the tolerance rule: an observed error err (relative to the
// column's largest value) is consistent with a reported bound when it is
// at most bound (with a relative 1e-9 for the bound's own rounding) plus
// the reference's own error refErr.
func Within(err, bound, refErr float64) bool {
	return err <= bound*(1+1e-9)+refErr
}

// QueryRows returns up to k distinct query rows of head h, the ones most
// likely to be wrong first: the row with the largest |q_i| (the widest
// range of logits, where polynomial degrees and rounding are largest),
// the first and the last row (the shortest and longest causal prefixes),
// then random rows; in increasing order.
func QueryRows[T attn.Float](p *attn.Problem[T], h, k int, r *rand.Rand) []int {
	if k >= p.N {
		return allRows(p.N)
	}
	widest, best := 0, -1.0
	for i := range p.N {
		var s float64
		for _, x := range p.Q[(h*p.N+i)*p.D : (h*p.N+i+1)*p.D] {
			s += float64(x) * float64(x)
		}
		if s > best {
			widest, best = i, s
		}
	}
	return pick(p.N, k, r, widest, 0, p.N-1)
}

// KeyRows returns up to k distinct keys of query head h (among its valid keys)
// whose gradient rows are most likely to be wrong: the key with the
// largest |v_j| (a dropped or truncated key with a huge value dominates
// its gradient), the key farthest from the keys' mean (the first dropped
// from windows, the most truncated in expansions), the first and the
// last, then random keys; in increasing order.
func KeyRows[T attn.Float](p *attn.Problem[T], h, k int, r *rand.Rand) []int {
	l := p.KeyLen(h)
	if l == 0 {
		return nil
	}
	if k >= l {
		return allRows(l)
	}
	d, e, kh := p.D, p.E, p.KVHead(h)
	mu := KeyMean(p, h)
	big, far := 0, 0
	var bigV, farD float64
	for j := range l {
		var v, dist float64
		for _, x := range p.V[(kh*p.M+j)*e : (kh*p.M+j+1)*e] {
			v = max(v, math.Abs(float64(x)))
		}
		for t, x := range p.K[(kh*p.M+j)*d : (kh*p.M+j+1)*d] {
			dist += (float64(x) - mu[t]) * (float64(x) - mu[t])
		}
		if v > bigV {
			big, bigV = j, v
		}
		if dist > farD {
			far, farD = j, dist
		}
	}
	return pick(l, k, r, big, far, 0, l-1)
}

// KeyMean returns the mean of the valid keys of query head h (zeros if
// none).
func KeyMean[T attn.Float](p *attn.Problem[T], h int) []float64 {
	d, l, kh := p.D, p.KeyLen(h), p.KVHead(h)
	mu := make([]float64, d)
	for j := range l {
		for t, x := range p.K[(kh*p.M+j)*d : (kh*p.M+j+1)*d] {
			mu[t] += float64(x)
		}
	}
	for t := range mu {
		mu[t] /= float64(max(l, 1))
	}
	return mu
}

// Heads returns up to k heads to check: the first, the last and evenly
// spaced ones between.
func Heads(heads, k int) []int {
	if k >= heads {
		return allRows(heads)
	}
	k = max(k, 1)
	set := map[int]bool{}
	for x := range k {
		if k == 1 {
			set[0] = true
			break
		}
		set[x*(heads-1)/(k-1)] = true
	}
	return sorted(set)
}

func allRows(n int) []int {
	rows := make([]int, n)
	for i := range rows {
		rows[i] = i
	}
	return rows
}

// pick returns up to k distinct indices below n: the given ones first,
// then random ones, in increasing order.
func pick(n, k int, r *rand.Rand, first ...int) []int {
	set := map[int]bool{}
	for _, i := range first {
		if len(set) < k {
			set[i] = true
		}
	}
	for len(set) < min(k, n) {
		set[r.IntN(n)] = true
	}
	return sorted(set)
}

func sorted(set map[int]bool) []int {
	out := make([]int, 0, len(set))
	for i := range set {
		out = append(out, i)
	}
	slices.Sort(out)
	return out
}

// Result is what a forward check measured.
type Result struct {
	// Observed is the largest |O_ij - reference_ij| / max_l |V_lj| over
	// the sampled rows and the columns with a nonzero value.
	Observed float64
	// Rows is the number of rows sampled.
	Rows int
	// RefError is the reference's own error bound on those rows (same
	// unit), allowed on top of the bound.
	RefError float64
}

// DefaultRows is the number of rows per call Forward checks when asked for 0.
const DefaultRows = 16

// Forward recomputes rows rows of out (spread over heads by Heads and
// chosen in each by QueryRows; 0 means DefaultRows, negative none) with
// the accurate reference and returns what it measured. An error wrapping
// ErrExceeded, saying what was measured against what, is returned if a
// row is further from the reference than Within allows for bound.
func Forward[T attn.Float](p *attn.Problem[T], out *attn.Output[T], bound float64, rows int) (Result, error) {
	var res Result
	if rows < 0 {
		return res, nil
	}
	if rows == 0 {
		rows = DefaultRows
	}
	r := rand.New(rand.NewPCG(uint64(p.Heads)*uint64(p.N), uint64(p.M)))
	heads := Heads(p.Heads, rows)
	perHead := max(1, rows/len(heads))
	type sample struct{ h, i int }
	var samples []sample
	for _, h := range heads {
		for _, i := range QueryRows(p, h, perHead, r) {
			samples = append(samples, sample{h, i})
		}
	}
	// Each sampled head's value column maxima (the unit of the bound) and,
	// when the bound is loose enough for the plain reference, its keys'
	// bounding box.
	colMaxes := map[int][]float64{}
	boxes := map[int]headBox{}
	for _, smp := range samples {
		if _, ok := colMaxes[smp.h]; !ok {
			colMaxes[smp.h] = attn.ColumnMaxAbs(p, smp.h, p.KeyLen(smp.h))
			if plainMayDo(p, bound) {
				boxes[smp.h] = newHeadBox(p, smp.h, colMaxes[smp.h])
			}
		}
	}
	// The reference rows are independent: compute them on every core (each
	// costs a pass over its keys; with many heads, one row per head), then
	// compare in order. The plain reference serves a row when its own
	// error is below 1/64 of the bound, the accurate one otherwise.
	refs := make([]float64, len(samples)*p.E)
	refErrs := make([]float64, len(samples))
	// First each head's rows together through plainRows (samples are
	// grouped by head), then the rest one at a time.
	done := make([]bool, len(samples))
	for x0 := 0; x0 < len(samples); {
		h, x1 := samples[x0].h, x0
		var rows []int
		for ; x1 < len(samples) && samples[x1].h == h; x1++ {
			rows = append(rows, samples[x1].i)
		}
		if box, ok := boxes[h]; ok && len(rows) > 1 {
			plainRows(p, h, rows, box, refs[x0*p.E:x1*p.E], refErrs[x0:x1], done[x0:x1])
			for x := x0; x < x1; x++ {
				done[x] = done[x] && refErrs[x] <= bound/64
			}
		}
		x0 = x1
	}
	parallel.For(context.Background(), runtime.GOMAXPROCS(0), len(samples), func(x int) {
		if done[x] {
			return
		}
		h, i, ref := samples[x].h, samples[x].i, refs[x*p.E:(x+1)*p.E]
		if box, ok := boxes[h]; ok {
			if e, ok := plainRow(p, h, i, box, ref); ok && e <= bound/64 {
				refErrs[x] = e
				return
			}
		}
		accurate.Row(p, h, i, ref)
		refErrs[x] = accurate.Error(p.KeyLimit(h, i))
	})
	for x, smp := range samples {
		h, i := smp.h, smp.i
		colMax := colMaxes[h]
		ref := refs[x*p.E : (x+1)*p.E]
		refErr := refErrs[x]
		res.Rows++
		res.RefError = max(res.RefError, refErr)
		o := out.O[(h*p.N+i)*p.E : (h*p.N+i+1)*p.E]
		for c := range p.E {
			if colMax[c] == 0 {
				continue
			}
			err := math.Abs(float64(o[c])-ref[c]) / colMax[c]
			if math.IsNaN(err) {
				err = math.Inf(1)
			}
			res.Observed = max(res.Observed, err)
			// The reference's output is rounded to float64, subnormal
			// when the column is: half a subnormal step more.
			if !Within(err, bound, refErr+vscale.HalfStepOver[float64](colMax[c])) {
				return res, fmt.Errorf("%w: row %d of head %d, column %d: |output - reference| = %.3g max|V_col|, above the reported bound %.3g "+
					"(reference's own error <= %.2g)", ErrExceeded, i, h, c, err, bound, refErr)
			}
		}
	}
	return res, nil
}
