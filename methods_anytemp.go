package fastattn

import "github.com/fastattn/fastattn/anytemp"

func init() { registerMethod(anytemp.Method{}) }
