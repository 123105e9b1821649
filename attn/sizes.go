package attn

import "fmt"

// CheckGradientSizes checks the slices a Backward call gets against p: the
// forward's output and log-sum-exp, dO, and the gradients to fill. Every
// Differentiable method calls it before any work.
func CheckGradientSizes[T Float](p *Problem[T], out *Output[T], dO []T, g *Gradients[T]) error {
	if out == nil || g == nil {
		return fmt.Errorf("%w: nil output or gradients", ErrBadProblem)
	}
	for _, c := range []struct {
		name   string
		got, n int
	}{
		{"O", len(out.O), p.Heads * p.N * p.E},
		{"LSE", len(out.LSE), p.Heads * p.N},
		{"dO", len(dO), p.Heads * p.N * p.E},
		{"DQ", len(g.DQ), len(p.Q)},
		{"DK", len(g.DK), p.KVHeadCount() * p.M * p.D},
		{"DV", len(g.DV), p.KVHeadCount() * p.M * p.E},
		{"DSinks", len(g.DSinks), len(p.Sinks)},
	} {
		if c.got != c.n {
			return fmt.Errorf("%w: %s has %d entries, want %d", ErrBadProblem, c.name, c.got, c.n)
		}
	}
	return nil
}
