package main

// The training loop: AdamW with warm-up and cosine decay, validation at
// intervals, attention statistics, checkpoints, a progress bar.

import (
	"context"
	"encoding/csv"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/schollz/progressbar/v3"
)

// modelFlags registers the size flags shared by every command that builds
// a model.
func modelFlags(fs *flag.FlagSet) *Config {
	c := DefaultConfig()
	fs.IntVar(&c.Ctx, "ctx", c.Ctx, "context length (tokens = bytes)")
	fs.IntVar(&c.Dim, "dim", c.Dim, "residual width")
	fs.IntVar(&c.Layers, "layers", c.Layers, "transformer blocks")
	fs.IntVar(&c.Heads, "heads", c.Heads, "query heads")
	fs.IntVar(&c.KVHeads, "kv-heads", c.KVHeads, "key/value heads (grouped-query attention: divides -heads; equal to -heads for multi-head attention)")
	fs.IntVar(&c.HeadDim, "head-dim", c.HeadDim, "head dimension")
	fs.IntVar(&c.Hidden, "hidden", c.Hidden, "SwiGLU hidden width")
	fs.BoolVar(&c.QKNorm, "qk-norm", c.QKNorm, "normalize query and key head vectors; the logit scale is then -temp")
	fs.Float64Var(&c.Temp, "temp", 4, "attention temperature (logit scale) with -qk-norm")
	return &c
}

// trainOptions are the training run's settings.
type trainOptions struct {
	DataDir     string
	Out         string
	Steps       int
	Duration    time.Duration
	Batch       int
	LR, MinLR   float64
	Warmup      int
	WeightDecay float64
	Seed        uint64
	EvalEvery   int
	EvalBatches int
	StatsEvery  int
	Resume      bool
	Quiet       bool
	Attn        Attention
}

func trainCmd(args []string) error {
	fs := flag.NewFlagSet("train", flag.ContinueOnError)
	cfg := modelFlags(fs)
	var o trainOptions
	fs.StringVar(&o.DataDir, "data", defaultDataDir(), "directory of .go files to train on")
	fs.StringVar(&o.Out, "out", "gpt-run", "output directory: checkpoint, log.csv, stats.csv")
	fs.IntVar(&o.Steps, "steps", 1000, "training steps (about 10 minutes on an idle 2-core machine with the default sizes)")
	fs.DurationVar(&o.Duration, "duration", 0, "train for this wall-clock time instead of -steps; the learning-rate schedule then follows elapsed time")
	fs.IntVar(&o.Batch, "batch", 16, "sequences per step")
	fs.Float64Var(&o.LR, "lr", 3e-3, "peak learning rate")
	fs.Float64Var(&o.MinLR, "min-lr", 3e-4, "final learning rate")
	fs.IntVar(&o.Warmup, "warmup", 50, "warm-up steps")
	fs.Float64Var(&o.WeightDecay, "wd", 0.1, "AdamW weight decay")
	var seed int64
	fs.Int64Var(&seed, "seed", 1, "seed of the initialization, the data split and the batches")
	fs.IntVar(&o.EvalEvery, "eval-every", 100, "validate every this many steps")
	fs.IntVar(&o.EvalBatches, "eval-batches", 8, "validation batches (fixed windows of the validation files)")
	fs.IntVar(&o.StatsEvery, "stats-every", 200, "write attention statistics every this many steps (0: never)")
	fs.BoolVar(&o.Resume, "resume", false, "continue from OUT/model.safetensors")
	fs.BoolVar(&o.Quiet, "quiet", false, "no progress bar")
	fs.StringVar(&o.Attn.Method, "attn", "exact", "attention method: exact, poly, anytemp or auto")
	fs.Float64Var(&o.Attn.Eps, "eps", 1e-3, "error target of approximate attention")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("train: unexpected arguments %v", fs.Args())
	}
	o.Seed = uint64(seed)
	if o.Duration > 0 {
		o.Steps = 0
	}
	_, err := Train(context.Background(), *cfg, o, os.Stderr)
	return err
}

// trainResult summarizes a run for the caller (and tests).
type trainResult struct {
	Steps          int
	FirstLoss      float64
	LastTrainLoss  float64
	ValLoss        float64
	UnigramBPB     float64
	TokensPerSec   float64
	AttentionShare float64
	Seconds        float64
}

// Train runs training with cfg (ignored when resuming: the checkpoint's
// configuration wins) and writes everything under o.Out.
func Train(ctx context.Context, cfg Config, o trainOptions, log io.Writer) (*trainResult, error) {
	if o.Steps <= 0 && o.Duration <= 0 {
		return nil, fmt.Errorf("train: give -steps or -duration")
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	ds, err := LoadDataset(o.DataDir, 0.05, o.Seed)
	if err != nil {
		return nil, err
	}
	unigram := UnigramBitsPerByte(ds.Train, ds.Val)
	ckpt := filepath.Join(o.Out, "model.safetensors")
	var m *Model
	var opt *AdamW
	step, elapsed := 0, 0.0
	if o.Resume {
		ck, err := LoadCheckpoint(ckpt)
		if err != nil {
			return nil, fmt.Errorf("resume: %w", err)
		}
		if ck.Opt == nil {
			return nil, fmt.Errorf("resume: %s has no optimizer state", ckpt)
		}
		m, opt = ck.Model, ck.Opt
		opt.WeightDecay = o.WeightDecay
		step = opt.Step
		elapsed, _ = strconv.ParseFloat(ck.Meta["seconds"], 64)
	} else {
		if m, err = NewModel(cfg, o.Seed); err != nil {
			return nil, err
		}
		opt = NewAdamW(len(m.W), o.WeightDecay)
	}
	m.Attn = o.Attn
	m.PrepareTraining()
	cfg = m.Cfg
	if len(ds.Val) <= cfg.Ctx || len(ds.Train) <= cfg.Ctx {
		return nil, fmt.Errorf("train: the data is too small for context %d", cfg.Ctx)
	}
	fmt.Fprintf(log, "data: %d training files (%.1f MB), %d validation files (%.1f MB); unigram baseline %.3f bits/byte\n",
		ds.TrainFiles, float64(len(ds.Train))/1e6, ds.ValFiles, float64(len(ds.Val))/1e6, unigram)
	fmt.Fprintf(log, "model: %d parameters, %+v, attention %s\n", m.NumParams(), cfg, o.Attn.Method)
	if m.expandKV {
		fmt.Fprintf(log, "note: %s's backward pass does not take grouped-query attention yet, so each query head gets a copy of its key/value head\n", o.Attn.Method)
	}

	logCSV, err := openCSV(filepath.Join(o.Out, "log.csv"), o.Resume,
		[]string{"step", "seconds", "train_loss", "val_loss", "val_bpb", "unigram_bpb", "tokens_per_s", "attn_share", "lr", "cpu_seconds"})
	if err != nil {
		return nil, err
	}
	defer logCSV.close()
	var statsCSV *csvFile
	if o.StatsEvery > 0 {
		if statsCSV, err = openCSV(filepath.Join(o.Out, "stats.csv"), o.Resume, statsHeader); err != nil {
			return nil, err
		}
		defer statsCSV.close()
	}
	// Fixed validation windows: the same bytes at every evaluation.
	valRNG := rand.New(rand.NewPCG(o.Seed, 0x7a1))
	type batchT struct{ x, y []byte }
	var valBatches []batchT
	for range o.EvalBatches {
		x, y := Batch(ds.Val, o.Batch, cfg.Ctx, valRNG)
		valBatches = append(valBatches, batchT{x, y})
	}
	evaluate := func() (float64, error) {
		var sum float64
		for _, b := range valBatches {
			_, l, err := m.Forward(ctx, b.x, b.y, o.Batch)
			if err != nil {
				return 0, err
			}
			sum += l
		}
		return sum / float64(len(valBatches)), nil
	}
	writeStats := func() error {
		if statsCSV == nil {
			return nil
		}
		rows, err := AttentionStats(ctx, m, valBatches[0].x[:cfg.Ctx], o.Attn.Eps)
		if err != nil {
			return err
		}
		return statsCSV.writeStats(step, rows)
	}
	rng := rand.New(rand.NewPCG(o.Seed, uint64(step)+1)) // resumed runs draw new batches
	progress := func() float64 {
		if o.Steps > 0 {
			return float64(step) / float64(o.Steps)
		}
		return elapsed / o.Duration.Seconds()
	}
	lrAt := func() float64 {
		if step < o.Warmup {
			return o.LR * float64(step+1) / float64(o.Warmup)
		}
		p := min(progress(), 1)
		return o.MinLR + (o.LR-o.MinLR)*0.5*(1+math.Cos(math.Pi*p))
	}
	var bar *progressbar.ProgressBar
	if !o.Quiet {
		bar = progressbar.NewOptions(1000, progressbar.OptionSetWriter(log), progressbar.OptionSetWidth(24),
			progressbar.OptionThrottle(500*time.Millisecond), progressbar.OptionSetPredictTime(true),
			progressbar.OptionShowDescriptionAtLineEnd())
	}
	say := func(format string, args ...any) {
		if bar != nil {
			bar.Clear()
		}
		fmt.Fprintf(log, format, args...)
	}
	res := &trainResult{UnigramBPB: unigram, FirstLoss: math.NaN()}
	if step == 0 {
		if err := writeStats(); err != nil {
			return nil, err
		}
	}
	tokens := 0
	var attnSec, stepSec float64
	lastVal := math.NaN()
	for (o.Steps > 0 && step < o.Steps) || (o.Steps <= 0 && elapsed < o.Duration.Seconds()) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t0 := time.Now()
		m.AttnSeconds = 0
		x, y := Batch(ds.Train, o.Batch, cfg.Ctx, rng)
		a, loss, err := m.Forward(ctx, x, y, o.Batch)
		if err != nil {
			return nil, err
		}
		clear(m.G)
		if err := m.Backward(ctx, a); err != nil {
			return nil, err
		}
		clipGradients(m.G, 1)
		lr := lrAt()
		opt.Update(m, lr)
		step++
		dt := time.Since(t0).Seconds()
		elapsed += dt
		stepSec += dt
		attnSec += m.AttnSeconds
		tokens += o.Batch * cfg.Ctx
		if math.IsNaN(res.FirstLoss) {
			res.FirstLoss = loss
		}
		res.LastTrainLoss = loss
		tps := float64(tokens) / stepSec
		share := attnSec / stepSec
		valLoss := math.NaN()
		last := (o.Steps > 0 && step >= o.Steps) || (o.Steps <= 0 && elapsed >= o.Duration.Seconds())
		if step%o.EvalEvery == 0 || last {
			if valLoss, err = evaluate(); err != nil {
				return nil, err
			}
			lastVal = valLoss
			say("step %5d  %6.0fs  train %.4f  val %.4f (%.3f bits/byte; unigram %.3f)  %.0f tok/s  attention %.0f%%\n",
				step, elapsed, loss, valLoss, valLoss/math.Ln2, unigram, tps, 100*share)
			if err := SaveCheckpoint(ckpt, m, opt, map[string]string{"seconds": fmt.Sprint(elapsed)}); err != nil {
				return nil, err
			}
		}
		if o.StatsEvery > 0 && (step%o.StatsEvery == 0 || last) {
			if err := writeStats(); err != nil {
				return nil, err
			}
		}
		if err := logCSV.write(step, elapsed, loss, valLoss, valLoss/math.Ln2, unigram, tps, share, lr, cpuSeconds()); err != nil {
			return nil, err
		}
		if bar != nil {
			bar.Describe(fmt.Sprintf("step %d loss %.3f | %.0f tok/s | attention %.0f%%", step, loss, tps, 100*share))
			bar.Set(int(1000 * min(progress(), 1)))
		}
	}
	if bar != nil {
		bar.Finish()
		fmt.Fprintln(log)
	}
	res.Steps, res.ValLoss, res.Seconds = step, lastVal, elapsed
	if stepSec > 0 {
		res.TokensPerSec, res.AttentionShare = float64(tokens)/stepSec, attnSec/stepSec
	}
	fmt.Fprintf(log, "done: %d steps, %.0f s; validation %.4f nats = %.3f bits/byte (unigram %.3f); %.0f tokens/s; attention %.1f%% of step time; %.0f CPU seconds\n",
		step, elapsed, lastVal, lastVal/math.Ln2, unigram, res.TokensPerSec, 100*res.AttentionShare, cpuSeconds())
	if m.PolyRows > 0 {
		// Rows poly computes exactly are exact attention in all but name.
		fmt.Fprintf(log, "poly: %.1f%% of the query rows it saw in forward passes were computed exactly; largest degree %d\n",
			100*float64(m.PolyExactRows)/float64(m.PolyRows), m.PolyMaxDegree)
	}
	return res, nil
}

// csvFile appends rows to a CSV file, flushing after each.
type csvFile struct {
	f *os.File
	w *csv.Writer
}

func openCSV(path string, appendTo bool, header []string) (*csvFile, error) {
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if appendTo {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	f, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return nil, err
	}
	c := &csvFile{f: f, w: csv.NewWriter(f)}
	if st, _ := f.Stat(); st.Size() == 0 {
		c.w.Write(header)
	}
	return c, nil
}

func (c *csvFile) write(vals ...any) error {
	rec := make([]string, len(vals))
	for i, v := range vals {
		switch x := v.(type) {
		case float64:
			rec[i] = strconv.FormatFloat(x, 'g', 6, 64)
		default:
			rec[i] = fmt.Sprint(x)
		}
	}
	c.w.Write(rec)
	c.w.Flush()
	return c.w.Error()
}

func (c *csvFile) close() { c.w.Flush(); c.f.Close() }
