package exact

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/timing"
)

// The planner's per-core rates are measured once per process, on first
// use (calibrate), on the forward loop itself: the kernels' dispatch level
// (AVX-512, AVX2 or the portable Go loops) and the core's speed are then
// the ones the prediction is about, and auto compares exact with the
// approximate methods, which calibrate the same way, on one footing.
var (
	measuredRates32 = sync.OnceValue(calibrate[float32])
	measuredRates64 = sync.OnceValue(calibrate[float64])
)

// Calibration shape: n = m = calibrateRows, run at two head dimensions
// whose flops per score differ eightfold, so the two runs separate the
// per-score term from the GEMMs' flop rate. About 10 ms in float32 and 20
// ms in float64 on an AVX-512 core.
const (
	calibrateRows            = 1024
	calibrateDimSmall        = 8
	calibrateDimLarge        = 64
	calibrateReps            = 3
	calibrateFallbackFlops   = 1e9   // per core, if the timings contradict the model
	calibrateFallbackPairSec = 10e-9 // per score and core, likewise
)

// calibrate times the forward on one worker at calibrateDimSmall and
// calibrateDimLarge and solves
//
//	seconds = pairs * pair + flops / rate
//
// for the per-core rates (time shrinks with the workers in estimate).
func calibrate[T attn.Float]() rates {
	r := rand.New(rand.NewPCG(11, 13))
	ctx := context.Background()
	timeAt := func(d int) (seconds, flops float64) {
		n := calibrateRows
		q, k, v := make([]T, n*d), make([]T, n*d), make([]T, n*d)
		for _, x := range [][]T{q, k, v} {
			for i := range x {
				x[i] = T(r.NormFloat64())
			}
		}
		p := &attn.Problem[T]{Heads: 1, N: n, M: n, D: d, E: d, Q: q, K: k, V: v,
			Scale: 1 / math.Sqrt(float64(d)), AssumeFinite: true}
		out := attn.NewOutput(p)
		run := func() {
			// The input is well formed and finite and the context
			// never ends, so forward has no error to return.
			_, _ = forward(ctx, 1, p, out, nil)
		}
		return timing.BestOnThread(calibrateReps, run), Flops(p)
	}
	ts, fs := timeAt(calibrateDimSmall)
	tl, fl := timeAt(calibrateDimLarge)
	pairs := float64(calibrateRows) * calibrateRows
	perFlop := (tl - ts) / (fl - fs)
	if !(perFlop > 0) {
		// The larger run was not slower (a disturbed machine): charge
		// the time to the flops alone.
		perFlop = tl / fl
	}
	pair := max((ts-fs*perFlop)/pairs, 0)
	rt := rates{flops: 1 / perFlop, pair: pair}
	if math.IsInf(rt.flops, 0) || math.IsNaN(rt.flops) || math.IsNaN(rt.pair) {
		rt = rates{flops: calibrateFallbackFlops, pair: calibrateFallbackPairSec}
	}
	return rt
}
