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
// The merged Report.ErrorBound holds for the union: the largest of the
// parts' bounds (each relative to its own value columns, which the union's
// dominate), plus what the parts' log-sum-exp errors cost through the
// weights they give the parts (a log-sum-exp off by delta = the largest
// Report.LSEBound moves a merged row by at most (e^(2 delta) - 1) max|V|),
// plus the merge's own float64 rounding. Report.LSEBound is the parts'
// largest plus that rounding, so merged results merge again. (Before the
// parts stated their log-sum-exps' errors, the merged bound was the
// largest of theirs, and was false for keys far from the origin: with keys
// offset by 4.4e5, two exact float64 parts merged into rows off by 2.5e-12
// against a stated 2.7e-14.) Results built by hand, with a zero Report,
// state no error, and Merge takes them at their word.
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
	var lseMax float64
	tiny := false // an output below T's normal range
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
			y := acc[c] / sum
			out[i*e+c] = T(y)
			tiny = tiny || (y != 0 && math.Abs(y) < smallestNormal[T]())
		}
		lse[i] = mx + math.Log(sum)
		lseMax = max(lseMax, math.Abs(lse[i]))
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
		rep.LSEBound = max(rep.LSEBound, r.Report.LSEBound)
		rep.ObservedError = max(rep.ObservedError, r.Report.ObservedError)
		rep.SampledRows += r.Report.SampledRows
		rep.Sinks = rep.Sinks || r.Report.Sinks
	}
	if rep.Seconds > 0 {
		rep.GFlops = rep.Flops / rep.Seconds / 1e9
	}
	rep.ErrorBound, rep.LSEBound = mergedBounds[T](len(parts), rep.ErrorBound, rep.LSEBound, lseMax, tiny)
	return &Result[T]{
		Out:    Tensor[T]{Data: out, Shape: slices.Clone(first.Out.Shape)},
		LSE:    Tensor[float64]{Data: lse, Shape: slices.Clone(first.LSE.Shape)},
		Report: rep,
	}, nil
}

// mergedBounds returns Merge's ErrorBound and LSEBound from the parts'
// largest, b and delta, for P parts, merged log-sum-exps up to lseMax in
// magnitude, and tiny if an output fell below T's normal range.
//
// The weights, w_p = exp(LSE_p - max): each subtraction is off by u |x|
// in the exponent and exp by an ulp, so a weight is off by 2u w + u |x| w
// <= 2u w + u/e; since the largest weight is 1, the sum of the weights and
// the numerators' sums (with their P roundings) are within
// eta = gamma_64(2P + 4) of the sums on the parts' log-sum-exps as given,
// relative to the sum and to the sum times the largest |Out_p| (at most
// (1 + b) max|V|). So the merged output is within 2 eta / (1 - eta) + u
// (the division) of theirs, times 1 + b, and rounding it to T adds u_T. A
// result below T's normal range rounds by half T's smallest subnormal,
// and in float64 so may the products before it (P + 1 of them): each
// part's bound holds that step relative to its own column maxima (package
// vscale), and the part with the union's maximum of a column bounds it
// relative to the union's, so 2 (P + 1) b covers them. The log-sum-exp:
// the sum's eta in log, log's ulp of log P and the addition's u |LSE|,
// within gamma_64(2P + 8) (2 + log P + |LSE|).
func mergedBounds[T Float](parts int, b, delta, lseMax float64, tiny bool) (errorBound, lseBound float64) {
	const u = 0x1p-53
	gamma := func(n int) float64 { return float64(n) * u / (1 - float64(n)*u) }
	eta := gamma(2*parts + 4)
	round := (2*eta/(1-eta)+u)*(1+b) + unitRoundoff[T]()
	if tiny {
		round += 2 * float64(parts+1) * b
	}
	errorBound = b + math.Expm1(2*delta) + round
	lseBound = delta + gamma(2*parts+8)*(2+math.Log(float64(parts))+lseMax)
	return errorBound, lseBound
}

// unitRoundoff is T's unit roundoff.
func unitRoundoff[T Float]() float64 {
	if _, ok := any(T(0)).(float32); ok {
		return 0x1p-24
	}
	return 0x1p-53
}

// smallestNormal is T's smallest positive normal number.
func smallestNormal[T Float]() float64 {
	if _, ok := any(T(0)).(float32); ok {
		return 0x1p-126
	}
	return 0x1p-1022
}
