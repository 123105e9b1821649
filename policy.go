package fastattn

import (
	"fmt"

	"github.com/fastattn/fastattn/attn"
)

// slowerThanExact tells, for a method the caller named explicitly (name is
// Options.Method; "" and Auto get no note), whether
// the planners predict it slower than exact attention on p, with a note
// giving both predictions. An explicit method runs whatever its cost (the
// caller may want its error, not its speed); this only says so. Methods
// without a planner, and inputs a planner declines, get no note.
func slowerThanExact[T Float](p *attn.Problem[T], name string) (string, bool) {
	if name == "" || name == Auto || name == DefaultMethod {
		return "", false
	}
	pl, ok := methods[name].(attn.Planner)
	ex, exOK := methods[DefaultMethod].(attn.Planner)
	if !ok || !exOK {
		return "", false
	}
	est, err := attn.EstimateCost(pl, p)
	if err != nil {
		return "", false
	}
	exEst, err := attn.EstimateCost(ex, p)
	if err != nil || est.Seconds <= exEst.Seconds {
		return "", false
	}
	return fmt.Sprintf("%s was requested and ran, but it was predicted slower than %s on this input (~%.3g s against ~%.3g s)",
		name, DefaultMethod, est.Seconds, exEst.Seconds), true
}
