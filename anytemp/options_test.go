package anytemp

import (
	"testing"

	"github.com/fastattn/fastattn/attn/attntest"
)

// TestSupportedOptions: grouped-query attention, top-left alignment and
// sinks, checked against the reference on the conformance suite's option
// cases, never declined.
func TestSupportedOptions(t *testing.T) {
	for _, c := range attntest.OptionCases() {
		p := c.Generate(3)
		if p.Features()&^(Method{}).Supports() != 0 {
			continue
		}
		t.Run(c.Name, func(t *testing.T) {
			attntest.RunCase(t, Method{}, attntest.Config{Eps: 1e-3}, c, 3)
		})
	}
}
