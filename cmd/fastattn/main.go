// Command fastattn computes softmax attention on .npy files, exactly or with
// a certified entrywise error bound, and runs the project's demo,
// benchmarks and experiments.
//
// Commands:
//
//	fastattn run        --q Q.npy --k K.npy --v V.npy --out O.npy [--lse L.npy] [--report R.json|-] [flags]
//	fastattn grad       --q Q.npy --k K.npy --v V.npy --dout DO.npy --dq DQ.npy --dk DK.npy --dv DV.npy [flags]
//	fastattn decode     --q Q.npy --k K.npy --v V.npy --out O.npy [--prefill P] [--method exact|poly|auto] [flags]
//	fastattn gen        --out DIR [--n N] [--d D] [--heads H] [--entries normal:1] [--dtype float32]
//	fastattn demo       [--quick]
//	fastattn bench      [--methods exact,poly] [--n 1024,4096] [--d 64] [--dtype float32,float64] [--grad]
//	fastattn bench      --decode [--from 10] [--to 20] [--heads 1,8] [--gqa 4]
//	fastattn hard       ann|maxip --out DIR [flags];  fastattn hard solve --dir DIR [--method M] [--check]
//	fastattn transition [--quick] --out DIR
//	fastattn scaling    [--quick] --out DIR
//
// run computes attention of three .npy files (float32 or float64, or
// 16-bit keys and values; (n, d), (heads, n, d) or (batch, heads, n, d);
// K and V may have fewer heads than Q) with the method given by
// --method (default auto: the fastest predicted to meet --eps); grad
// computes the gradients dQ, dK, dV for a loss gradient dO; decode feeds
// the same inputs through a KV cache one token at a time, as a model
// generating text does; gen writes random inputs to try them on. demo runs every method on built-in data
// against a float64 reference, bench times methods against exact attention
// over a grid of sizes (forward, or with --grad forward plus backward;
// --decode times one decoding step against the context length). hard builds and solves the hardness reductions'
// instances; transition and scaling run the experiments described in
// EXPERIMENTS.md. The algorithms are described in docs/ALGORITHMS.md.
//
// Outputs are written all or none: every file is complete before any is
// put in place, output directories are checked before any computation,
// and a symbolic link is written through (its target is replaced). A
// report path of "-" means standard output. Tables print GFLOP/s as exact
// attention's flop count divided by the method's time, so methods compare
// on one scale; JSON reports carry each method's own flop count.
//
// Exit status: 0 on success, 1 on a failure, 2 when the input files or
// flags are wrong. Errors are one line on stderr. "fastattn help" lists the
// commands, "fastattn COMMAND -h" (or "fastattn help COMMAND") prints a
// command's flags.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/fastattn/fastattn"
)

// command is one subcommand: it parses its own flags from args.
type command struct {
	name, summary string
	run           func(args []string, stdout, stderr io.Writer) error
}

// registry holds the subcommands; each file registers its own in init, so
// adding a command touches no shared file.
var registry []command

func register(c command) { registry = append(registry, c) }

// commands returns the subcommands in alphabetical order.
func commands() []command {
	cs := slices.Clone(registry)
	slices.SortFunc(cs, func(a, b command) int { return strings.Compare(a.name, b.name) })
	return cs
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// usageError marks errors in how the command was called (exit status 2).
type usageError struct{ error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// run executes the command line and returns the exit status: 0 on success,
// 1 on failure, 2 on a usage error. Errors are one line on stderr.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stderr)
		return 2
	}
	if args[0] == "help" && len(args) > 1 {
		// "fastattn help run" is "fastattn run -h".
		return run([]string{args[1], "-h"}, stdout, stderr)
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		printUsage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(args[1:], stdout, stderr)
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		}
		fmt.Fprintf(stderr, "fastattn %s: %s\n", c.name, oneLine(strings.TrimPrefix(err.Error(), "fastattn: ")))
		var ue usageError
		if errors.As(err, &ue) {
			return 2
		}
		return 1
	}
	fmt.Fprintf(stderr, "fastattn: unknown command %q; run 'fastattn help' for the list\n", args[0])
	return 2
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "fastattn: softmax attention, exact or with a certified entrywise error bound.")
	fmt.Fprintln(w, "\nUsage: fastattn COMMAND [flags]   (fastattn COMMAND -h for its flags)\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
}

// flagHelp holds each flag set's help printer: package flag calls Usage on
// every parse error as well as on -h, so Usage stays silent and parseFlags
// prints the help itself, once, only when it was asked for.
var flagHelp sync.Map // *flag.FlagSet -> func()

// newFlagSet returns a flag set that reports errors instead of exiting and
// prints its help (on -h) to stdout.
func newFlagSet(name, usage string, stdout io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	flagHelp.Store(fs, func() {
		fmt.Fprintf(stdout, "Usage: fastattn %s\n\nFlags:\n", usage)
		printFlags(stdout, fs)
	})
	return fs
}

// printFlags lists fs's flags as package flag's PrintDefaults does, but
// spelled with two dashes, as the usage lines and the documentation write
// them (package flag accepts both).
func printFlags(w io.Writer, fs *flag.FlagSet) {
	fs.VisitAll(func(f *flag.Flag) {
		if f.Usage == "" {
			return // a flag kept only to be refused with a reason (see decode)
		}
		kind, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if kind != "" {
			line += " " + kind
		}
		fmt.Fprintf(w, "%s\n    \t%s", line, strings.ReplaceAll(usage, "\n", "\n    \t"))
		switch f.DefValue {
		case "", "0", "false":
		default:
			if kind == "string" {
				fmt.Fprintf(w, " (default %q)", f.DefValue)
			} else {
				fmt.Fprintf(w, " (default %v)", f.DefValue)
			}
		}
		fmt.Fprintln(w)
	})
}

// parseFlags parses args and rejects stray positional arguments. On -h it
// prints the help and returns flag.ErrHelp (exit status 0); a wrong flag is
// a usage error (exit status 2, one line on stderr).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			if help, ok := flagHelp.Load(fs); ok {
				help.(func())()
			}
			return err
		}
		return usagef("%v (fastattn %s -h lists the flags)", err, fs.Name())
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (flags start with --)", fs.Arg(0))
	}
	return nil
}

// printNote prints a report's note (for example that an explicitly chosen
// method was predicted slower than exact attention) on stderr.
func printNote(stderr io.Writer, cmd, note string) {
	if note != "" {
		fmt.Fprintf(stderr, "fastattn %s: note: %s\n", cmd, note)
	}
}

// exactFlops is exact attention's flop count on the report's input (see
// fastattn.CallReport.ExactFlops). The command line prints every method's
// GFLOP/s as this count over its time, so methods compare on one scale (a
// report's own flops and gflops_per_second are the method's).
func exactFlops(rep fastattn.Report) float64 { return rep.ExactFlops }
