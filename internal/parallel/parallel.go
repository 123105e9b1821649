// Package parallel is the one loop the methods share for spreading
// numbered tasks over workers: tasks are handed out in increasing order to
// whichever worker is free, so uneven tasks (causal rows, padded heads,
// other load on the machine) still balance, and no new task starts once
// the context is cancelled.
package parallel

import (
	"context"
	"sync"
	"sync/atomic"
)

// ForEach runs f(s, t) for every t in [first, end), on one goroutine per
// element of states (but no more goroutines than tasks), each goroutine
// passing its own state s. It stops handing out tasks once ctx is
// cancelled and returns when every started task has finished; the caller
// checks ctx.Err() afterwards.
func ForEach[S any](ctx context.Context, states []S, first, end int, f func(s S, t int)) {
	if end <= first {
		return
	}
	var next atomic.Int64
	next.Store(int64(first))
	var wg sync.WaitGroup
	for _, s := range states[:min(len(states), end-first)] {
		wg.Go(func() {
			for ctx.Err() == nil {
				t := int(next.Add(1) - 1)
				if t >= end {
					return
				}
				f(s, t)
			}
		})
	}
	wg.Wait()
}

// For runs f(t) for every t in [0, n) on up to workers goroutines (at
// least one), as ForEach does.
func For(ctx context.Context, workers, n int, f func(t int)) {
	ForEach(ctx, make([]struct{}, max(workers, 1)), 0, n, func(_ struct{}, t int) { f(t) })
}
