// Package parallel is the one loop the methods share for spreading
// numbered tasks over workers: tasks are handed out in increasing order to
// whichever worker is free, so uneven tasks (causal rows, padded heads,
// other load on the machine) still balance, and no new task starts once
// the context is cancelled. The workers are the calling goroutine and
// helpers from one pool the process shares (Crew), which poll for a while
// after a call so that the next finds them awake.
package parallel

import "context"

// ForEach runs f(s, t) for every t in [first, end), on the calling
// goroutine and pooled helpers (see Crew), one per element of states (but
// no more than tasks), each worker passing its own state s. It stops
// handing out tasks once ctx is cancelled and returns when every started
// task has finished; the caller checks ctx.Err() afterwards.
func ForEach[S any](ctx context.Context, states []S, first, end int, f func(s S, t int)) {
	if end <= first {
		return
	}
	c := new(Crew)
	c.Work = func(w int) {
		for ctx.Err() == nil {
			t, ok := c.Take(end - first)
			if !ok {
				return
			}
			f(states[w], first+t)
		}
	}
	c.Run(min(len(states), end-first))
}

// For runs f(t) for every t in [0, n) on up to workers goroutines (at
// least one), as ForEach does.
func For(ctx context.Context, workers, n int, f func(t int)) {
	ForEach(ctx, make([]struct{}, max(workers, 1)), 0, n, func(_ struct{}, t int) { f(t) })
}
