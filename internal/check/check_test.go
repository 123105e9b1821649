package check

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
	"github.com/fastattn/fastattn/internal/accurate"
)

// problem is a one-head problem of standard normal entries, scale 0.3,
// with keys shifted by offset.
func problem(n, m, d int, offset float64, seed uint64) *attn.Problem[float64] {
	p := attntest.Case{Heads: 1, N: n, M: m, D: d, E: 2, Scale: 0.3}.Generate(seed)
	for i := range p.K {
		p.K[i] += offset
	}
	return p
}

// TestForwardCatches: a correct output passes, one off by twice the bound
// fails with ErrExceeded and a message saying what was measured, whichever
// reference serves the bound: the accurate one for tight bounds, the plain
// one (plain.go) for loose ones.
func TestForwardCatches(t *testing.T) {
	for _, c := range []struct {
		n, m, d   int
		offset    float64
		bound     float64
		wantPlain bool
	}{
		{5, 50, 2, 1e6, 1e-13, false},
		{5, 50, 2, 1e6, 1e-9, true},
		{6, 5000, 4, 1e4, 1e-4, true},
	} {
		p := problem(c.n, c.m, c.d, c.offset, 1)
		out := attn.NewOutput(p)
		for i := range p.N {
			out.LSE[i] = accurate.Row(p, 0, i, out.O[i*p.E:(i+1)*p.E])
		}
		res, err := Forward(p, out, c.bound, 3)
		if err != nil || res.Rows != 3 {
			t.Fatalf("%+v: correct output: %+v, %v", c, res, err)
		}
		if plain := res.RefError > accurate.Error(p.M); plain != c.wantPlain || plain && res.RefError > c.bound/64 {
			t.Errorf("%+v: reference error %.3g (plain reference: %v)", c, res.RefError, plain)
		}
		colMax := attn.ColumnMaxAbs(p, 0, p.M)
		for i := range out.O {
			out.O[i] += 2 * c.bound * colMax[i%p.E]
		}
		_, err = Forward(p, out, c.bound, 3)
		if !errors.Is(err, ErrExceeded) {
			t.Fatalf("%+v: an output off by twice the bound: %v", c, err)
		}
		t.Log(err)
	}
}

// TestSampling: the rows and keys most likely to be wrong are sampled.
func TestSampling(t *testing.T) {
	p := problem(100, 200, 2, 0, 2)
	p.Q[37*2] = 50     // the widest row
	p.V[123*2+1] = 1e6 // the largest value
	p.K[77*2] = 1e3    // the farthest key
	r := rand.New(rand.NewPCG(1, 1))
	rows := QueryRows(p, 0, 4, r)
	keys := KeyRows(p, 0, 5, r)
	has := func(x []int, v int) bool {
		for _, y := range x {
			if y == v {
				return true
			}
		}
		return false
	}
	if !has(rows, 37) || !has(rows, 0) || !has(rows, 99) || len(rows) != 4 {
		t.Errorf("query rows %v", rows)
	}
	if !has(keys, 123) || !has(keys, 77) || len(keys) != 5 {
		t.Errorf("key rows %v", keys)
	}
}
