package exact

import (
	"context"
	"math"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
)

// TestRowKernelsSameResult checks that the row-block softmax kernels give
// float32 forward passes the same output and log-sum-exps, bit for bit, as
// the per-row steps, with and without the NaN/Inf scan, causal or not, at
// key counts that leave a partial last tile.
func TestRowKernelsSameResult(t *testing.T) {
	defer func() { rowKernels = true }()
	for _, c := range []attntest.Case{
		{Heads: 2, N: 700, M: 1100, D: 64, E: 64},
		{Heads: 1, N: 900, M: 900, D: 32, E: 48, Causal: true},
		{Heads: 2, KVHeads: 1, N: 600, M: 1030, D: 128, E: 128},
	} {
		for _, assume := range []bool{false, true} {
			p := attntest.To32(c.Generate(3))
			p.AssumeFinite = assume
			var outs [2]*attn.Output[float32]
			for i, on := range []bool{false, true} {
				rowKernels = on
				outs[i] = attn.NewOutput(p)
				if _, err := (Method{}).Forward32(context.Background(), p, outs[i]); err != nil {
					t.Fatal(err)
				}
			}
			for j := range outs[0].O {
				if math.Float32bits(outs[0].O[j]) != math.Float32bits(outs[1].O[j]) {
					t.Fatalf("%+v: output %d: %g per row, %g with the row kernels", c, j, outs[0].O[j], outs[1].O[j])
				}
			}
			for j := range outs[0].LSE {
				if math.Float64bits(outs[0].LSE[j]) != math.Float64bits(outs[1].LSE[j]) {
					t.Fatalf("%+v: LSE %d: %g per row, %g with the row kernels", c, j, outs[0].LSE[j], outs[1].LSE[j])
				}
			}
		}
	}
}
