package fastattn

import (
	"math"
	"slices"
)

// Merge combines results computed over disjoint sets of keys for the same
// queries into the result over their union, exactly, through the rows'
// log-sum-exps (as xformers' merge_attentions does):
//
//	LSE = log sum_p exp(LSE_p),  Out = sum_p exp(LSE_p - LSE) Out_p.
//
// So keys can be split across workers or machines. Rows with no key in any
// part stay zero with LSE -Inf.
//
// The merged Report.ErrorBound is the largest of the parts' (each part's
// bound is relative to its own value columns, which the union's dominate),
// and it counts only the errors of the parts' outputs, not those of their
// log-sum-exps, which weigh the parts: a log-sum-exp off by delta moves the
// merged row by up to (e^(2 delta) - 1) max|V|. The parts do not report
// delta yet, and it is not always negligible: the methods add s q.c back to
// log-sum-exps computed on keys centred on c, and for keys far from the
// origin that rounding dominates. With keys offset by 4.4e5, two exact
// float64 parts merged into rows off by 2.5e-12 against a stated 2.7e-14.
// Until the parts report it, the merged bound is not certified: it is right
// only where that rounding is negligible (keys near the origin).
//
// Attention sinks join a row's softmax once: pass Options.Sinks to exactly
// one of the parts (any one; a part whose rows see no key then carries just
// the sink, LSE = sink). Merge refuses parts of which more than one was
// computed with sinks, since the union would count them twice. Grouped
// key/value heads need nothing special: parts split the keys, not the heads.
func Merge[T Float](parts ...*Result[T]) (*Result[T], error) {
	if len(parts) == 0 {
		return nil, invalid("Merge needs at least one result")
	}
	first := parts[0]
	withSinks := -1
	for i, r := range parts {
		if r == nil {
			return nil, invalid("Merge: result %d is nil", i)
		}
		if !slices.Equal(r.Out.Shape, first.Out.Shape) || !slices.Equal(r.LSE.Shape, first.LSE.Shape) {
			return nil, invalid("Merge: result %d has output shape %v, result 0 has %v; parts must cover the same queries", i, r.Out.Shape, first.Out.Shape)
		}
		if err := r.Out.check("merged output"); err != nil {
			return nil, err
		}
		if err := r.LSE.check("merged LSE"); err != nil {
			return nil, err
		}
		if r.Report.Scale != first.Report.Scale || r.Report.Causal != first.Report.Causal {
			return nil, invalid("Merge: result %d was computed with scale %g, causal %v; result 0 with scale %g, causal %v", i, r.Report.Scale, r.Report.Causal, first.Report.Scale, first.Report.Causal)
		}
		if r.Report.Sinks {
			if withSinks >= 0 {
				return nil, invalid("Merge: results %d and %d were both computed with sinks; give Options.Sinks to one part only, so the sink joins each row's softmax once", withSinks, i)
			}
			withSinks = i
		}
		for row, l := range r.LSE.Data {
			if math.IsNaN(l) || math.IsInf(l, 1) {
				return nil, invalid("Merge: result %d has log-sum-exp %g at row %d; parts must be finite or -Inf (no keys)", i, l, row)
			}
		}
	}
	rows := len(first.LSE.Data)
	if rows == 0 || len(first.Out.Data)%rows != 0 {
		return nil, invalid("Merge: %d output values do not split into %d rows", len(first.Out.Data), rows)
	}
	e := len(first.Out.Data) / rows
	out := make([]T, len(first.Out.Data))
	lse := make([]float64, rows)
	acc := make([]float64, e)
	for i := range rows {
		mx := math.Inf(-1)
		for _, r := range parts {
			mx = max(mx, r.LSE.Data[i])
		}
		if math.IsInf(mx, -1) {
			lse[i] = mx
			continue
		}
		clear(acc)
		var sum float64
		for _, r := range parts {
			w := math.Exp(r.LSE.Data[i] - mx)
			sum += w
			for c, x := range r.Out.Data[i*e : (i+1)*e] {
				acc[c] += w * float64(x)
			}
		}
		for c := range acc {
			out[i*e+c] = T(acc[c] / sum)
		}
		lse[i] = mx + math.Log(sum)
	}
	rep := first.Report
	rep.Method = "merge"
	rep.Reason, rep.Note, rep.PredictedSlowerThanExact = "", "", false
	rep.Seconds, rep.Flops, rep.GFlops, rep.ExactFlops, rep.M, rep.SampledRows = 0, 0, 0, 0, 0, 0
	for _, r := range parts {
		rep.Seconds += r.Report.Seconds
		rep.Flops += r.Report.Flops
		rep.ExactFlops += r.Report.ExactFlops
		rep.M += r.Report.M
		rep.ErrorBound = max(rep.ErrorBound, r.Report.ErrorBound)
		rep.ObservedError = max(rep.ObservedError, r.Report.ObservedError)
		rep.SampledRows += r.Report.SampledRows
		rep.Sinks = rep.Sinks || r.Report.Sinks
	}
	if rep.Seconds > 0 {
		rep.GFlops = rep.Flops / rep.Seconds / 1e9
	}
	return &Result[T]{
		Out:    Tensor[T]{Data: out, Shape: slices.Clone(first.Out.Shape)},
		LSE:    Tensor[float64]{Data: lse, Shape: slices.Clone(first.LSE.Shape)},
		Report: rep,
	}, nil
}
