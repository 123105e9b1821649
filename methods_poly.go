package fastattn

import "github.com/fastattn/fastattn/poly"

func init() { registerMethod(poly.Method{}) }
