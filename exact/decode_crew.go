package exact

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// crewPoll is how long a helper keeps polling for the next call after it
// finishes one, before it sleeps. Waking a sleeping helper is slow on a
// VM, whose idle vCPU the host has halted: on a 2-vCPU Xeon VM the helper
// of a decoding step started a median 100-110 us after the call, which
// took 250 us (8 query heads, 2 key/value heads, 4096 keys, d = 128).
// Polling for about as long as a wake costs wastes at most that much per
// call and never more than twice what knowing the next call's time would
// (the ski-rental bound). Calls closer together than that find their
// helpers awake; calls further apart still pay the wake. Polling yields
// to any other goroutine that is ready (runtime.Gosched).
var crewPoll = 100 * time.Microsecond

// crew is a set of worker goroutines kept between calls, so that a call
// (a decoding step, say) hands out its tasks without starting goroutines,
// which allocates. The owner sets work once; run(n) calls work(0) on the
// calling goroutine and work(1..n-1) on helpers, started on first use; the
// workers share the tasks through take. close stops the helpers: owners
// call it from a cleanup of the value their users hold (the helpers refer
// to the crew, so the crew itself never becomes unreachable while they run).
type crew struct {
	work    func(worker int)
	next    atomic.Int64
	wg      sync.WaitGroup
	busy    atomic.Int64 // helpers still working on the call
	helpers []*crewHelper
	closed  atomic.Bool
}

// crewHelper is one helper's hand-over: run claims a polling helper by
// its state, and wakes a sleeping one through wake.
type crewHelper struct {
	state atomic.Int32 // helperClaimed, helperPolling or helperAsleep
	wake  chan struct{}
}

const (
	helperClaimed = iota // given a call (or starting with one)
	helperPolling        // between calls, awake
	helperAsleep         // between calls, waiting on wake
)

// run runs one call on n workers (n >= 1) and returns when all are done.
func (c *crew) run(n int) {
	helpers := n - 1
	c.next.Store(0)
	c.wg.Add(helpers)
	c.busy.Store(int64(helpers))
	// A polling helper is claimed here, a sleeping one (or one about to
	// sleep) woken. Helpers started below begin claimed: were they in
	// this loop, one that had finished the call's tasks already could be
	// claimed for the same call again.
	for _, h := range c.helpers[:min(helpers, len(c.helpers))] {
		if !h.state.CompareAndSwap(helperPolling, helperClaimed) && h.state.Load() == helperAsleep {
			h.wake <- struct{}{}
		}
	}
	for len(c.helpers) < helpers {
		h := &crewHelper{wake: make(chan struct{})}
		h.state.Store(helperClaimed)
		c.helpers = append(c.helpers, h)
		go c.helper(h, len(c.helpers))
	}
	c.work(0)
	// Poll for the helpers before sleeping too: a goroutine that sleeps in
	// Wait is woken onto the last helper's P, which then runs it and leaves
	// the helper to wait for the other P's thread, asleep meanwhile.
	deadline := time.Now().Add(crewPoll)
	for c.busy.Load() > 0 && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	c.wg.Wait()
}

// helper runs worker w for every call it is given, until the crew closes.
func (c *crew) helper(h *crewHelper, w int) {
	for {
		c.work(w)
		// Polling before Done: the next call, which cannot start before
		// this Done, finds the helper ready to claim.
		h.state.Store(helperPolling)
		c.busy.Add(-1)
		c.wg.Done()
		if !c.await(h) {
			return
		}
	}
}

// await waits until h is given the next call, polling for crewPoll and
// then asleep; it returns false once the crew is closed.
func (c *crew) await(h *crewHelper) bool {
	deadline := time.Now().Add(crewPoll)
	for h.state.Load() == helperPolling {
		if c.closed.Load() {
			return false
		}
		if time.Now().After(deadline) && h.state.CompareAndSwap(helperPolling, helperAsleep) {
			_, ok := <-h.wake
			return ok
		}
		runtime.Gosched()
	}
	return true
}

// take returns the next task of the call, if it is below total.
func (c *crew) take(total int) (int, bool) {
	t := int(c.next.Add(1) - 1)
	return t, t < total
}

// close stops the helpers.
func (c *crew) close() {
	c.closed.Store(true)
	for _, h := range c.helpers {
		close(h.wake)
	}
}
