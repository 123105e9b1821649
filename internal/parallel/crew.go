package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Poll returns how long a helper keeps polling for its next call after it
// finishes one, before it sleeps, and how long Crew.Run polls for its
// helpers before it sleeps. Waking a sleeping goroutine is slow on a VM,
// whose idle vCPU the host has halted: on a 2-vCPU Xeon VM the helper of a
// decoding step started a median 100-110 us after the call, which took
// 250 us (8 query heads, 2 key/value heads, 4096 keys, d = 128). Polling
// for about as long as a wake costs wastes at most that much per call and
// never more than twice what knowing the next call's time would (the
// ski-rental bound). Calls closer together than that find their helpers
// awake; calls further apart still pay the wake. Polling yields to any
// other goroutine that is ready (runtime.Gosched). A woken helper is
// queued on the waking caller's thread: on that VM, calls of two 20 us
// tasks right after a pause ran both tasks on the caller's thread in
// 77-98% of cases for each of the first six calls (40 us a call, against
// 21 us once the helper polls on the other thread).
func Poll() time.Duration { return time.Duration(pollNanos.Load()) }

// SetPoll sets Poll to d and returns its previous value: for
// fastattn.SetWorkerPoll, and for benchmarks that compare polling with
// sleeping (d = 0).
func SetPoll(d time.Duration) time.Duration {
	return time.Duration(pollNanos.Swap(int64(d)))
}

// pollNanos is Poll in nanoseconds, atomic so that helpers read it while
// a benchmark sets it; 100 us.
var pollNanos atomic.Int64

func init() { pollNanos.Store(int64(100 * time.Microsecond)) }

// Crew runs calls of Work on the calling goroutine and helpers from a
// pool the whole process shares, so a call (a decoding step, say) hands
// out its tasks to goroutines that already exist, often still polling,
// instead of starting new ones, which allocates. The owner sets Work once; Run(n) calls Work(0) on the
// calling goroutine and Work(1..n-1) on helpers, and the workers share the
// call's tasks through Take. One call at a time: Run is not safe for
// concurrent use on one Crew (different Crews are). The pool keeps as
// many helpers as the most calls in flight at once have needed, asleep
// when unused.
type Crew struct {
	Work func(worker int)
	next atomic.Int64
	wg   sync.WaitGroup
	busy atomic.Int64 // helpers still working on the call
}

// Run runs one call on n workers and returns when all are done; with
// n < 1 it runs none.
func (c *Crew) Run(n int) {
	if n < 1 {
		return
	}
	c.next.Store(0)
	c.wg.Add(n - 1)
	c.busy.Store(int64(n - 1))
	for w := 1; w < n; w++ {
		give(c, w)
	}
	c.Work(0)
	// Poll for the helpers before sleeping too: a goroutine that sleeps in
	// Wait is woken onto the last helper's P, which then runs it and leaves
	// the helper to wait for the other P's thread, asleep meanwhile.
	deadline := time.Now().Add(Poll())
	for c.busy.Load() > 0 && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	c.wg.Wait()
}

// Take returns the next task of the current call, if it is below total.
func (c *Crew) Take(total int) (int, bool) {
	t := int(c.next.Add(1) - 1)
	return t, t < total
}

// helper is one pooled goroutine. A caller takes it from the idle list and
// gives it a worker of its call through crew and worker, then claims it if
// it is polling or wakes it if it sleeps.
type helper struct {
	state  atomic.Int32 // helperClaimed, helperPolling or helperAsleep
	wake   chan struct{}
	crew   *Crew
	worker int
}

const (
	helperClaimed = iota // given a worker of a call (or starting with one)
	helperPolling        // idle, awake
	helperAsleep         // idle, waiting on wake
)

// idle holds the helpers between calls, the most recently idle last:
// taken first, it is the likeliest to be polling still.
var idle struct {
	sync.Mutex
	helpers []*helper
}

// give runs worker w of c's call on an idle helper, or on a new one.
func give(c *Crew, w int) {
	idle.Lock()
	var h *helper
	if k := len(idle.helpers); k > 0 {
		h = idle.helpers[k-1]
		idle.helpers[k-1] = nil
		idle.helpers = idle.helpers[:k-1]
	}
	idle.Unlock()
	if h == nil {
		h = &helper{wake: make(chan struct{}), crew: c, worker: w}
		h.state.Store(helperClaimed)
		go h.run()
		return
	}
	// Only h itself moves it from polling to asleep, so a failed claim
	// finds it asleep, or about to be.
	h.crew, h.worker = c, w
	if !h.state.CompareAndSwap(helperPolling, helperClaimed) {
		h.wake <- struct{}{}
	}
}

// run works for every call h is given, for the life of the process.
func (h *helper) run() {
	for {
		c := h.crew
		h.crew = nil // an idle helper keeps no call's data alive
		c.Work(h.worker)
		// Idle before Done: the next call, which may start right after
		// this Done, finds the helper ready to claim. Once idle, h.crew
		// may be overwritten; c is this call's.
		h.state.Store(helperPolling)
		idle.Lock()
		idle.helpers = append(idle.helpers, h)
		idle.Unlock()
		c.busy.Add(-1)
		c.wg.Done()
		h.await()
	}
}

// await returns when h is given its next call, polling for Poll and then
// asleep.
func (h *helper) await() {
	deadline := time.Now().Add(Poll())
	for h.state.Load() == helperPolling {
		if time.Now().After(deadline) && h.state.CompareAndSwap(helperPolling, helperAsleep) {
			<-h.wake
			return
		}
		runtime.Gosched()
	}
}
