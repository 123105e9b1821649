package fastattn

import "github.com/fastattn/fastattn/attn"

// ErrUnsupported is wrapped by the error of a method that does not apply to
// an input or an option: a polynomial method that cannot certify eps, a
// method without a backward pass, an option a method does not implement.
// It is attn.ErrUnsupported, so errors.Is(err, fastattn.ErrUnsupported)
// holds for errors from Attend, Gradient and the methods themselves; the
// caller can then choose another method (exact attention always applies).
var ErrUnsupported = attn.ErrUnsupported
