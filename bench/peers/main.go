// Command peers times one exact-attention operation of fastattn on inputs
// of its own (standard normal, scale 1/sqrt(d)) and prints one JSON line:
// the best time of -reps runs (after one untimed run) and the operation's
// flops. bench/peers.py
// runs it next to NumPy doing the same operation.
//
//	go run ./bench/peers -op prefill|decode|decode-hot|backward -n N -m M -d D -dtype float32|float64 [-reps 3]
//
// prefill: n queries against m keys (n = m for self-attention); decode: n
// queries (1 for one token) against m cached keys, through the certified
// call (attn.Forward: it also scans the keys and values for the rounding
// bound it states); decode-hot: the same through the serving hot path
// (exact.Workspace.Forward, as fastattn.AttendInto and Cache run it: no
// bound stated, no scan); backward: the gradients
// of a prefill of n queries and m keys (the forward's output and LSE
// computed beforehand, not timed). Every flop count is the conventional
// one: 4nmd for a forward, 10nmd for a backward (five products), d = e.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"time"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/exact"
	"github.com/fastattn/fastattn/internal/kernels"
)

type result struct {
	Op      string  `json:"op"`
	N       int     `json:"n"`
	M       int     `json:"m"`
	D       int     `json:"d"`
	Dtype   string  `json:"dtype"`
	Seconds float64 `json:"seconds"`
	Flops   float64 `json:"flops"`
	Kernels string  `json:"kernels"`
}

func main() {
	op := flag.String("op", "prefill", "prefill, decode, decode-hot or backward")
	n := flag.Int("n", 4096, "queries")
	m := flag.Int("m", 0, "keys (0: n)")
	d := flag.Int("d", 64, "head dimension (d = e)")
	dtype := flag.String("dtype", "float32", "float32 or float64")
	reps := flag.Int("reps", 3, "runs; the best is printed")
	flag.Parse()
	if *m == 0 {
		*m = *n
	}
	if *n < 1 || *m < 1 || *d < 1 || *reps < 1 || (*op != "prefill" && *op != "decode" && *op != "decode-hot" && *op != "backward") {
		fmt.Fprintln(os.Stderr, "peers: bad arguments")
		os.Exit(2)
	}
	var r result
	var err error
	switch *dtype {
	case "float32":
		r, err = run[float32](*op, *n, *m, *d, *reps)
	case "float64":
		r, err = run[float64](*op, *n, *m, *d, *reps)
	default:
		err = fmt.Errorf("unknown dtype %q", *dtype)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
	r.Dtype, r.Kernels = *dtype, kernels.Implementation()
	j, _ := json.Marshal(r)
	fmt.Println(string(j))
}

func normal[T float32 | float64](r *rand.Rand, size int) []T {
	x := make([]T, size)
	for i := range x {
		x[i] = T(r.NormFloat64())
	}
	return x
}

func run[T float32 | float64](op string, n, m, d, reps int) (result, error) {
	r := rand.New(rand.NewPCG(uint64(n), uint64(m*d)))
	p := &attn.Problem[T]{Heads: 1, N: n, M: m, D: d, E: d, Scale: 1 / math.Sqrt(float64(d)),
		Q: normal[T](r, n*d), K: normal[T](r, m*d), V: normal[T](r, m*d)}
	ctx := context.Background()
	out := attn.NewOutput(p)
	res := result{Op: op, N: n, M: m, D: d, Seconds: math.Inf(1)}
	var g *attn.Gradients[T]
	var dO []T
	if op == "backward" {
		if _, err := attn.Forward(ctx, exact.Method{}, p, out); err != nil {
			return res, err
		}
		g, dO = attn.NewGradients(p), normal[T](r, n*d)
	}
	ws := exact.NewWorkspace[T]()
	for i := range reps + 1 { // the first run warms up (workers, buffers) untimed
		t := time.Now()
		var st attn.Stats
		var err error
		switch op {
		case "backward":
			st, err = attn.Backward(ctx, exact.Method{}, p, out, dO, g)
		case "decode-hot":
			st, err = ws.Forward(ctx, p, out)
		default:
			st, err = attn.Forward(ctx, exact.Method{}, p, out)
		}
		if err != nil {
			return res, err
		}
		if i > 0 {
			res.Seconds = min(res.Seconds, time.Since(t).Seconds())
		}
		res.Flops = st.Flops
	}
	return res, nil
}
