// Command gpt trains a small byte-level transformer on the Go
// distribution's own source code with fastattn's attention, samples from
// it, and measures what its attention looks like to the polynomial and
// any-temperature methods.
//
// Usage:
//
//	go run ./examples/gpt train     [-duration 10m | -steps N] [-out DIR] [size flags]
//	go run ./examples/gpt generate  [-out DIR] [-prompt TEXT] [-temperature T] [-top-k K]
//	go run ./examples/gpt stats     [-out DIR]   attention statistics and plots of a run
//	go run ./examples/gpt swap      [-out DIR]   validation loss and speed with each method
//	go run ./examples/gpt compare   DIR...       plot training runs against each other
//
// The model is written out layer by layer in the manner of llm.c: embedding,
// RMSNorm, rotary embeddings, grouped-query attention through
// fastattn.Attend and fastattn.Gradient, a SwiGLU MLP, tied output
// embeddings, cross-entropy and AdamW. Matrix products use the project's
// own GEMM kernels (internal/kernels), split across the cores.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	cmds := map[string]func([]string) error{
		"train": trainCmd, "generate": generateCmd, "stats": statsCmd, "swap": swapCmd, "compare": compareCmd,
	}
	run, ok := cmds[os.Args[1]]
	if !ok {
		usage()
		os.Exit(2)
	}
	if err := run(os.Args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "gpt:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage: gpt COMMAND [flags]   (go run ./examples/gpt COMMAND -h for its flags)
  train     train on $GOROOT/src (.go files, split by file; 10 minutes by default)
  generate  sample from a trained model
  stats     per-layer, per-head attention statistics of a trained model, with plots
  swap      validation loss and generation speed with each attention method
  compare   plot the loss curves of training runs (equal steps, equal wall time)`)
}
