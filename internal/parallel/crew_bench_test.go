package parallel_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fastattn/fastattn/internal/parallel"
	"github.com/fastattn/fastattn/internal/parallel/polltest"
)

// BenchmarkForWake times parallel.For with two tasks of 20 us on two
// workers (ideally 20 us a call) after gaps of other work on the calling
// goroutine, with the helpers polling between calls (Poll as set) and
// with them asleep (SetPoll(0)), and reports the median call of each. The
// settings take turns in runs of 100 calls, the first 10 of each run
// untimed (polltest.Medians says why).
func BenchmarkForWake(b *testing.B) {
	spin := func(d time.Duration) {
		for t := time.Now(); time.Since(t) < d; {
		}
	}
	for _, gap := range []time.Duration{0, 20 * time.Microsecond, 300 * time.Microsecond} {
		b.Run(fmt.Sprintf("gap=%v", gap), func(b *testing.B) {
			med := polltest.Medians(b, []time.Duration{parallel.Poll(), 0}, gap, 100, 10, func() {
				parallel.For(context.Background(), 2, 2, func(int) { spin(20 * time.Microsecond) })
			})
			b.ReportMetric(med[0]*1e6, "us-poll")
			b.ReportMetric(med[1]*1e6, "us-sleep")
		})
	}
}
