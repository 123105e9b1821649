package attntest

import (
	"fmt"
	"math"
	"slices"

	"github.com/fastattn/fastattn/attn"
)

// poisonOutput fills a fresh output with NaN, so that an entry a method
// never writes (a fully masked row it assumed was already zero, a tile
// boundary it skipped) fails the comparison with the reference instead of
// passing as the zero NewOutput happens to hold.
func poisonOutput[T attn.Float](out *attn.Output[T]) {
	nan := T(math.NaN())
	for i := range out.O {
		out.O[i] = nan
	}
	for i := range out.LSE {
		out.LSE[i] = math.NaN()
	}
}

// inputsSnapshot is a copy of a problem's input tensors.
type inputsSnapshot[T attn.Float] struct{ q, k, v []T }

func snapshotInputs[T attn.Float](p *attn.Problem[T]) inputsSnapshot[T] {
	return inputsSnapshot[T]{slices.Clone(p.Q), slices.Clone(p.K), slices.Clone(p.V)}
}

// unchanged checks that the method left Q, K and V as they were: methods
// may centre keys or reorder rows only in their own copies.
func (s inputsSnapshot[T]) unchanged(m attn.Method, p *attn.Problem[T]) error {
	for _, x := range []struct {
		name        string
		before, now []T
	}{{"Q", s.q, p.Q}, {"K", s.k, p.K}, {"V", s.v, p.V}} {
		if !slices.Equal(x.before, x.now) {
			return fmt.Errorf("%s modified its input %s", m.Name(), x.name)
		}
	}
	return nil
}
