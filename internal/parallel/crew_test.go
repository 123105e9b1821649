package parallel

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCrew runs calls of random sizes on Crews from several goroutines at
// once, back to back (helpers still polling) and after pauses longer than
// Poll (helpers asleep), and checks that every task runs exactly once per
// call, on no more workers than asked, that a worker index runs once per
// call, and that the pool's goroutines do not outgrow the calls in flight.
func TestCrew(t *testing.T) {
	// Calls with many workers and one task: a helper that finishes early
	// is idle while later workers are being given out, and may be given
	// one of them; each worker must still run once.
	for range 200 {
		var c Crew
		var ran, workers atomic.Int64
		c.Work = func(int) {
			workers.Add(1)
			if _, ok := c.Take(1); ok {
				ran.Add(1)
			}
		}
		c.Run(8)
		if ran.Load() != 1 || workers.Load() != 8 {
			t.Fatalf("a call's one task ran %d times on %d workers, want once on 8", ran.Load(), workers.Load())
		}
	}

	const callers, tasks, maxWorkers = 3, 64, 4
	before := runtime.NumGoroutine()
	var wg sync.WaitGroup
	errs := make(chan string, callers)
	for g := range callers {
		wg.Go(func() {
			var c Crew
			var done [tasks]atomic.Int32
			var perWorker [maxWorkers]atomic.Int32
			c.Work = func(w int) {
				perWorker[w].Add(1)
				for {
					i, ok := c.Take(tasks)
					if !ok {
						return
					}
					done[i].Add(1)
				}
			}
			rng := rand.New(rand.NewPCG(1, uint64(g)))
			for call := range 300 {
				n := 1 + rng.IntN(maxWorkers)
				if call%10 == 9 {
					time.Sleep(2 * Poll())
				}
				c.Run(n)
				for i := range done {
					if got := done[i].Swap(0); got != 1 {
						errs <- "task ran more or less than once"
						return
					}
				}
				for w := range perWorker {
					if got, want := perWorker[w].Swap(0), int32(min(1, max(n-w, 0))); got != want {
						errs <- "a worker ran more or less than once, or one not asked for ran"
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	// Helpers are kept, but no more than the calls in flight could use
	// at once.
	if extra := runtime.NumGoroutine() - before; extra > callers*(maxWorkers-1) {
		t.Errorf("%d goroutines more than before the calls; %d callers of up to %d workers need at most %d helpers",
			extra, callers, maxWorkers, callers*(maxWorkers-1))
	}
}

// BenchmarkCrewRun times an empty call on two workers back to back: what
// handing work to a polling helper costs.
func BenchmarkCrewRun(b *testing.B) {
	var c Crew
	c.Work = func(int) {}
	for b.Loop() {
		c.Run(2)
	}
}

// TestNested runs parallel loops inside the tasks of parallel loops, as a
// method's task may: a helper busy with the outer loop must not be waited
// for by the inner one (the pool grows instead).
func TestNested(t *testing.T) {
	var ran atomic.Int64
	For(context.Background(), 3, 6, func(int) {
		For(context.Background(), 3, 6, func(int) {
			For(context.Background(), 2, 2, func(int) { ran.Add(1) })
		})
	})
	if ran.Load() != 6*6*2 {
		t.Errorf("%d innermost tasks ran, want %d", ran.Load(), 6*6*2)
	}
}

// TestIdleHelpersReleaseCalls checks that the pool's idle helpers keep
// nothing of their last call reachable: a Workspace, say, and the caller's
// arrays its tasks refer to must be collectable once the caller drops
// them.
func TestIdleHelpersReleaseCalls(t *testing.T) {
	collected := make(chan struct{})
	func() {
		data := make([]float64, 1<<20)
		runtime.AddCleanup(&data[0], func(ch chan struct{}) { close(ch) }, collected)
		c := new(Crew)
		c.Work = func(int) {
			for {
				i, ok := c.Take(4)
				if !ok {
					return
				}
				data[i]++
			}
		}
		c.Run(3)
	}()
	for range 20 {
		runtime.GC()
		select {
		case <-collected:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Error("a finished call's data is still reachable through the pool's helpers")
}
