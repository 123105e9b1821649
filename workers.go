package fastattn

import (
	"time"

	"github.com/fastattn/fastattn/internal/parallel"
)

// SetWorkerPoll sets how long the library's worker goroutines keep polling
// for the next call after they finish one, before they sleep, and returns
// the previous setting; d < 0 counts as 0 (sleep at once). The default is
// 100 us, about what waking a sleeping worker costs on a VM. A call that
// comes while its workers still poll starts at once on every core; one
// that comes later waits for a worker to wake, and short calls (a decoding
// step against a few thousand keys) may run mostly on the calling
// goroutine meanwhile. A model that calls attention once per layer, with
// other work in between, finds its workers asleep at every call unless
// the poll outlasts that work: decoding steps against 4096 keys (8 query
// heads on 2 key/value heads, d = 128, float32), each after 300 us of
// other work on the calling goroutine, took 0.66-0.69x the time with a
// poll of 1 ms (BenchmarkWorkerPoll, four runs on a 2-vCPU VM: 192-216
// us against 293-315). Polling workers yield to any
// other goroutine that is ready, but keep a core busy that another
// process could use. The setting is process-wide and safe to change at
// any time; calls in flight keep the value they started with.
func SetWorkerPoll(d time.Duration) time.Duration {
	return parallel.SetPoll(max(d, 0))
}
