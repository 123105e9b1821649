package parallel

import (
	"context"
	"sync/atomic"
	"testing"
)

func TestEveryTaskOnce(t *testing.T) {
	for _, workers := range []int{0, 1, 3, 64} {
		for _, n := range []int{0, 1, 5, 1000} {
			counts := make([]atomic.Int32, n)
			For(context.Background(), workers, n, func(i int) { counts[i].Add(1) })
			for i := range counts {
				if c := counts[i].Load(); c != 1 {
					t.Fatalf("workers %d, n %d: task %d ran %d times", workers, n, i, c)
				}
			}
		}
	}
	var sum atomic.Int64
	ForEach(context.Background(), []int64{1, 2}, 10, 20, func(s int64, t int) { sum.Add(int64(t)) })
	if sum.Load() != 145 {
		t.Errorf("ForEach over [10, 20): sum %d, want 145", sum.Load())
	}
}

func TestStopsWhenCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var ran atomic.Int32
	For(ctx, 2, 1000, func(i int) {
		if ran.Add(1) == 10 {
			cancel()
		}
	})
	if r := ran.Load(); r >= 1000 || r < 10 {
		t.Errorf("%d tasks ran after cancelling at the 10th", r)
	}
}
