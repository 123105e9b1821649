// Command anytemp times the any-temperature method against exact attention
// in the same run, end to end through fastattn.Attend, on Gaussian inputs:
// Q and K entries N(0, scale^2), V entries N(0, 1), e = d, softmax scale 1
// (so logits grow with scale^2), float32, eps 1e-3 by default.
//
//	go run ./bench/anytemp [-quick] [-d 1,2,3,4] [-scales 1,10] [-n 4096,16384,...]
//
// Exact attention is timed on every row up to -exact-full rows and on
// -exact-rows evenly spaced rows above (then scaled by n / rows; the output
// says which). The error of anytemp is measured on sampled rows against a
// float64 reference. Slopes are least-squares fits of log(seconds) against
// log(n).
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/fastattn/fastattn"
	"github.com/fastattn/fastattn/anytemp"
	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/check"
	"github.com/fastattn/fastattn/internal/fit"
)

func main() {
	quick := flag.Bool("quick", false, "n up to 2^16 only, one repetition")
	dList := flag.String("d", "1,2,3,4", "head dimensions (e = d)")
	sList := flag.String("scales", "1,10", "standard deviations of the Q and K entries")
	nList := flag.String("n", "4096,16384,65536,262144,1048576", "sequence lengths (n = m)")
	eps := flag.Float64("eps", 1e-3, "error target")
	exactFull := flag.Int("exact-full", 65536, "largest n at which exact runs on every row")
	exactRows := flag.Int("exact-rows", 1024, "rows exact runs on above -exact-full")
	capSec := flag.Float64("cap", 60, "skip larger n for a (d, scale) once 16x the last anytemp time exceeds this")
	reps := flag.Int("reps", 2, "repetitions (the fastest is kept)")
	flag.Parse()
	ds, ss, ns := ints(*dList), floats(*sList), ints(*nList)
	if *quick {
		var keep []int
		for _, n := range ns {
			if n <= 1<<16 {
				keep = append(keep, n)
			}
		}
		ns, *reps = keep, 1
	}
	fmt.Printf("anytemp vs exact, end to end (fastattn.Attend), float32, e = d, softmax scale 1, eps = %g, Q,K ~ N(0, scale^2), V ~ N(0,1)\n", *eps)
	fmt.Printf("exact: all rows up to n = %d, above that %d sampled rows scaled by n/%d (marked *)\n\n", *exactFull, *exactRows, *exactRows)
	fmt.Printf("%2s %6s %8s %11s %12s %9s %10s %9s %8s %6s %8s %9s %s\n",
		"d", "scale", "n", "anytemp s", "exact s", "speedup", "max err", "bound", "visit/r", "r_eff", "moments", "planner s", "notes")
	type point struct{ n, t float64 }
	for _, d := range ds {
		for _, s := range ss {
			var ptsA, ptsX []point
			for _, n := range ns {
				q, k, v := gen(n, d, s, uint64(n*10+d))
				opts := fastattn.Options{Method: "anytemp", Scale: 1, Eps: *eps}
				var best *fastattn.Result[float32]
				for range *reps {
					res, err := fastattn.Attend(context.Background(), q, k, v, opts)
					if err != nil {
						fmt.Printf("%2d %6g %8d  anytemp failed: %v\n", d, s, n, err)
						best = nil
						break
					}
					if best == nil || res.Report.Seconds < best.Report.Seconds {
						best = res
					}
				}
				if best == nil {
					break
				}
				ta := best.Report.Seconds
				// Exact, in the same run.
				tx, sampled := timeExact(q, k, v, n, d, n > *exactFull, *exactRows, *reps)
				mark := " "
				if sampled {
					mark = "*"
				}
				errMax := sampledError(q, k, v, best.Out.Data, n, d, 16)
				det := best.Report.Details
				est := math.NaN()
				pp := &attn.Problem[float32]{Heads: 1, N: n, M: n, D: d, E: d, Q: q.Data, K: k.Data, V: v.Data, Scale: 1, Eps: *eps}
				if e, err := (anytemp.Method{}).Estimate32(pp); err == nil {
					est = e.Seconds
				}
				fmt.Printf("%2d %6g %8d %11.4f %11.3f%s %8.1fx %10.2g %9.2g %8.1f %6v %8.2g %9.3g %s\n",
					d, s, n, ta, tx, mark, tx/ta, errMax, best.Report.ErrorBound,
					det["visited_per_row"], det["effective_dim"], toF(det["moment_flops"]), est, fmt.Sprintf("deg %v, depth %v", det["max_degree"], det["tree_depth"]))
				ptsA = append(ptsA, point{float64(n), ta})
				ptsX = append(ptsX, point{float64(n), tx})
				// Skip larger sizes once quadratic growth (16x per 4x n)
				// from here would pass the cap.
				if ta*16 > *capSec && n != ns[len(ns)-1] {
					fmt.Printf("   (larger n skipped for d = %d, scale %g: anytemp took %.1f s at n = %d, up to 16x that at 4n exceeds -cap %g s)\n", d, s, ta, n, *capSec)
					break
				}
			}
			if len(ptsA) >= 2 {
				slope := func(p []point) float64 {
					var ns, ts []float64
					for _, x := range p {
						ns, ts = append(ns, x.n), append(ts, x.t)
					}
					return fit.LogLogSlope(ns, ts)
				}
				fmt.Printf("   slope d = %d, scale %g: anytemp %.2f, exact %.2f (log-log fit over n = %d..%d)\n",
					d, s, slope(ptsA), slope(ptsX), int(ptsA[0].n), int(ptsA[len(ptsA)-1].n))
			}
		}
	}
}

func toF(x any) float64 {
	switch v := x.(type) {
	case int64:
		return float64(v)
	case float64:
		return v
	case int:
		return float64(v)
	}
	return math.NaN()
}

func gen(n, d int, s float64, seed uint64) (q, k, v fastattn.Tensor[float32]) {
	r := rand.New(rand.NewPCG(seed, 3))
	f := func(rows int, sd float64) fastattn.Tensor[float32] {
		x := make([]float32, rows*d)
		for i := range x {
			x[i] = float32(sd * r.NormFloat64())
		}
		return fastattn.Tensor[float32]{Data: x, Shape: []int{rows, d}}
	}
	return f(n, s), f(n, s), f(n, 1)
}

// timeExact times exact attention on all rows, or on rows evenly spaced
// rows scaled by n/rows.
func timeExact(q, k, v fastattn.Tensor[float32], n, d int, sample bool, rows, reps int) (float64, bool) {
	qq := q
	factor := 1.0
	if sample && rows < n {
		x := make([]float32, rows*d)
		for i := range rows {
			src := i * n / rows
			copy(x[i*d:(i+1)*d], q.Data[src*d:(src+1)*d])
		}
		qq = fastattn.Tensor[float32]{Data: x, Shape: []int{rows, d}}
		factor = float64(n) / float64(rows)
	}
	best := math.Inf(1)
	for range reps {
		t0 := time.Now()
		if _, err := fastattn.Attend(context.Background(), qq, k, v, fastattn.Options{Method: "exact", Scale: 1}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		best = min(best, time.Since(t0).Seconds())
	}
	return best * factor, sample && rows < n
}

func sampledError(q, k, v fastattn.Tensor[float32], out []float32, n, d, samples int) float64 {
	p := &attn.Problem[float32]{Heads: 1, N: n, M: n, D: d, E: d, Q: q.Data, K: k.Data, V: v.Data, Scale: 1}
	res, _ := check.Forward(p, &attn.Output[float32]{O: out}, math.Inf(1), samples)
	return res.Observed
}

func ints(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		x, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			fmt.Fprintln(os.Stderr, "bad integer list:", s)
			os.Exit(2)
		}
		out = append(out, x)
	}
	return out
}

func floats(s string) []float64 {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		x, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bad number list:", s)
			os.Exit(2)
		}
		out = append(out, x)
	}
	return out
}
