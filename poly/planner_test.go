package poly

import (
	"testing"

	"github.com/fastattn/fastattn/attn/attntest"
)

func TestPlannerContract(t *testing.T) {
	attntest.RunPlanner(t, Method{}, attntest.Config{Eps: 1e-3})
}
