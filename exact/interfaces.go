package exact

import "github.com/fastattn/fastattn/attn"

// Method implements the contract's method, planner and gradient
// interfaces; a method that stopped satisfying one would silently drop out
// of auto (Planner) or Gradient (Differentiable), so the compiler checks.
var (
	_ attn.Method         = Method{}
	_ attn.Planner        = Method{}
	_ attn.Differentiable = Method{}
)
