package exact

import (
	"sync"
	"sync/atomic"

	"github.com/fastattn/fastattn/attn"
)

// recycler hands one call's buffers (a Workspace, a backward call's
// bwdBuffers, the AMX path's bf16Buffers, widened's halfCopies) to the
// next. A sync.Pool alone keeps what a call puts back
// with the processor it ran on, and a call that resumes elsewhere (after
// waiting for its workers) misses it: about half the calls did with two
// processors, each remaking and faulting in tens of MB at n = 16384. So
// the last buffers put back wait in a slot every processor reads, and
// only the surplus of concurrent calls goes to the pool. The slot keeps
// one set of buffers alive between calls, as long as the program runs.
type recycler[B any] struct {
	last atomic.Pointer[B]
	pool sync.Pool
}

// recyclerFor returns r32 for float32 and r64 for float64: the recycler
// of element type T's buffers B (r32 and r64 are *recycler of the float32
// and float64 instances of B).
func recyclerFor[T attn.Float, B any](r32, r64 any) *recycler[B] {
	if _, ok := any(T(0)).(float32); ok {
		return r32.(*recycler[B])
	}
	return r64.(*recycler[B])
}

// get returns buffers put back earlier, or nil.
func (r *recycler[B]) get() *B {
	if b := r.last.Swap(nil); b != nil {
		return b
	}
	b, _ := r.pool.Get().(*B)
	return b
}

// put hands b to a later get.
func (r *recycler[B]) put(b *B) {
	if !r.last.CompareAndSwap(nil, b) {
		r.pool.Put(b)
	}
}
