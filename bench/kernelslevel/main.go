// Command kernelslevel prints the code path of fastattn's kernels on this
// machine ("avx512", "avx2" or "go"), for benchmark reports.
package main

import (
	"fmt"

	"github.com/fastattn/fastattn/internal/kernels"
)

func main() { fmt.Println(kernels.Implementation()) }
