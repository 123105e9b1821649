package fastattn_test

import (
	"context"
	"fmt"

	"github.com/fastattn/fastattn"
)

func Example() {
	// One head, two queries, three keys, head dimension 2.
	q, _ := fastattn.NewTensor([]float32{1, 0, 0, 1}, 2, 2)
	k, _ := fastattn.NewTensor([]float32{1, 0, 0, 1, 1, 1}, 3, 2)
	v, _ := fastattn.NewTensor([]float32{1, 0, 0, 1, 0.5, 0.5}, 3, 2)
	res, err := fastattn.Attend(context.Background(), q, k, v, fastattn.Options{})
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Out.Shape, res.Report.Method)
	fmt.Printf("%.4f\n", res.Out.Data)
	// Output:
	// [2 2] exact
	// [0.6017 0.3983 0.3983 0.6017]
}
