// Package vscale keeps attention's sums of values finite and accurate
// whatever the size of the values. Each output column is a convex
// combination of its value column, so it can be computed on the column
// scaled by any power of two (exactly, barring underflow) and scaled back:
// values near the element type's largest number (1.7e308) would otherwise
// overflow the running sums, and subnormal ones lose their digits in the
// products. The methods call Fit before computing and Restore after, and
// add SubnormalOutput to their bounds: an output entry stored as a
// subnormal number is only known to half its step.
package vscale

import (
	"context"
	"fmt"
	"math"
	"runtime"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/parallel"
)

// Scaling records how Fit scaled a problem's values: per key/value head
// and column, the exponent k such that the scaled column is V_c 2^-k.
type Scaling struct {
	exps   []int     // kvHeads*e
	colMax []float64 // kvHeads*e: the scaled columns' largest magnitudes
	e, n   int
	group  int // query heads per key/value head
}

// chunk is the number of keys one task of ColumnMax reads.
const chunk = 4096

// ColumnMax returns max_l |V_lc| per key/value head and column (kvHeads x
// e) over the keys any of the head's query heads attends, on up to workers
// goroutines (0: GOMAXPROCS) in chunks of keys: it runs on every certified
// call and reads every value.
func ColumnMax[T attn.Float](p *attn.Problem[T], workers int) []float64 {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	g, e := p.Group(), p.E
	c := make([]float64, p.KVHeadCount()*e)
	type task struct{ kh, j0, j1 int }
	var tasks []task
	for kh := range p.KVHeadCount() {
		l := 0
		for h := kh * g; h < (kh+1)*g; h++ {
			l = max(l, p.KeyLen(h))
		}
		if p.KVFormat != attn.NoHalf {
			copy(c[kh*e:], attn.ColumnMaxAbs(p, kh*g, l))
			continue
		}
		for j := 0; j < l; j += chunk {
			tasks = append(tasks, task{kh, j, min(j+chunk, l)})
		}
	}
	if len(tasks) == 0 {
		return c
	}
	parts := make([]float64, len(tasks)*e)
	parallel.For(context.Background(), min(workers, len(tasks)), len(tasks), func(x int) {
		tk := tasks[x]
		attn.MaxAbsRows(p.V[(tk.kh*p.M+tk.j0)*e:(tk.kh*p.M+tk.j1)*e], parts[x*e:(x+1)*e])
	})
	for x, tk := range tasks {
		for j, m := range parts[x*e : (x+1)*e] {
			c[tk.kh*e+j] = max(c[tk.kh*e+j], m)
		}
	}
	return c
}

// Fit returns p and nil when every nonzero column maximum of V lies in
// [lo, hi]. Otherwise it returns a copy of p (sharing Q and K) whose values
// are scaled per head and column by a power of two that brings the
// column's largest magnitude into [0.5, 1), and the Scaling that Restore
// undoes.
func Fit[T attn.Float](p *attn.Problem[T], lo, hi float64) (*attn.Problem[T], *Scaling) {
	return FitMax(p, ColumnMax(p, p.Workers), lo, hi)
}

// Needed reports whether FitMax scales any column whose maximum |V| is
// in cm (a column of zeros never is): whether one lies outside [lo, hi].
func Needed(cm []float64, lo, hi float64) bool {
	for _, m := range cm {
		if m > 0 && (m < lo || m > hi) {
			return true
		}
	}
	return false
}

// FitMax is Fit with the column maxima cm (ColumnMax) already measured.
func FitMax[T attn.Float](p *attn.Problem[T], cm []float64, lo, hi float64) (*attn.Problem[T], *Scaling) {
	if !Needed(cm, lo, hi) {
		return p, nil
	}
	sc := &Scaling{exps: make([]int, len(cm)), colMax: make([]float64, len(cm)), e: p.E, n: p.N, group: p.Group()}
	for x, m := range cm {
		if m > 0 {
			_, sc.exps[x] = math.Frexp(m)
			sc.colMax[x] = math.Ldexp(m, -sc.exps[x])
		}
	}
	q := *p
	q.V = make([]T, len(p.V))
	for h := range p.KVHeadCount() {
		for j := range p.M {
			row := (h*p.M + j) * p.E
			for c := range p.E {
				q.V[row+c] = T(math.Ldexp(float64(p.V[row+c]), -sc.exps[h*p.E+c]))
			}
		}
	}
	return &q, sc
}

// Restore scales the output of a problem Fit scaled back to the original
// values. Each entry is first clamped to its scaled column's largest
// magnitude (the exact output cannot exceed it, so the clamp only removes
// rounding), so that scaling back cannot overflow. A nil Scaling does
// nothing.
func Restore[T attn.Float](sc *Scaling, out *attn.Output[T]) {
	if sc == nil {
		return
	}
	e := sc.e
	for r := range len(out.O) / e {
		h := r / sc.n / sc.group // the row's key/value head
		for c := range e {
			x := &out.O[r*e+c]
			m := sc.colMax[h*e+c]
			v := min(max(float64(*x), -m), m)
			*x = T(math.Ldexp(v, sc.exps[h*e+c]))
		}
	}
}

// SubnormalOutput is the part of a bound, relative to max_l |V_lj|, that
// storing an output entry as a subnormal number costs: half a subnormal
// step of T over the smallest nonzero column maximum (0 unless the values
// are tiny), every query head's over its own keys.
func SubnormalOutput[T attn.Float](p *attn.Problem[T]) float64 {
	cm := ColumnMax(p, p.Workers)
	for _, s := range ShorterHeads(p) {
		cm = append(cm, s.Max...)
	}
	return Subnormal[T](cm)
}

// Subnormal is SubnormalOutput from the column maxima cm (ColumnMax).
func Subnormal[T attn.Float](cm []float64) float64 {
	var worst float64
	for _, m := range cm {
		if m > 0 {
			worst = max(worst, HalfStepOver[T](m))
		}
	}
	return worst
}

// HalfStepOver returns half of T's least subnormal number (what rounding
// to T can cost below its normal range) divided by m. Half of float64's,
// 2^-1075, is not a float64 (it rounds to 0), so the step is divided
// first.
func HalfStepOver[T attn.Float](m float64) float64 {
	if _, ok := any(T(0)).(float32); ok {
		return 0x1p-150 / m
	}
	return 0x1p-1074 / m / 2
}

// HeadMax is one query head's value column maxima over its own keys.
type HeadMax struct {
	Head, Keys int
	Max        []float64
}

// ShorterHeads returns the column maxima (attn.ColumnMaxAbs, the
// contract's unit for the head's rows) of every query head that sees
// fewer keys than another head of its group, over its own keys: ColumnMax
// measures each key/value head over the most keys its query heads see,
// and a head that sees fewer may have far smaller maxima. Of consecutive
// heads with the same key length only the first is listed. It is empty
// unless key lengths differ within a group.
func ShorterHeads[T attn.Float](p *attn.Problem[T]) []HeadMax {
	if p.KeyLens == nil {
		return nil
	}
	var short []HeadMax
	g := p.Group()
	for kh := range p.KVHeadCount() {
		most := 0
		for h := kh * g; h < (kh+1)*g; h++ {
			most = max(most, p.KeyLen(h))
		}
		for h := kh * g; h < (kh+1)*g; h++ {
			l := p.KeyLen(h)
			if l > 0 && l < most && (h == kh*g || l != p.KeyLen(h-1)) {
				short = append(short, HeadMax{Head: h, Keys: l, Max: attn.ColumnMaxAbs(p, h, l)})
			}
		}
	}
	return short
}

// CheckFinite returns an error if an output entry or log-sum-exp is NaN or
// +Inf (an LSE of -Inf marks a row without keys): finite inputs must give
// finite outputs, and a method that cannot keep to that says so instead of
// returning them.
func CheckFinite[T attn.Float](method string, out *attn.Output[T]) error {
	if i := attn.FirstNonFinite(out.O); i >= 0 {
		return fmt.Errorf("%s: internal error: output entry %d is %v from finite inputs", method, i, out.O[i])
	}
	for i, l := range out.LSE {
		if math.IsNaN(l) || math.IsInf(l, 1) {
			return fmt.Errorf("%s: internal error: log-sum-exp of row %d is %v from finite inputs", method, i, l)
		}
	}
	return nil
}

// shorterInRange returns an error wrapping attn.ErrUnsupported if a query
// head that sees fewer keys than its group (short) has a value column
// whose largest magnitude over its own keys (the unit of its rows' errors)
// lies below lo once its group's column is scaled as FitMax scales it
// (cm): the products of its weights and values would then underflow in
// that unit, which a method whose bound assumes values in [lo, hi] does not
// count. (Exact attention counts it; float32 inputs never reach it.)
func shorterInRange[T attn.Float](method string, p *attn.Problem[T], cm []float64, short []HeadMax, lo, hi float64) error {
	scaled := Needed(cm, lo, hi)
	for _, s := range short {
		kh := p.KVHead(s.Head)
		for c, m := range s.Max {
			unit := m
			if g := cm[kh*p.E+c]; scaled && g > 0 {
				_, exp := math.Frexp(g)
				unit = math.Ldexp(m, -exp)
			}
			if m > 0 && unit < lo {
				return fmt.Errorf("%w: %s: query head %d sees values of at most %.3g in column %d over its %d keys, %.3g times its group's largest (%.3g): its products would underflow in float64; use the exact method",
					attn.ErrUnsupported, method, s.Head, m, c, s.Keys, m/cm[kh*p.E+c], cm[kh*p.E+c])
			}
		}
	}
	return nil
}

// Run computes p into out with compute, which gets the problem with its
// values scaled into [lo, hi] (Fit) and the subnormal outputs' share of
// the bound (SubnormalOutput of the original values, every query head's
// over its own keys); it refuses (shorterInRange) a query head whose
// values are too small for the method's float64 sums. Then it restores the
// output, checks it finite and records in the statistics whether values
// were scaled. It is the forward wrapper of the methods that compute in
// float64 internally.
func Run[T attn.Float](method string, p *attn.Problem[T], out *attn.Output[T], lo, hi float64,
	compute func(q *attn.Problem[T], subnormal float64) (attn.Stats, error)) (attn.Stats, error) {
	cm := ColumnMax(p, p.Workers)
	short := ShorterHeads(p)
	if err := shorterInRange(method, p, cm, short, lo, hi); err != nil {
		return attn.Stats{}, err
	}
	q, sc := FitMax(p, cm, lo, hi)
	for _, s := range short {
		cm = append(cm, s.Max...)
	}
	st, err := compute(q, Subnormal[T](cm))
	if err != nil {
		return st, err
	}
	Restore(sc, out)
	if err := CheckFinite(method, out); err != nil {
		return attn.Stats{}, err
	}
	if st.Details == nil {
		st.Details = map[string]any{}
	}
	st.Details["values_scaled"] = sc != nil
	return st, nil
}
