package exact

import (
	"fmt"

	"github.com/fastattn/fastattn/attn"
)

// Measured throughput of the exact method (2nm(d+e) flops per second) on
// the project's 2-core machine with the SIMD kernels, used by the planner.
const (
	flopsPerSecond32 = 40e9
	flopsPerSecond64 = 20e9
)

// Estimate32 predicts the cost on a float32 problem.
func (Method) Estimate32(p *attn.Problem[float32]) (attn.Estimate, error) {
	return estimate(p, flopsPerSecond32), nil
}

// Estimate64 predicts the cost on a float64 problem.
func (Method) Estimate64(p *attn.Problem[float64]) (attn.Estimate, error) {
	return estimate(p, flopsPerSecond64), nil
}

func estimate[T attn.Float](p *attn.Problem[T], rate float64) attn.Estimate {
	f := Flops(p)
	return attn.Estimate{
		Seconds: f / rate,
		Bytes:   float64(queryTile*keyTile*8) * 4,
		Reason:  fmt.Sprintf("%.3g flops", f),
	}
}
