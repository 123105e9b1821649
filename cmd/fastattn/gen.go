package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/fastattn/fastattn/internal/outfile"
)

func init() {
	register(command{"gen", "write random Q, K, V .npy files (for trying run, or timing it end to end)", genCmd})
}

func genCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("gen", "gen --out DIR [--n N] [--m M] [--d D] [--e E] [--heads H] [--entries normal:1] [--dtype float32] [--seed S]", stdout)
	out := fs.String("out", "", "directory for q.npy, k.npy and v.npy (created if missing)")
	n := fs.Int("n", 1024, "queries per head")
	m := fs.Int("m", 0, "keys per head (default n)")
	d := fs.Int("d", 64, "head dimension")
	e := fs.Int("e", 0, "value dimension (default d)")
	heads := fs.Int("heads", 1, "heads; 1 writes 2-D arrays, more writes (heads, n, d)")
	entries := fs.String("entries", "normal:1", "Q and K entries: normal:SIGMA or uniform:B; V is standard normal")
	dtype := fs.String("dtype", "float32", "float32 or float64")
	seed := fs.Uint64("seed", 1, "random seed")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" {
		return usagef("--out is required")
	}
	if *m == 0 {
		*m = *n
	}
	if *e == 0 {
		*e = *d
	}
	if *n < 1 || *m < 1 || *d < 1 || *e < 1 || *heads < 1 {
		return usagef("--n, --m, --d, --e and --heads must be positive, got %d, %d, %d, %d and %d", *n, *m, *d, *e, *heads)
	}
	if err := checkWorkloadSize(*heads, *n, *m, *d, *e); err != nil {
		return err
	}
	dist, val, ok := strings.Cut(*entries, ":")
	scale, err := strconv.ParseFloat(val, 64)
	if !ok || (dist != "normal" && dist != "uniform") || err != nil || !(scale > 0) {
		return usagef("--entries must be normal:SIGMA or uniform:B, got %q", *entries)
	}
	if *dtype != "float32" && *dtype != "float64" {
		return usagef("--dtype must be float32 or float64, got %q", *dtype)
	}
	if err := checkOutDir(*out); err != nil {
		return err
	}
	w := workload{heads: *heads, n: *n, m: *m, d: *d, e: *e, qkScale: scale, uniform: dist == "uniform", seed: *seed}
	q, k, v := w.tensors64()
	var files []pendingFile
	for _, f := range []struct {
		name string
		data []float64
		rows int
		cols int
	}{{"q.npy", q.Data, *n, *d}, {"k.npy", k.Data, *m, *d}, {"v.npy", v.Data, *m, *e}} {
		shape := []int{f.rows, f.cols}
		if *heads > 1 {
			shape = []int{*heads, f.rows, f.cols}
		}
		var data any = f.data
		if *dtype == "float32" {
			data = to32(fastattnTensor(f.data)).Data
		}
		files = append(files, npyFile(f.name, shape, data))
	}
	if err := outfile.WriteDir(*out, files); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote q.npy, k.npy, v.npy (%s, %s) to %s\n", *dtype, plural(*heads, "head"), *out)
	return nil
}

// maxWorkloadElements caps the entries of Q, K and V together that gen and
// bench generate (float64 first, 8 bytes each): 2^30 entries take 8 GiB, so
// a mistyped size is refused at once instead of running out of memory.
const maxWorkloadElements = 1 << 30

// checkWorkloadSize refuses a generated input above maxWorkloadElements.
func checkWorkloadSize(heads, n, m, d, e int) error {
	total := float64(heads) * (float64(n)*float64(d) + float64(m)*float64(d+e))
	if total > maxWorkloadElements {
		return usagef("Q, K and V would hold %.3g entries (heads %d, n %d, m %d, d %d, e %d); the limit is %d (8 GiB in float64)", total, heads, n, m, d, e, maxWorkloadElements)
	}
	return nil
}
