package main

import (
	"bytes"
	"context"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func tinyConfig() Config {
	return Config{Vocab: 256, Ctx: 12, Dim: 16, Layers: 2, Heads: 2, KVHeads: 2, HeadDim: 8, Hidden: 24, RopeBase: 10000}
}

// tinyModel has weights large enough that attention is far from uniform,
// so the gradient check exercises every path.
func tinyModel(t *testing.T, cfg Config) *Model {
	t.Helper()
	m, err := NewModel(cfg, 3)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for _, s := range m.Specs {
		for i := s.Off; i < s.Off+s.Size; i++ {
			if s.Decay {
				m.W[i] *= 10
			} else {
				m.W[i] = float32(0.5 + rng.Float64())
			}
		}
	}
	return m
}

func randomTokens(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.IntN(256))
	}
	return b
}

// TestGradientFiniteDifferences compares the backward pass with central
// differences of the loss along a random direction within every tensor
// (so a wrong gradient in any one tensor fails), in float64 arithmetic on
// the float32 weights' neighbourhood.
func TestGradientFiniteDifferences(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cfg    func(*Config)
		repeat bool // force the repeated-heads form of grouped-query attention
	}{
		{"plain", func(*Config) {}, false},
		{"qk-norm", func(c *Config) { c.QKNorm, c.Temp = true, 3 }, false},
		{"grouped-query", func(c *Config) { c.Heads, c.KVHeads = 4, 2 }, false},
		{"grouped-query-repeated", func(c *Config) { c.Heads, c.KVHeads = 4, 2 }, true},
		{"multi-query", func(c *Config) { c.Heads, c.KVHeads = 4, 1 }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tinyConfig()
			tc.cfg(&cfg)
			m := tinyModel(t, cfg)
			m.PrepareTraining()
			m.expandKV = m.expandKV || tc.repeat
			ctx := context.Background()
			const batch = 2
			x, y := randomTokens(batch*cfg.Ctx, 1), randomTokens(batch*cfg.Ctx, 2)
			a, _, err := m.Forward(ctx, x, y, batch)
			if err != nil {
				t.Fatal(err)
			}
			clear(m.G)
			if err := m.Backward(ctx, a); err != nil {
				t.Fatal(err)
			}
			grad := append([]float32(nil), m.G...)
			loss := func() float64 {
				_, l, err := m.Forward(ctx, x, y, batch)
				if err != nil {
					t.Fatal(err)
				}
				return l
			}
			rng := rand.New(rand.NewPCG(9, 9))
			for _, s := range m.Specs {
				u := make([]float64, s.Size)
				var nu float64
				for i := range u {
					u[i] = rng.NormFloat64()
					nu += u[i] * u[i]
				}
				var gu float64
				for i := range u {
					u[i] /= math.Sqrt(nu)
					gu += float64(grad[s.Off+i]) * u[i]
				}
				orig := append([]float32(nil), m.W[s.Off:s.Off+s.Size]...)
				const h = 1e-2
				shift := func(sign float64) {
					for i := range u {
						m.W[s.Off+i] = orig[i] + float32(sign*h*u[i])
					}
				}
				shift(1)
				lp := loss()
				shift(-1)
				lm := loss()
				copy(m.W[s.Off:s.Off+s.Size], orig)
				fd := (lp - lm) / (2 * h)
				if diff := math.Abs(fd - gu); diff > 0.03*math.Abs(gu)+2e-4 {
					t.Errorf("%s: directional derivative %.6g from finite differences, %.6g from the backward pass", s.Name, fd, gu)
				}
			}
		})
	}
}

// writeData creates a small directory of .go files: a repetitive text the
// model can learn in a few steps.
func writeData(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for i := range 6 {
		var b strings.Builder
		for j := range 60 {
			b.WriteString("func f() int { return x + y }\n")
			if j%7 == i {
				b.WriteString("// comment\n")
			}
		}
		if err := os.WriteFile(filepath.Join(dir, "f"+string(rune('a'+i))+".go"), []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func tinyTrainOptions(t *testing.T, data string) trainOptions {
	return trainOptions{DataDir: data, Out: t.TempDir(), Steps: 30, Batch: 4, LR: 1e-2, MinLR: 1e-3, Warmup: 5,
		WeightDecay: 0.1, Seed: 1, EvalEvery: 15, EvalBatches: 2, StatsEvery: 15, Quiet: true, Attn: Attention{Method: "exact"}}
}

func TestTrainingReducesLoss(t *testing.T) {
	data := writeData(t)
	var log bytes.Buffer
	o := tinyTrainOptions(t, data)
	res, err := Train(context.Background(), tinyConfig(), o, &log)
	if err != nil {
		t.Fatal(err)
	}
	if !(res.LastTrainLoss < 0.7*res.FirstLoss) || !(res.ValLoss < 0.7*math.Log(256)) {
		t.Errorf("loss went from %.3f to %.3f (validation %.3f); expected a clear drop\n%s", res.FirstLoss, res.LastTrainLoss, res.ValLoss, log.String())
	}
	// The other commands run on the trained model and write their files.
	for _, cmd := range []struct {
		run  func([]string) error
		args []string
	}{
		{statsCmd, []string{"-out", o.Out, "-data", data, "-seqs", "1"}},
		{swapCmd, []string{"-out", o.Out, "-data", data, "-batches", "1", "-batch", "2", "-gen", "4", "-eps", "1e-3"}},
		{compareCmd, []string{"-o", filepath.Join(o.Out, "cmp"), o.Out, o.Out}},
		{generateCmd, []string{"-out", o.Out, "-n", "8", "-prompt", "func"}},
	} {
		if err := cmd.run(cmd.args); err != nil {
			t.Fatalf("%v: %v", cmd.args, err)
		}
	}
	for _, f := range []string{"final_stats.csv", "logit_hist.png", "beta.png", "swap.csv", "cmp_steps.png", "cmp_time.png", "cmp_cpu.png"} {
		if st, err := os.Stat(filepath.Join(o.Out, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s missing or empty (%v)", f, err)
		}
	}
}

// TestResume checks that a run of 30 steps and a run of 15 steps resumed
// for 15 more end at the same weights: the checkpoint holds everything
// training needs (weights, AdamW moments, step).
func TestCheckpointRoundTripAndResume(t *testing.T) {
	data := writeData(t)
	ctx := context.Background()
	o := tinyTrainOptions(t, data)
	o.StatsEvery = 0
	if _, err := Train(ctx, tinyConfig(), o, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	full, err := LoadCheckpoint(filepath.Join(o.Out, "model.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	if full.Opt == nil || full.Opt.Step != 30 || full.Model.Cfg != tinyConfig() {
		t.Fatalf("checkpoint has step %v and config %+v", full.Opt, full.Model.Cfg)
	}
	// Round trip: save what was loaded and load it again.
	path := filepath.Join(t.TempDir(), "again.safetensors")
	if err := SaveCheckpoint(path, full.Model, full.Opt, nil); err != nil {
		t.Fatal(err)
	}
	again, err := LoadCheckpoint(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := range full.Model.W {
		if full.Model.W[i] != again.Model.W[i] || full.Opt.M[i] != again.Opt.M[i] || full.Opt.V[i] != again.Opt.V[i] {
			t.Fatalf("entry %d changed in the round trip", i)
		}
	}
	// A corrupt file is an error, not a panic.
	if err := os.WriteFile(path, []byte("not a checkpoint"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCheckpoint(path); err == nil {
		t.Error("a corrupt checkpoint loaded without error")
	}
	// Resume: 15 + 15 steps reach a model as good as 30 (batches after the
	// resume are drawn anew, so the weights differ; the loss must not jump).
	o2 := tinyTrainOptions(t, data)
	o2.StatsEvery, o2.Steps = 0, 15
	half, err := Train(ctx, tinyConfig(), o2, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	o2.Steps, o2.Resume = 30, true
	res, err := Train(ctx, tinyConfig(), o2, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps != 30 || !(res.FirstLoss < 0.5*(half.FirstLoss+half.LastTrainLoss)) {
		t.Errorf("resumed run: %d steps, first loss %.3f; the first 15 steps went from %.3f to %.3f (a resumed run continues, not restarts)",
			res.Steps, res.FirstLoss, half.FirstLoss, half.LastTrainLoss)
	}
}

func TestGenerationDeterministic(t *testing.T) {
	m := tinyModel(t, tinyConfig())
	ctx := context.Background()
	gen := func(seed uint64) []byte {
		out, err := Generate(ctx, m, []byte("func "), GenerateOptions{Tokens: 30, Temperature: 1, TopK: 20, Seed: seed}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	a, b, c := gen(7), gen(7), gen(8)
	if !bytes.Equal(a, b) {
		t.Errorf("same seed, different text: %q vs %q", a, b)
	}
	if bytes.Equal(a, c) {
		t.Errorf("different seeds gave the same 30 sampled bytes %q", a)
	}
	if len(a) != len("func ")+30 || !bytes.HasPrefix(a, []byte("func ")) {
		t.Errorf("generated %q: want the prompt and 30 bytes", a)
	}
}

// TestSwapAndStats runs the statistics and an approximate method on the
// tiny model: poly at eps 1e-3 must give nearly the same loss as exact.
func TestSwapAndStats(t *testing.T) {
	cfg := tinyConfig()
	cfg.QKNorm, cfg.Temp = true, 2
	m, err := NewModel(cfg, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	x, y := randomTokens(2*cfg.Ctx, 1), randomTokens(2*cfg.Ctx, 2)
	_, exact, err := m.Forward(ctx, x, y, 2)
	if err != nil {
		t.Fatal(err)
	}
	m.Attn = Attention{Method: "poly", Eps: 1e-3}
	_, approx, err := m.Forward(ctx, x, y, 2)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(approx-exact) > 1e-2*exact {
		t.Errorf("poly loss %.6f vs exact %.6f", approx, exact)
	}
	rows, err := AttentionStats(ctx, m, x[:cfg.Ctx], 1e-3)
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != cfg.Layers*cfg.Heads {
		t.Fatalf("%d stats rows, want %d", len(rows), cfg.Layers*cfg.Heads)
	}
	for _, r := range rows {
		// QK-norm bounds every logit by the temperature and beta by twice it.
		if r.LogitMax > cfg.Temp+1e-4 || r.LogitMin < -cfg.Temp-1e-4 || r.Beta > 2*cfg.Temp+1e-4 || r.PolyDegree < 1 {
			t.Errorf("layer %d head %d: logits [%g, %g], beta %g, degree %d", r.Layer, r.Head, r.LogitMin, r.LogitMax, r.Beta, r.PolyDegree)
		}
	}
}

// TestGroupedQueryPaths checks that the library's grouped-query attention
// (inference) and the repeated-heads form (training while a backward pass
// lacks grouped-query support) give the same loss.
func TestGroupedQueryPaths(t *testing.T) {
	cfg := tinyConfig()
	cfg.Heads, cfg.KVHeads = 4, 2
	m := tinyModel(t, cfg)
	ctx := context.Background()
	x, y := randomTokens(2*cfg.Ctx, 1), randomTokens(2*cfg.Ctx, 2)
	_, direct, err := m.Forward(ctx, x, y, 2)
	if err != nil {
		t.Fatal(err)
	}
	m.expandKV = true
	_, repeated, err := m.Forward(ctx, x, y, 2)
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(direct-repeated) > 1e-5*direct {
		t.Errorf("grouped-query loss %.7f, repeated heads %.7f", direct, repeated)
	}
}

// TestCachedGenerationMatchesRecompute checks that decoding with the
// key/value cache gives the same greedy text as rerunning the model over
// the whole context, while the text fits in the context (past it the two
// see different histories: a sliding window of keys against a cropped
// input).
func TestCachedGenerationMatchesRecompute(t *testing.T) {
	cfg := tinyConfig()
	cfg.Heads, cfg.KVHeads = 4, 2
	m := tinyModel(t, cfg)
	ctx := context.Background()
	prompt := []byte("func ")
	n := cfg.Ctx - len(prompt)
	full, err := Generate(ctx, m, prompt, GenerateOptions{Tokens: n}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, method := range []string{"exact", "poly", "auto"} {
		cached, err := Generate(ctx, m, prompt, GenerateOptions{Tokens: n, Cache: method, Eps: 1e-4}, nil)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		if !bytes.Equal(full, cached) {
			t.Errorf("cache %s generated %q, recomputing %q", method, cached, full)
		}
	}
	// Past the context the cached run keeps going.
	long, err := Generate(ctx, m, prompt, GenerateOptions{Tokens: 3 * cfg.Ctx, Cache: "exact"}, nil)
	if err != nil || len(long) != len(prompt)+3*cfg.Ctx {
		t.Fatalf("long cached generation: %d bytes, %v", len(long), err)
	}
}

// TestSigmoid compares sigmoid with float64 arithmetic on random and
// extreme arguments, across a block boundary.
func TestSigmoid(t *testing.T) {
	x := []float32{0, -0, 1e-30, -1e-30, 88, -88, 100, -100, 1e30, -1e30, float32(math.Inf(1)), float32(math.Inf(-1))}
	rng := rand.New(rand.NewPCG(1, 2))
	for len(x) < 3*sigmoidBlock/2 {
		x = append(x, float32(rng.NormFloat64()*8))
	}
	s := make([]float32, len(x))
	sigmoid(s, x)
	for i, v := range x {
		want := 1 / (1 + math.Exp(-float64(v)))
		if d := math.Abs(float64(s[i]) - want); d > 4e-7*want+1e-37 {
			t.Errorf("sigmoid(%g) = %g, want %g", v, s[i], want)
		}
	}
}

// BenchmarkTrainStep times one training step's forward and backward
// passes (no optimizer step) of the default model on a batch of 16
// random sequences, with exact attention.
func BenchmarkTrainStep(b *testing.B) {
	cfg := DefaultConfig()
	m, err := NewModel(cfg, 1)
	if err != nil {
		b.Fatal(err)
	}
	m.Attn = Attention{Method: "exact"}
	m.PrepareTraining()
	rng := rand.New(rand.NewPCG(1, 2))
	const batch = 16
	x := make([]byte, batch*cfg.Ctx)
	y := make([]byte, batch*cfg.Ctx)
	for i := range x {
		x[i], y[i] = byte(rng.IntN(256)), byte(rng.IntN(256))
	}
	ctx := context.Background()
	for b.Loop() {
		a, _, err := m.Forward(ctx, x, y, batch)
		if err != nil {
			b.Fatal(err)
		}
		if err := m.Backward(ctx, a); err != nil {
			b.Fatal(err)
		}
	}
}
