package anytemp

import (
	"context"
	"fmt"
	"math"
	"os"
	"testing"

	"github.com/fastattn/fastattn/attn"
)

// TestCalibrate (CALIBRATE=1) checks the planner's rates (measured at
// first use, calibrate.go) against a least-squares fit of the same cost
// model to whole runs: one worker, CPU-bound, on the benchmark's workload,
// printing the fitted rates, then measured seconds against the fit and
// the planner's prediction.
func TestCalibrate(t *testing.T) {
	if os.Getenv("CALIBRATE") == "" {
		t.Skip("set CALIBRATE=1")
	}
	type obs struct {
		x    []float64 // rows, visited, brute, terms, cells, moment flops, build
		secs float64
		name string
		p    *attn.Problem[float32]
	}
	var data []obs
	for _, d := range []int{1, 2, 3, 4} {
		for _, sc := range []float64{1, 3, 10} {
			for _, n := range []int{1 << 12, 1 << 14, 1 << 16} {
				if d >= 3 && sc == 1 && n > 1<<12 || d == 4 && sc == 3 && n > 1<<14 {
					continue
				}
				p := benchProblem(n, d, sc)
				out := attn.NewOutput(p)
				best := math.Inf(1)
				var st attn.Stats
				for range 2 {
					// CPU time: on a shared machine it varies far less
					// than wall time.
					c0 := cpuSeconds()
					s, err := (Method{Workers: 1, Samples: -1}).Forward32(context.Background(), p, out)
					if err != nil {
						t.Fatal(err)
					}
					if el := cpuSeconds() - c0; el < best {
						best, st = el, s
					}
				}
				dt := st.Details
				f := func(k string) float64 {
					switch v := dt[k].(type) {
					case int64:
						return float64(v)
					case int:
						return float64(v)
					case float64:
						return v
					}
					return 0
				}
				lf := float64(n)
				x := []float64{lf, f("nodes_visited"), f("keys_brute_forced"), f("expansion_terms"), f("cells"), f("moment_flops"),
					lf*(math.Log2(lf/leafSize)+1) + lf*math.Log2(lf+1)/4}
				data = append(data, obs{x, best, fmt.Sprintf("d=%d scale=%g n=%d", d, sc, n), p})
			}
		}
	}
	// Least squares on relative error: weight each row by 1/secs.
	k := len(data[0].x)
	a := make([]float64, k*k)
	b := make([]float64, k)
	for _, o := range data {
		w := 1 / o.secs
		for i := range k {
			b[i] += w * w * o.x[i] * o.secs
			for j := range k {
				a[i*k+j] += w * w * o.x[i] * o.x[j]
			}
		}
	}
	coef := solve(a, b, k)
	names := []string{"row", "visit", "brute", "term", "cell", "momentFlop", "build"}
	for i, c := range coef {
		fmt.Printf("%-11s %.3g s\n", names[i], c)
	}
	for _, o := range data {
		var pred float64
		for i := range k {
			pred += coef[i] * o.x[i]
		}
		est, _ := Method{Workers: 1}.Estimate32(o.p)
		fmt.Printf("%-26s measured %.4f  fit %.4f  planner %.4f\n", o.name, o.secs, pred, est.Seconds)
	}
}

// solve solves a x = b by Gaussian elimination with partial pivoting.
func solve(a, b []float64, k int) []float64 {
	a = append([]float64(nil), a...)
	b = append([]float64(nil), b...)
	for c := range k {
		p := c
		for r := c + 1; r < k; r++ {
			if math.Abs(a[r*k+c]) > math.Abs(a[p*k+c]) {
				p = r
			}
		}
		for j := range k {
			a[c*k+j], a[p*k+j] = a[p*k+j], a[c*k+j]
		}
		b[c], b[p] = b[p], b[c]
		if a[c*k+c] == 0 {
			continue
		}
		for r := c + 1; r < k; r++ {
			f := a[r*k+c] / a[c*k+c]
			for j := c; j < k; j++ {
				a[r*k+j] -= f * a[c*k+j]
			}
			b[r] -= f * b[c]
		}
	}
	x := make([]float64, k)
	for c := k - 1; c >= 0; c-- {
		s := b[c]
		for j := c + 1; j < k; j++ {
			s -= a[c*k+j] * x[j]
		}
		if a[c*k+c] != 0 {
			x[c] = s / a[c*k+c]
		}
	}
	return x
}
