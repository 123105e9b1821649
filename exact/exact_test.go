package exact

import (
	"testing"

	"github.com/fastattn/fastattn/attn/attntest"
)

func TestConformance(t *testing.T) {
	attntest.Run(t, Method{}, attntest.Config{})
}

// TestSingleWorker checks that results do not depend on the parallel split.
func TestSingleWorker(t *testing.T) {
	for _, c := range attntest.Cases()[:8] {
		attntest.RunCase(t, Method{Workers: 1}, attntest.Config{}, c, 7)
	}
}
