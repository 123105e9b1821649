package main

// Sampling: temperature and top-k over the next-byte distribution, with a
// key/value cache per layer (fastattn.Cache: exact, poly or auto decoding)
// or by rerunning the model over the whole context for every byte.

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

	"github.com/fastattn/fastattn"
)

// GenerateOptions control sampling.
type GenerateOptions struct {
	Tokens      int     // bytes to generate
	Temperature float64 // 0: greedy
	TopK        int     // 0: all 256
	Seed        uint64
	// Cache is the key/value cache's method ("exact", "poly" or "auto"),
	// or "" to recompute the whole context for every byte.
	Cache string
	Eps   float64 // error target of a poly or auto cache
}

// Generate appends opts.Tokens sampled bytes to prompt and writes each to
// w (if not nil) as it comes. The model sees the last Cfg.Ctx bytes (with a
// cache: a sliding window of Cfg.Ctx keys, FlashAttention's window_size).
func Generate(ctx context.Context, m *Model, prompt []byte, opts GenerateOptions, w io.Writer) ([]byte, error) {
	if opts.Cache != "" {
		return generateCached(ctx, m, prompt, opts, w)
	}
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

// generateCached is Generate with one key/value cache per layer: the
// prompt is run once (prefill), then each byte costs one token's forward
// pass against the cached keys and values.
func generateCached(ctx context.Context, m *Model, prompt []byte, opts GenerateOptions, w io.Writer) ([]byte, error) {
	c := m.Cfg
	rng := rand.New(rand.NewPCG(opts.Seed, 0x6e7))
	seq := append([]byte(nil), prompt...)
	if len(seq) == 0 {
		seq = []byte{'\n'}
	}
	caches := make([]*fastattn.Cache[float32], c.Layers)
	for l := range caches {
		var err error
		caches[l], err = fastattn.NewCache[float32](1, c.KVHeads, c.HeadDim, c.HeadDim, fastattn.CacheOptions{
			QueryHeads: c.Heads, Scale: c.scale(), Method: opts.Cache, Eps: opts.Eps,
			Window: &fastattn.Window{Left: c.Ctx - 1, Right: 0},
		})
		if err != nil {
			return nil, err
		}
	}
	feed := seq[max(0, len(seq)-c.Ctx):] // the prefill
	pos := 0
	for range opts.Tokens {
		a, _, err := m.forward(ctx, feed, nil, 1, pos, caches)
		if err != nil {
			return nil, err
		}
		pos += len(feed)
		n := len(feed)
		next := sample(a.probs[(n-1)*c.Vocab:n*c.Vocab], opts, rng)
		seq = append(seq, next)
		if w != nil {
			w.Write([]byte{next})
		}
		feed = []byte{next}
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
	method := fs.String("attn", "exact", "attention method without a cache (-cache none): exact, poly, anytemp or auto (exact where it declines)")
	fs.StringVar(&o.Cache, "cache", "exact", "key/value cache method: exact, poly or auto; none recomputes the context for every byte")
	eps := fs.Float64("eps", 1e-3, "error target of approximate attention")
	slowdown := fs.Float64("max-slowdown", 30, "run exact instead where -attn is predicted this many times slower than exact")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.Seed, o.Eps = uint64(seed), *eps
	if o.Cache == "none" {
		o.Cache = ""
	}
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
	how := "cache " + o.Cache
	if o.Cache == "" {
		how = fmt.Sprintf("no cache, attention %s (%d calls declined and ran exact)", *method, m.Declined)
	}
	fmt.Fprintf(os.Stderr, "\n[%d bytes in %.2f s: %.1f bytes/s; %s]\n", o.Tokens, secs, float64(o.Tokens)/secs, how)
	return nil
}
