package fastattn_test

import (
	"context"
	"fmt"

	"github.com/fastattn/fastattn"
)

// A prompt of three tokens in one call (prefill), then one token per call
// (decoding), for one sequence with two query heads sharing one key/value
// head (grouped-query attention), head dimension 2.
func ExampleCache() {
	ctx := context.Background()
	cache, err := fastattn.NewCache[float32](1, 1, 2, 2, fastattn.CacheOptions{QueryHeads: 2})
	if err != nil {
		panic(err)
	}
	// Prefill: Q is (batch, query heads, n, d), K and V (batch, kv heads, n, .).
	q, _ := fastattn.NewTensor([]float32{1, 0, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1}, 1, 2, 3, 2)
	k, _ := fastattn.NewTensor([]float32{1, 0, 0, 1, 1, 1}, 1, 1, 3, 2)
	v, _ := fastattn.NewTensor([]float32{1, 0, 0, 1, 0.5, 0.5}, 1, 1, 3, 2)
	res, err := cache.Forward(ctx, q, k, v)
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Out.Shape, cache.Len(0))
	// One decoding step: the new token sees all four cached tokens.
	q, _ = fastattn.NewTensor([]float32{2, 0, 0, 2}, 1, 2, 1, 2)
	k, _ = fastattn.NewTensor([]float32{-1, 0}, 1, 1, 1, 2)
	v, _ = fastattn.NewTensor([]float32{0, 0}, 1, 1, 1, 2)
	res, err = cache.Forward(ctx, q, k, v)
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Out.Shape, cache.Len(0), res.Report.Method)
	fmt.Printf("%.4f\n", res.Out.Data)
	// Speculative decoding rejected the last token: drop it.
	if err := cache.Truncate(0, 1); err != nil {
		panic(err)
	}
	fmt.Println(cache.Len(0))
	// Output:
	// [1 2 3 2] 3
	// [1 2 1 2] 4 exact
	// [0.6515 0.3228 0.2989 0.6033]
	// 3
}
