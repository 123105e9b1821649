package attntest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/fastattn/fastattn/attn"
)

// RunPlanner checks the planner contract on every conformance case, plain
// and with options, in both element types, at cfg.Eps and at an eps no
// method can certify (1e-13): an estimate succeeds exactly when the
// forward pass does not decline. A method whose estimate fails where it
// would have run is never chosen by auto where it might pay; one whose
// estimate succeeds where it then declines makes auto fall back after the
// fact. A failing estimate must wrap attn.ErrUnsupported, a successful one
// give a positive, finite time and a non-negative memory figure.
//
// m must implement attn.Planner.
func RunPlanner(t *testing.T, m attn.Method, cfg Config) {
	pl, ok := m.(attn.Planner)
	if !ok {
		t.Fatalf("%s does not implement attn.Planner", m.Name())
	}
	for _, eps := range []float64{cfg.Eps, 1e-13} {
		for _, c := range append(Cases(), OptionCases()...) {
			p := c.Generate(1)
			p.Eps = eps
			if err := checkPlanner(m, pl, p); err != nil {
				t.Errorf("%s, eps %g, float64: %v", c.Name, eps, err)
			}
			if err := checkPlanner(m, pl, To32(p)); err != nil {
				t.Errorf("%s, eps %g, float32: %v", c.Name, eps, err)
			}
		}
	}
}

// checkPlanner compares m's estimate on p with what its forward does.
func checkPlanner[T attn.Float](m attn.Method, pl attn.Planner, p *attn.Problem[T]) error {
	est, estErr := attn.EstimateCost(pl, p)
	_, fwdErr := attn.Forward(context.Background(), m, p, attn.NewOutput(p))
	declined := errors.Is(fwdErr, attn.ErrUnsupported)
	switch {
	case estErr != nil && !errors.Is(estErr, attn.ErrUnsupported):
		return fmt.Errorf("the estimate failed with %v, which does not wrap attn.ErrUnsupported", estErr)
	case estErr != nil && !declined:
		return fmt.Errorf("the estimate declined (%v) but the forward pass ran (error %v)", estErr, fwdErr)
	case estErr == nil && declined:
		return fmt.Errorf("the estimate succeeded (%.3g s) but the forward pass declined: %v", est.Seconds, fwdErr)
	case estErr == nil && !(est.Seconds > 0 && !math.IsInf(est.Seconds, 0) && est.Bytes >= 0):
		return fmt.Errorf("the estimate gives %g s and %g bytes; want a positive, finite time and non-negative memory", est.Seconds, est.Bytes)
	}
	return nil
}
