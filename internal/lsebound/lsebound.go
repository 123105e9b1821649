// Package lsebound bounds the error of a method's log-sum-exps
// (attn.Stats.LSEBound), which weigh results over parts of the keys when
// they are merged: a part's log-sum-exp off by delta moves a merged row by
// up to (e^(2 delta) - 1) max|V|.
//
// Every method computes a row's log-sum-exp as m + log(sum) + s q.c: the
// sum of the row's weights exp(y_j - m) (and a sink's), within a relative
// eta of exact, on logits y_j of keys centred on c (no c: not centred),
// with m a reference logit (the row's largest, or 0) and the shift s q.c
// added back in float64 (sinkshift.ShiftBound). So its error is at most
// -log(1 - eta), the sum's, plus the float64 rounding of the rest
// (Rounding).
package lsebound

import (
	"context"
	"math"
	"runtime"
	"slices"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/parallel"
	"github.com/fastattn/fastattn/internal/sinkshift"
)

// SumError is the error, in nats, of the log of a sum computed within a
// relative eta: -log(1 - eta), +Inf when eta >= 1.
func SumError(eta float64) float64 {
	if !(eta < 1) {
		return math.Inf(1)
	}
	return -math.Log1p(-eta)
}

// FromOutputBound is SumError for a method whose entrywise output bound b
// is at least 2 eta / (1 - eta), with eta its rows' sums' relative error
// (the form of every bound that perturbs numerator and denominator by eta):
// then eta <= b / (2 + b), so -log(1 - eta) <= log(1 + b/2).
func FromOutputBound(b float64) float64 { return math.Log1p(b / 2) }

// Rounding bounds the float64 rounding of a log-sum-exp lse of a row with
// query q (d entries, scale s; nil when c is) over l keys centred on c
// (nil: not centred) and sink logit sink (-Inf: none): the shift s q.c
// (accurate.ScaledDot; err its error, sinkshift.ShiftBound) added to the centred log-sum-exp m +
// log(sum), and, with a sink, taken from the sink's logit, whose weight
// exp(sink - s q.c - m) joins the sum. Each rounding is relative to at most
// |s q.c| + |sink| + |lse| + log(l + 2) + 1 (|m| is at most the centred
// log-sum-exp plus log(l + 2), and that at most |lse| + |s q.c| + err),
// five of them at most, so
//
//	2 err + gamma_64(8) (|s q.c| + |sink| + |lse| + log(l + 2) + 1)
//
// (err twice: in the log-sum-exp and in the sink's logit).
func Rounding[T attn.Float](q []T, c []float64, scale, sink, lse float64, l int) float64 {
	mag, err := sinkshift.ShiftBound(q, c, scale)
	if math.IsInf(sink, -1) {
		sink = 0
	}
	const u = 0x1p-53
	k := 8 * u
	return 2*err + k/(1-k)*(mag+math.Abs(sink)+math.Abs(lse)+math.Log(float64(l+2))+1)
}

// RoundingAPriori is Rounding for every row of a call on uncentred keys
// whose logits all satisfy |s q.k| <= logit, over at most l keys, with
// sink logit sink (-Inf: none): such a row's log-sum-exp lies within
// max(logit, |sink|) + log(l + 1) of 0, which stands in for |lse|.
func RoundingAPriori(logit, sink float64, l int) float64 {
	bound := max(logit, 0)
	if !math.IsInf(sink, -1) {
		bound = max(bound, math.Abs(sink))
	}
	return Rounding[float64](nil, nil, 0, sink, bound+math.Log(float64(l+1)), l)
}

// Bound is attn.Stats.LSEBound of a call on p that computed the
// log-sum-exps lse with sums within sumErr nats (SumError or
// FromOutputBound) on the keys of query head h centred on centre(h) (nil
// centre, or a nil result: not centred): sumErr plus the largest Rounding
// over the rows with keys or a sink (those with lse -Inf have none). Rows
// of centred heads bound their shifts again (a pass over the row's query),
// so when there are any the rows are spread over GOMAXPROCS goroutines in
// chunks; without, a pass over the log-sum-exps is cheaper than waking
// them.
func Bound[T attn.Float](p *attn.Problem[T], lse []float64, sumErr float64, centre func(h int) []float64) float64 {
	d, rows := p.D, p.Heads*p.N
	chunks := (rows + chunkRows - 1) / chunkRows
	worst := make([]float64, chunks)
	chunk := func(x int) {
		// A run of rows of one head; an uncentred head's Rounding grows
		// with |lse| alone, so its largest |lse| stands for the run (and a
		// NaN carries through max as it would row by row).
		for r := x * chunkRows; r < min(rows, (x+1)*chunkRows); {
			h := r / p.N
			end := min(rows, (x+1)*chunkRows, (h+1)*p.N)
			var c []float64
			if centre != nil {
				c = centre(h)
			}
			if c == nil {
				if big, ok := largestMagnitude(lse[r:end]); ok {
					worst[x] = max(worst[x], Rounding[T](nil, nil, p.Scale, p.Sink(h), big, p.KeyLen(h)))
				}
				r = end
				continue
			}
			for ; r < end; r++ {
				if !math.IsInf(lse[r], -1) {
					worst[x] = max(worst[x], Rounding(p.Q[r*d:(r+1)*d], c, p.Scale, p.Sink(h), lse[r], p.KeyLen(h)))
				}
			}
		}
	}
	centred := false
	for h := 0; h < p.Heads && centre != nil && !centred; h++ {
		centred = centre(h) != nil
	}
	if chunks > 1 && centred {
		parallel.For(context.Background(), runtime.GOMAXPROCS(0), chunks, chunk)
	} else {
		for x := range chunks {
			chunk(x)
		}
	}
	return sumErr + slices.Max(append(worst, 0))
}

// largestMagnitude is the largest |x| over the entries of lse other than -Inf
// (rows without keys or a sink), NaN if one is NaN; ok false when every
// entry is -Inf.
func largestMagnitude(lse []float64) (big float64, ok bool) {
	for _, v := range lse {
		if !math.IsInf(v, -1) {
			big, ok = max(big, math.Abs(v)), true
		}
	}
	return big, ok
}

// chunkRows is how many rows one task of Bound takes.
const chunkRows = 1024
