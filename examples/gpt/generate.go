package main

// Sampling: temperature and top-k over the next-byte distribution. Each
// new byte reruns the model over the whole (cropped) context; there is no
// key/value cache yet.

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// GenerateOptions control sampling.
type GenerateOptions struct {
	Tokens      int     // bytes to generate
	Temperature float64 // 0: greedy
	TopK        int     // 0: all 256
	Seed        uint64
}

// Generate appends opts.Tokens sampled bytes to prompt and writes each to
// w (if not nil) as it comes. The model sees the last Cfg.Ctx bytes.
func Generate(ctx context.Context, m *Model, prompt []byte, opts GenerateOptions, w io.Writer) ([]byte, error) {
	T := m.Cfg.Ctx
	rng := rand.New(rand.NewPCG(opts.Seed, 0x6e7))
	seq := append([]byte(nil), prompt...)
	if len(prompt) == 0 {
		seq = []byte{'\n'}
	}
	V := m.Cfg.Vocab
	for range opts.Tokens {
		window := seq[max(0, len(seq)-T):]
		a, _, err := m.Forward(ctx, window, nil, 1)
		if err != nil {
			return nil, err
		}
		n := len(window)
		next := sample(a.probs[(n-1)*V:n*V], opts, rng)
		seq = append(seq, next)
		if w != nil {
			w.Write([]byte{next})
		}
	}
	return seq, nil
}

// sample draws a byte from probs with temperature and top-k.
func sample(probs []float32, o GenerateOptions, rng *rand.Rand) byte {
	idx := make([]int, len(probs))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return probs[idx[a]] > probs[idx[b]] })
	if o.Temperature <= 0 {
		return byte(idx[0])
	}
	k := len(idx)
	if o.TopK > 0 && o.TopK < k {
		k = o.TopK
	}
	// p^(1/T), renormalized over the top k (softmax of logits/T).
	w := make([]float64, k)
	var sum float64
	for i := range k {
		w[i] = math.Pow(math.Max(float64(probs[idx[i]]), 1e-30), 1/o.Temperature)
		sum += w[i]
	}
	r := rng.Float64() * sum
	for i := range k {
		r -= w[i]
		if r <= 0 {
			return byte(idx[i])
		}
	}
	return byte(idx[k-1])
}

func generateCmd(args []string) error {
	fs := flag.NewFlagSet("generate", flag.ContinueOnError)
	dir := fs.String("out", "gpt-run", "training run directory holding model.safetensors")
	prompt := fs.String("prompt", "func main() {\n", "text to continue")
	var o GenerateOptions
	fs.IntVar(&o.Tokens, "n", 400, "bytes to generate")
	fs.Float64Var(&o.Temperature, "temperature", 0.8, "sampling temperature (0: greedy)")
	fs.IntVar(&o.TopK, "top-k", 40, "sample among the k most likely bytes (0: all)")
	var seed int64
	fs.Int64Var(&seed, "seed", 1, "sampling seed")
	method := fs.String("attn", "exact", "attention method: exact, poly, anytemp or auto (falls back to exact where it declines)")
	eps := fs.Float64("eps", 1e-3, "error target of approximate attention")
	slowdown := fs.Float64("max-slowdown", 30, "run exact instead where -attn is predicted this many times slower than exact")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.Seed = uint64(seed)
	ck, err := LoadCheckpoint(filepath.Join(*dir, "model.safetensors"))
	if err != nil {
		return fmt.Errorf("%w (train first: go run ./examples/gpt train)", err)
	}
	m := ck.Model
	m.Attn = Attention{Method: *method, Eps: *eps, Fallback: true, MaxSlowdown: *slowdown}
	fmt.Print(*prompt)
	start := time.Now()
	if _, err := Generate(context.Background(), m, []byte(*prompt), o, os.Stdout); err != nil {
		return err
	}
	secs := time.Since(start).Seconds()
	fmt.Fprintf(os.Stderr, "\n[%d bytes in %.2f s: %.1f bytes/s, attention %s; %d attention calls declined and ran exact]\n",
		o.Tokens, secs, float64(o.Tokens)/secs, *method, m.Declined)
	return nil
}
