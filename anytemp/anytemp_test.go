package anytemp

import (
	"testing"

	"github.com/fastattn/fastattn/attn/attntest"
)

func TestConformance(t *testing.T) {
	for _, eps := range []float64{1e-2, 1e-3, 1e-5} {
		allow := eps < 1e-4 // logits of 1e9 cannot meet 1e-5 in float64 rounding
		t.Run("", func(t *testing.T) {
			attntest.Run(t, Method{}, attntest.Config{Eps: eps, AllowUnsupported: allow})
		})
	}
}
