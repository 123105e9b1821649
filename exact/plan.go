package exact

import (
	"context"
	"fmt"
	"runtime"
	"unsafe"

	"github.com/fastattn/fastattn/attn"
)

// The cost model: exact attention's time is
//
//	(pairs * pair + flops / flopRate) / workers + K,V bytes / streamBytesPerSecond
//
// where pairs = sum over rows of the keys they attend and flops = 2 pairs
// (d + e). The first term is the per-score work (row max, exp, masking,
// and the GEMMs' short inner loops at small d) and the two GEMMs, with
// per-core rates measured at first use (calibrate.go); the second is one
// pass over the keys and values, which bounds decoding (a few query rows
// against many keys). The streaming rate is a fixed figure: measuring it
// would mean reading a buffer larger than the last-level cache, too much
// for a planner's first call. 13 GB/s is the single-stream rate of the
// project's earlier 2-core AMD EPYC machine; a slower memory only makes
// decoding estimates optimistic, and decoding is never a case where
// another method wins.
const streamBytesPerSecond = 13e9

// rates are one element type's per-core constants of the cost model: the
// GEMMs' flop rate and the seconds per score.
type rates struct{ flops, pair float64 }

func ratesFor32() rates { return measuredRates32() }

func ratesFor64() rates { return measuredRates64() }

// Estimate32 predicts the cost on a float32 problem: in float32, or in
// float64 arithmetic when the float32 rounding bound misses p.Eps (see
// bound.go); an error wrapping attn.ErrUnsupported when neither meets it.
func (m Method) Estimate32(p *attn.Problem[float32]) (attn.Estimate, error) {
	p, release := widened(p, m.Workers) // the bound needs the keys' statistics
	defer release()
	pl, err := planPrecision(context.Background(), p, m.Workers)
	if err != nil {
		return attn.Estimate{}, err
	}
	if pl.arith == compensated {
		return compensatedEstimate(p, m.Workers, pl.bound), nil
	}
	if pl.arith == promote {
		est := estimate(p, m.Workers, ratesFor64())
		est.Seconds *= 1.05 // converting the inputs and output
		est.Bytes += 8 * float64(len(p.Q)+len(p.K)+len(p.V)+p.Heads*p.N*p.E)
		est.Reason += fmt.Sprintf(", in float64: the float32 rounding bound misses eps (bound %.2g)", pl.bound)
		return est, nil
	}
	est := estimate(p, m.Workers, ratesFor32())
	est.Reason += fmt.Sprintf(", bound %.2g", pl.bound)
	return est, nil
}

// Estimate64 predicts the cost on a float64 problem, or refuses an eps the
// rounding bound cannot meet.
func (m Method) Estimate64(p *attn.Problem[float64]) (attn.Estimate, error) {
	pl, err := planPrecision(context.Background(), p, m.Workers)
	if err != nil {
		return attn.Estimate{}, err
	}
	if pl.arith == compensated {
		return compensatedEstimate(p, m.Workers, pl.bound), nil
	}
	est := estimate(p, m.Workers, ratesFor64())
	est.Reason += fmt.Sprintf(", bound %.2g", pl.bound)
	return est, nil
}

// compensatedPairSeconds is the time per (query, key) pair and unit of
// d + e + 10 of compensated arithmetic on one core: 5.4-9.4 ns measured on
// one worker at n = m = 512, d = e = 16, float64, with the machine's load
// average at 10-12 (the lower figure taken).
const compensatedPairSeconds = 5.4e-9

func compensatedEstimate[T attn.Float](p *attn.Problem[T], workers int, b float64) attn.Estimate {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	pairs := Flops(p) / float64(2*(p.D+p.E))
	return attn.Estimate{
		Seconds: pairs * float64(p.D+p.E+10) * compensatedPairSeconds / float64(workers),
		Bytes:   float64(workers) * 16 * float64(p.M),
		Reason:  fmt.Sprintf("compensated arithmetic (the float64 bound misses eps), bound %.2g", b),
	}
}

// estimate applies the cost model with the work spread over workers (0:
// GOMAXPROCS). Memory is the workers' tiles plus the packed keys.
func estimate[T attn.Float](p *attn.Problem[T], workers int, r rates) attn.Estimate {
	f := Flops(p)
	var zero T
	size := float64(unsafe.Sizeof(zero))
	// Keys and values are streamed once per tile of their query heads
	// that reads them; with grouped heads, once per key/value head when the
	// group's rows share tiles (decoding).
	kv := float64(p.KVHeadCount()) * float64(p.M) * float64(p.D+p.E) * size
	if p.Workers > 0 {
		workers = p.Workers
	}
	pl := makePlan(p, workers)
	busy := float64(min(pl.workers, max(len(pl.tasks), 1)))
	bytes := float64(pl.workers) * (float64(queryTile*scoreStride)*size + float64(queryTile*p.E)*(size+8))
	if pl.pack {
		bytes += min(float64(packBudget), float64(p.KVHeadCount())*float64(p.M)*float64(p.D)*size)
	}
	return attn.Estimate{
		Seconds: (f/float64(2*(p.D+p.E))*r.pair+f/r.flops)/busy + kv/streamBytesPerSecond,
		Bytes:   bytes,
		Reason:  fmt.Sprintf("%.3g flops", f),
	}
}
