package fastattn

import (
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/fastattn/fastattn/attn"
)

// Auto is the method name that lets the planner choose.
const Auto = "auto"

// choose picks, among the methods that can estimate their cost, the one
// predicted fastest that meets the problem's eps, and explains the choice.
// When no method can meet eps (exact's rounding bound included) the error
// wraps attn.ErrUnsupported and carries every method's reason.
func choose[T Float](p *attn.Problem[T]) (string, string, error) {
	best, bestSec := "", math.Inf(1)
	var notes []string
	for _, name := range Methods() {
		pl, ok := methods[name].(attn.Planner)
		if !ok {
			continue
		}
		est, err := attn.EstimateCost(pl, p)
		if errors.Is(err, attn.ErrBadProblem) {
			return "", "", inputError{err} // bad input, whichever method
		}
		if err != nil {
			notes = append(notes, fmt.Sprintf("%s does not apply (%s)", name, strings.TrimPrefix(err.Error(), attn.ErrUnsupported.Error()+": ")))
			continue
		}
		notes = append(notes, fmt.Sprintf("%s ~%.3g s (%s)", name, est.Seconds, est.Reason))
		if est.Seconds < bestSec {
			best, bestSec = name, est.Seconds
		}
	}
	if best == "" {
		// Every method refused: none can certify eps here (each note
		// says why, exact's which eps it can reach).
		return "", "", fmt.Errorf("fastattn: %w: no method can certify eps = %g on this input: %s", attn.ErrUnsupported, p.Eps, strings.Join(notes, "; "))
	}
	return best, fmt.Sprintf("auto chose %s, predicted fastest at eps = %g: %s", best, p.Eps, strings.Join(notes, "; ")), nil
}
