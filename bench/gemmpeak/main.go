// Command gemmpeak measures the GEMM throughput of fastattn's own kernels
// (internal/kernels) on every core at once: the limit exact attention's two
// products can reach on this machine, for benchmarks that quote a fraction
// of peak. Each worker multiplies its own operands, so the cores do not
// share data; shapes are those the attention tiles use, plus one large
// product. The best shape's figure is the peak.
//
//	go run ./bench/gemmpeak [-workers N] [-seconds 0.3] [-reps 3] [-json]
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"time"

	"github.com/fastattn/fastattn/internal/kernels"
)

// shape is one product: C (m x n) = A (m x k) B^T (nt) or += A B.
type shape struct {
	name    string
	nt      bool
	m, n, k int
}

var shapes = []shape{
	{"NT 72x256x64 (Q K^T tile, d=64)", true, 72, 256, 64},
	{"NT 72x256x128 (Q K^T tile, d=128)", true, 72, 256, 128},
	{"NN 72x64x256 (P V tile, e=64)", false, 72, 64, 256},
	{"NN 72x128x256 (P V tile, e=128)", false, 72, 128, 256},
	{"NN 192x512x256", false, 192, 512, 256},
	{"NT 1024x1024x1024", true, 1024, 1024, 1024},
}

// result is one dtype's peak.
type result struct {
	Dtype   string  `json:"dtype"`
	Workers int     `json:"workers"`
	GFLOPS  float64 `json:"gflops"`
	Shape   string  `json:"shape"`
	Kernels string  `json:"kernels"`
}

func operands[T float32 | float64](s shape) (a, b, c []T) {
	r := rand.New(rand.NewPCG(1, 2))
	a, b, c = make([]T, s.m*s.k), make([]T, s.n*s.k), make([]T, s.m*s.n)
	for i := range a {
		a[i] = T(r.NormFloat64())
	}
	for i := range b {
		b[i] = T(r.NormFloat64())
	}
	return
}

// rate runs f on every worker for about d and returns the combined GFLOP/s.
func rate[T float32 | float64](s shape, workers int, d time.Duration, nt, nn func(m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int)) float64 {
	var wg sync.WaitGroup
	calls := make([]int, workers)
	start := time.Now()
	for w := range workers {
		wg.Go(func() {
			a, b, c := operands[T](s)
			for time.Since(start) < d {
				for range 8 {
					if s.nt {
						nt(s.m, s.n, s.k, a, s.k, b, s.k, c, s.n)
					} else {
						nn(s.m, s.n, s.k, a, s.k, b, s.n, c, s.n)
					}
				}
				calls[w] += 8
			}
		})
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	total := 0
	for _, c := range calls {
		total += c
	}
	return 2 * float64(s.m) * float64(s.n) * float64(s.k) * float64(total) / el / 1e9
}

func peak[T float32 | float64](name string, workers, reps int, d time.Duration, nt, nn func(m, n, k int, a []T, lda int, b []T, ldb int, c []T, ldc int), verbose bool) result {
	best := result{Dtype: name, Workers: workers, Kernels: kernels.Implementation()}
	for _, s := range shapes {
		r := 0.0
		for range reps {
			r = max(r, rate(s, workers, d, nt, nn))
		}
		if verbose {
			fmt.Printf("  %-8s %-36s %7.1f GFLOP/s\n", name, s.name, r)
		}
		if r > best.GFLOPS {
			best.GFLOPS, best.Shape = r, s.name
		}
	}
	return best
}

func main() {
	workers := flag.Int("workers", runtime.GOMAXPROCS(0), "concurrent workers (one per core)")
	seconds := flag.Float64("seconds", 0.3, "seconds per measurement")
	reps := flag.Int("reps", 3, "measurements per shape (the best counts)")
	asJSON := flag.Bool("json", false, "print the two peaks as JSON lines only")
	flag.Parse()
	if *workers < 1 || *reps < 1 || *seconds <= 0 {
		fmt.Fprintln(os.Stderr, "gemmpeak: -workers and -reps must be at least 1 and -seconds positive")
		os.Exit(2)
	}
	d := time.Duration(*seconds * float64(time.Second))
	verbose := !*asJSON
	if verbose {
		fmt.Printf("fastattn GEMM kernels (%s), %d workers, best of %d x %.2f s per shape:\n", kernels.Implementation(), *workers, *reps, *seconds)
	}
	rs := []result{
		peak("float32", *workers, *reps, d, kernels.GemmNT32, kernels.GemmNN32, verbose),
		peak("float64", *workers, *reps, d, kernels.GemmNT64, kernels.GemmNN64, verbose),
	}
	for _, r := range rs {
		if *asJSON {
			j, _ := json.Marshal(r)
			fmt.Println(string(j))
			continue
		}
		fmt.Printf("%s peak: %.1f GFLOP/s on %d workers (%s)\n", r.Dtype, r.GFLOPS, r.Workers, r.Shape)
	}
}
