package fastattn_test

import (
	"context"
	"fmt"

	"github.com/fastattn/fastattn"
)

// Keys split over two shards (say two servers): each runs the hot path on
// its keys, states its bounds once with AttendIntoBounds, and Merge
// combines the parts through their log-sum-exps into attention over all
// the keys, with a bound that counts the parts' log-sum-exp errors.
func ExampleAttendIntoBounds() {
	ctx := context.Background()
	q, _ := fastattn.NewTensor([]float32{1, 0, 0, 1}, 2, 2)
	keys := [][]float32{{1, 0, 0, 1}, {1, 1, 0.5, -1}}
	values := [][]float32{{1, 0, 0, 1}, {0.5, 0.5, 2, 0}}
	ws := fastattn.NewWorkspace()
	var parts []*fastattn.Result[float32]
	for s := range keys {
		k, _ := fastattn.NewTensor(keys[s], 2, 2)
		v, _ := fastattn.NewTensor(values[s], 2, 2)
		out, _ := fastattn.NewTensor(make([]float32, 4), 2, 2)
		lse, _ := fastattn.NewTensor(make([]float64, 2), 2)
		if err := fastattn.AttendInto(ctx, ws, out, lse.Data, q, k, v, fastattn.Options{}); err != nil {
			panic(err)
		}
		b, err := fastattn.AttendIntoBounds(ctx, q, k, v, fastattn.Options{})
		if err != nil {
			panic(err)
		}
		parts = append(parts, &fastattn.Result[float32]{Out: out, LSE: lse,
			Report: fastattn.Report{ErrorBound: b.Output, LSEBound: b.LSE}})
	}
	merged, err := fastattn.Merge(parts...)
	if err != nil {
		panic(err)
	}
	// The same attention over all four keys in one call.
	k, _ := fastattn.NewTensor(append(append([]float32{}, keys[0]...), keys[1]...), 4, 2)
	v, _ := fastattn.NewTensor(append(append([]float32{}, values[0]...), values[1]...), 4, 2)
	whole, err := fastattn.Attend(ctx, q, k, v, fastattn.Options{})
	if err != nil {
		panic(err)
	}
	fmt.Printf("merged %.4f\n", merged.Out.Data)
	fmt.Printf("whole  %.4f\n", whole.Out.Data)
	fmt.Printf("bounds: shard 0 %.2g (log-sum-exps %.2g nats), merged %.2g\n",
		parts[0].Report.ErrorBound, parts[0].Report.LSEBound, merged.Report.ErrorBound)
	// Output:
	// merged [0.9090 0.3108 0.5406 0.5482]
	// whole  [0.9090 0.3108 0.5406 0.5482]
	// bounds: shard 0 6.2e-05 (log-sum-exps 3.1e-05 nats), merged 0.00012
}
