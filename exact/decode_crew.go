package exact

import (
	"sync"
	"sync/atomic"
)

// crew is a set of worker goroutines kept between calls, so that a call
// (a decoding step, say) hands out its tasks without starting goroutines,
// which allocates. The owner sets work once; run(n) calls work(0) on the
// calling goroutine and work(1..n-1) on helpers, started on first use; the
// workers share the tasks through take. close stops the helpers: owners
// call it from a cleanup of the value their users hold (the helpers refer
// to the crew, so the crew itself never becomes unreachable while they run).
type crew struct {
	work func(worker int)
	next atomic.Int64
	wg   sync.WaitGroup
	wake []chan struct{}
}

// run runs one call on n workers (n >= 1) and returns when all are done.
func (c *crew) run(n int) {
	helpers := n - 1
	for len(c.wake) < helpers {
		ch := make(chan struct{})
		c.wake = append(c.wake, ch)
		go c.helper(ch, len(c.wake))
	}
	c.next.Store(0)
	c.wg.Add(helpers)
	for _, ch := range c.wake[:helpers] {
		ch <- struct{}{}
	}
	c.work(0)
	c.wg.Wait()
}

// helper runs worker w whenever woken, until its channel is closed.
func (c *crew) helper(wake chan struct{}, w int) {
	for range wake {
		c.work(w)
		c.wg.Done()
	}
}

// take returns the next task of the call, if it is below total.
func (c *crew) take(total int) (int, bool) {
	t := int(c.next.Add(1) - 1)
	return t, t < total
}

// close stops the helpers.
func (c *crew) close() {
	for _, ch := range c.wake {
		close(ch)
	}
}
