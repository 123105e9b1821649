package main

// The model: a decoder-only byte-level transformer (Llama-like: RMSNorm,
// rotary embeddings, grouped-query attention, SwiGLU MLP, tied input and
// output embeddings). Forward and backward are written out layer by layer,
// and every matrix product goes through the project's GEMM kernels.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/fastattn/fastattn"
	"github.com/fastattn/fastattn/anytemp"
	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/exact"
	"github.com/fastattn/fastattn/poly"
)

// Config is the model's shape. It is stored in checkpoints.
type Config struct {
	Vocab    int     `json:"vocab"`     // 256: one token per byte
	Ctx      int     `json:"ctx"`       // context length
	Dim      int     `json:"dim"`       // residual width
	Layers   int     `json:"layers"`    // transformer blocks
	Heads    int     `json:"heads"`     // query heads
	KVHeads  int     `json:"kv_heads"`  // key/value heads (divides Heads: grouped-query attention)
	HeadDim  int     `json:"head_dim"`  // per head
	Hidden   int     `json:"hidden"`    // SwiGLU width
	RopeBase float64 `json:"rope_base"` // rotary embedding base
	// QKNorm normalizes every query and key head vector to unit length;
	// the attention scale is then Temp, so |logit| <= Temp and poly's
	// beta = Temp * max|q| * max|k - mean k| <= 2 Temp stays bounded.
	QKNorm bool    `json:"qk_norm"`
	Temp   float64 `json:"temp"`
}

// DefaultConfig is the model `train` builds without size flags.
func DefaultConfig() Config {
	return Config{Vocab: 256, Ctx: 256, Dim: 128, Layers: 4, Heads: 4, KVHeads: 2, HeadDim: 32, Hidden: 352, RopeBase: 10000}
}

func (c Config) validate() error {
	switch {
	case c.Vocab != 256:
		return errors.New("vocab must be 256 (byte-level)")
	case c.Ctx < 2 || c.Dim < 1 || c.Layers < 1 || c.Heads < 1 || c.KVHeads < 1 || c.Hidden < 1:
		return fmt.Errorf("every size must be positive (ctx >= 2): %+v", c)
	case c.HeadDim < 2 || c.HeadDim%2 != 0:
		return fmt.Errorf("head dimension %d must be even (rotary embeddings rotate pairs)", c.HeadDim)
	case c.Heads%c.KVHeads != 0:
		return fmt.Errorf("kv heads %d must divide heads %d", c.KVHeads, c.Heads)
	case c.QKNorm && c.Temp <= 0:
		return errors.New("qk-norm needs a positive temperature")
	}
	return nil
}

// scale is the attention's logit scale.
func (c Config) scale() float64 {
	if c.QKNorm {
		return c.Temp
	}
	return 1 / math.Sqrt(float64(c.HeadDim))
}

// tensorSpec places one named parameter in the flat parameter vector.
type tensorSpec struct {
	Name  string
	Shape []int
	Off   int
	Size  int
	Decay bool // weight decay applies (matrices, not norm gains)
}

// layerParams are one block's tensors, as views into a flat vector (the
// weights or their gradients).
type layerParams struct {
	ln1, wq, wk, wv, wo, ln2, w1, w3, w2 []float32
}

type params struct {
	wte    []float32 // Vocab x Dim, also the output projection (tied)
	layers []layerParams
	lnf    []float32
}

// specs lays out every parameter, in the order of the checkpoint.
func (c Config) specs() []tensorSpec {
	var s []tensorSpec
	off := 0
	add := func(name string, decay bool, shape ...int) {
		n := 1
		for _, x := range shape {
			n *= x
		}
		s = append(s, tensorSpec{Name: name, Shape: shape, Off: off, Size: n, Decay: decay})
		off += n
	}
	add("wte", true, c.Vocab, c.Dim)
	for l := range c.Layers {
		p := fmt.Sprintf("h.%d.", l)
		add(p+"ln1", false, c.Dim)
		add(p+"wq", true, c.Heads*c.HeadDim, c.Dim)
		add(p+"wk", true, c.KVHeads*c.HeadDim, c.Dim)
		add(p+"wv", true, c.KVHeads*c.HeadDim, c.Dim)
		add(p+"wo", true, c.Dim, c.Heads*c.HeadDim)
		add(p+"ln2", false, c.Dim)
		add(p+"w1", true, c.Hidden, c.Dim)
		add(p+"w3", true, c.Hidden, c.Dim)
		add(p+"w2", true, c.Dim, c.Hidden)
	}
	add("lnf", false, c.Dim)
	return s
}

// bind cuts a flat vector into the named tensors.
func (c Config) bind(flat []float32) params {
	sp := c.specs()
	at := func(i int) []float32 { return flat[sp[i].Off : sp[i].Off+sp[i].Size] }
	p := params{wte: at(0), lnf: at(len(sp) - 1)}
	for l := range c.Layers {
		i := 1 + 9*l
		p.layers = append(p.layers, layerParams{
			ln1: at(i), wq: at(i + 1), wk: at(i + 2), wv: at(i + 3), wo: at(i + 4),
			ln2: at(i + 5), w1: at(i + 6), w3: at(i + 7), w2: at(i + 8),
		})
	}
	return p
}

// Model holds the weights, their gradients and the attention backend.
type Model struct {
	Cfg   Config
	Specs []tensorSpec
	W, G  []float32 // flat weights and gradients
	w, g  params
	rope  *rope
	Attn  Attention
	// AttnSeconds accumulates time spent in attention forward and backward.
	AttnSeconds float64
	// Declined counts attention calls whose method declined the input and
	// fell back to exact (only with Attention.Fallback); Calls counts all
	// forward attention calls, and Ran, when not nil, counts the method that
	// ran per layer ("LAYER:METHOD").
	Declined, Calls int
	Ran             map[string]int
	// PolyRows and PolyExactRows count the query rows poly attention saw
	// and those it computed exactly (its per-row degree would have raised
	// every key's rank); PolyMaxDegree is the largest degree it used.
	PolyRows, PolyExactRows, PolyMaxDegree int
	// expandKV repeats key/value heads per query head before attention
	// (see repeatHeads): set for training when the method's backward pass
	// does not take grouped-query attention.
	expandKV bool
}

// PrepareTraining sets up the model for forward and backward passes with
// its attention method.
func (m *Model) PrepareTraining() {
	m.expandKV = m.Cfg.KVHeads < m.Cfg.Heads && !gqaBackwardSupported(m.Attn.Method)
}

// Attention says how the model computes attention.
type Attention struct {
	Method string  // a fastattn method name or "auto"
	Eps    float64 // error target of approximate methods
	// Fallback runs exact attention when the method declines an input.
	Fallback bool
	// MaxSlowdown, when positive, declines (and with Fallback runs exact
	// instead of) a named approximate method that its planner predicts
	// more than this many times slower than exact attention: fastattn runs
	// an explicitly named method even then, and at a head dimension of 32
	// the polynomial method's rank runs into the millions.
	MaxSlowdown float64
}

// tooSlow reports whether the planners predict method more than
// MaxSlowdown times slower than exact attention on the problem.
func (a Attention) tooSlow(q, k, v fastattn.Tensor[float32], o fastattn.Options) (bool, string) {
	pl, ok := plannerOf[a.Method]
	if a.MaxSlowdown <= 0 || !ok {
		return false, ""
	}
	r := len(q.Shape)
	p := &attn.Problem[float32]{
		Heads: len(q.Data) / (q.Shape[r-2] * q.Shape[r-1]), N: q.Shape[r-2], M: k.Shape[r-2], D: q.Shape[r-1], E: v.Shape[r-1],
		KVHeads: len(k.Data) / (k.Shape[r-2] * k.Shape[r-1]),
		Q:       q.Data, K: k.Data, V: v.Data, Scale: o.Scale, Causal: o.Causal, Eps: o.Eps,
	}
	est, err := attn.EstimateCost(pl, p)
	if err != nil {
		return true, err.Error()
	}
	ex, err := attn.EstimateCost(exact.Method{}, p)
	if err != nil || est.Seconds <= a.MaxSlowdown*ex.Seconds {
		return false, ""
	}
	return true, fmt.Sprintf("predicted %.3g s against exact's %.3g s (%s)", est.Seconds, ex.Seconds, est.Reason)
}

// plannerOf holds the approximate methods' planners.
var plannerOf = map[string]attn.Planner{"poly": poly.Method{}, "anytemp": anytemp.Method{}}

// NewModel allocates a model with GPT-2-style initialization: N(0, 0.02)
// matrices, output projections scaled by 1/sqrt(2 layers), unit gains.
func NewModel(cfg Config, seed uint64) (*Model, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	sp := cfg.specs()
	n := sp[len(sp)-1].Off + sp[len(sp)-1].Size
	m := &Model{Cfg: cfg, Specs: sp, W: make([]float32, n), G: make([]float32, n),
		rope: newRope(cfg.Ctx, cfg.HeadDim, cfg.RopeBase), Attn: Attention{Method: "exact"}}
	m.w, m.g = cfg.bind(m.W), cfg.bind(m.G)
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	for _, s := range sp {
		t := m.W[s.Off : s.Off+s.Size]
		if !s.Decay {
			for i := range t {
				t[i] = 1
			}
			continue
		}
		std := 0.02
		if len(s.Name) > 2 && (s.Name[len(s.Name)-2:] == "wo" || s.Name[len(s.Name)-2:] == "w2") {
			std /= math.Sqrt(2 * float64(cfg.Layers))
		}
		for i := range t {
			t[i] = float32(rng.NormFloat64() * std)
		}
	}
	return m, nil
}

// layerActs are the activations one block keeps for its backward pass.
type layerActs struct {
	x, h1, rstd1         []float32 // block input, normed, 1/rms
	q, k, v              []float32 // linear outputs (tokens x heads*d)
	qa, ka, va           []float32 // attention layout (batch, heads, ctx, d), normed and rotated
	qn, kn               []float32 // QK-norm's norms
	res                  *fastattn.Result[float32]
	att                  []float32 // attention output, tokens x heads*d
	x2, h2, rstd2        []float32
	a, b, gl             []float32 // SwiGLU: W1 h2, W3 h2, silu(a)*b
	attOpts              fastattn.Options
	batch, seq, rows     int
	qShape, kShape, vShp []int
	kAtt, vAtt           []float32 // the keys and values attention gets (repeated per query head with expandKV)
}

// acts is the whole forward pass's state.
type acts struct {
	layers        []layerActs
	xf, hf, rstdf []float32
	probs         []float32
	tokens        []byte
	targets       []byte
	batch         int
}

// Forward runs the model on batch sequences of Cfg.Ctx tokens (and
// targets, when not nil, to compute the mean cross-entropy in nats). It
// returns the state Backward needs; its probs are the next-token
// distributions (batch*ctx x 256).
func (m *Model) Forward(ctx context.Context, tokens, targets []byte, batch int) (*acts, float64, error) {
	return m.forward(ctx, tokens, targets, batch, 0, nil)
}

// forward is Forward for tokens at positions pos0.. of their sequences,
// with one key/value cache per layer when caches is not nil (decoding:
// earlier tokens' keys and values are in the caches and not recomputed).
func (m *Model) forward(ctx context.Context, tokens, targets []byte, batch, pos0 int, caches []*fastattn.Cache[float32]) (*acts, float64, error) {
	c := m.Cfg
	if batch < 1 || len(tokens) == 0 || len(tokens)%batch != 0 || (caches == nil && len(tokens)/batch > c.Ctx) || (targets != nil && len(targets) != len(tokens)) {
		return nil, 0, fmt.Errorf("forward: %d tokens (%d targets) do not make %d sequences of at most %d", len(tokens), len(targets), batch, c.Ctx)
	}
	T, C := len(tokens)/batch, c.Dim
	N := batch * T
	m.rope.ensure(pos0 + T)
	a := &acts{tokens: tokens, targets: targets, batch: batch}
	x := make([]float32, N*C)
	for i, t := range tokens {
		copy(x[i*C:(i+1)*C], m.w.wte[int(t)*C:(int(t)+1)*C])
	}
	for l := range c.Layers {
		var cache *fastattn.Cache[float32]
		if caches != nil {
			cache = caches[l]
		}
		la, y, err := m.blockForward(ctx, l, x, batch, T, pos0, cache)
		if err != nil {
			return nil, 0, err
		}
		a.layers = append(a.layers, la)
		x = y
	}
	a.xf = x
	a.hf, a.rstdf = make([]float32, N*C), make([]float32, N)
	rmsnormForward(a.hf, a.rstdf, x, m.w.lnf, N, C)
	a.probs = make([]float32, N*c.Vocab)
	matmulForward(a.probs, a.hf, m.w.wte, N, C, c.Vocab) // tied output head
	if targets == nil {
		parallelFor(N, 1, func(lo, hi int) { softmaxRows(a.probs[lo*c.Vocab:hi*c.Vocab], c.Vocab) })
		return a, 0, nil
	}
	loss := crossEntropy(a.probs, targets, N, c.Vocab)
	return a, loss, nil
}

// blockForward is one transformer block: x + attention(norm(x)), then
// that plus MLP(norm(.)).
func (m *Model) blockForward(ctx context.Context, l int, x []float32, batch, T, pos0 int, cache *fastattn.Cache[float32]) (layerActs, []float32, error) {
	c, w := m.Cfg, m.w.layers[l]
	C, H, KV, D := c.Dim, c.Heads, c.KVHeads, c.HeadDim
	N := batch * T
	la := layerActs{x: x, batch: batch, seq: T, rows: N}
	// Attention sub-block.
	la.h1, la.rstd1 = make([]float32, N*C), make([]float32, N)
	rmsnormForward(la.h1, la.rstd1, x, w.ln1, N, C)
	la.q, la.k, la.v = make([]float32, N*H*D), make([]float32, N*KV*D), make([]float32, N*KV*D)
	matmulForward(la.q, la.h1, w.wq, N, C, H*D)
	matmulForward(la.k, la.h1, w.wk, N, C, KV*D)
	matmulForward(la.v, la.h1, w.wv, N, C, KV*D)
	la.qa, la.ka, la.va = make([]float32, N*H*D), make([]float32, N*KV*D), make([]float32, N*KV*D)
	if c.QKNorm {
		la.qn, la.kn = make([]float32, batch*H*T), make([]float32, batch*KV*T)
	}
	splitHeads(la.qa, la.q, batch, T, H, D, m.rope, pos0, la.qn)
	splitHeads(la.ka, la.k, batch, T, KV, D, m.rope, pos0, la.kn)
	splitHeads(la.va, la.v, batch, T, KV, D, nil, 0, nil)
	la.qShape, la.kShape, la.vShp = []int{batch, H, T, D}, []int{batch, KV, T, D}, []int{batch, KV, T, D}
	la.kAtt, la.vAtt = la.ka, la.va
	if m.expandKV && KV < H {
		la.kAtt, la.vAtt = repeatHeads(la.ka, batch, KV, H/KV, T*D), repeatHeads(la.va, batch, KV, H/KV, T*D)
		la.kShape, la.vShp = []int{batch, H, T, D}, []int{batch, H, T, D}
	}
	la.attOpts = fastattn.Options{Causal: true, Scale: c.scale(), Method: m.Attn.Method, Eps: m.Attn.Eps}
	start := time.Now()
	var res *fastattn.Result[float32]
	var err error
	if cache != nil {
		res, err = cache.Forward(ctx, fastattn.Tensor[float32]{Data: la.qa, Shape: la.qShape},
			fastattn.Tensor[float32]{Data: la.ka, Shape: []int{batch, KV, T, D}}, fastattn.Tensor[float32]{Data: la.va, Shape: []int{batch, KV, T, D}})
	} else {
		res, err = m.attend(ctx, &la)
	}
	m.AttnSeconds += time.Since(start).Seconds()
	if err != nil {
		return la, nil, fmt.Errorf("layer %d attention: %w", l, err)
	}
	la.res = res
	m.Calls++
	if res.Report.Method == "poly" {
		m.PolyRows += batch * H * T
		if x, ok := res.Report.Details["exact_rows"].(int); ok {
			m.PolyExactRows += x
		}
		if x, ok := res.Report.Details["degree_max"].(int); ok {
			m.PolyMaxDegree = max(m.PolyMaxDegree, x)
		}
	}
	if m.Ran != nil {
		m.Ran[fmt.Sprintf("%d:%s", l, res.Report.Method)]++
	}
	la.att = make([]float32, N*H*D)
	joinHeads(la.att, res.Out.Data, batch, T, H, D)
	la.x2 = make([]float32, N*C)
	matmulForward(la.x2, la.att, w.wo, N, H*D, C)
	for i := range la.x2 {
		la.x2[i] += x[i]
	}
	// MLP sub-block.
	la.h2, la.rstd2 = make([]float32, N*C), make([]float32, N)
	rmsnormForward(la.h2, la.rstd2, la.x2, w.ln2, N, C)
	F := c.Hidden
	la.a, la.b, la.gl = make([]float32, N*F), make([]float32, N*F), make([]float32, N*F)
	matmulForward(la.a, la.h2, w.w1, N, C, F)
	matmulForward(la.b, la.h2, w.w3, N, C, F)
	swigluForward(la.gl, la.a, la.b)
	y := make([]float32, N*C)
	matmulForward(y, la.gl, w.w2, N, F, C)
	for i := range y {
		y[i] += la.x2[i]
	}
	return la, y, nil
}

// repeatHeads gives every query head of a group its own copy of the
// group's key/value head (size floats each): grouped-query attention as
// multi-head attention, for a backward pass without grouped-query support.
func repeatHeads(x []float32, batch, kv, group, size int) []float32 {
	out := make([]float32, batch*kv*group*size)
	for b := range batch * kv {
		for g := range group {
			copy(out[(b*group+g)*size:(b*group+g+1)*size], x[b*size:(b+1)*size])
		}
	}
	return out
}

// sumHeads is repeatHeads's backward pass: a group's gradients add up.
func sumHeads(x []float32, batch, kv, group, size int) []float32 {
	out := make([]float32, batch*kv*size)
	for b := range batch * kv {
		o := out[b*size : (b+1)*size]
		for g := range group {
			for i, v := range x[(b*group+g)*size : (b*group+g+1)*size] {
				o[i] += v
			}
		}
	}
	return out
}

// gqaBackwardSupported reports whether method's backward pass accepts
// fewer key/value heads than query heads, on a tiny problem.
func gqaBackwardSupported(method string) bool {
	q := fastattn.Tensor[float32]{Data: []float32{1, 0, 0, 1, 1, 1, 0, 1}, Shape: []int{1, 2, 2, 2}}
	k := fastattn.Tensor[float32]{Data: []float32{1, 0, 0, 1}, Shape: []int{1, 1, 2, 2}}
	_, _, err := fastattn.ForwardBackward(context.Background(), q, k, k, q, fastattn.Options{Causal: true, Method: method})
	return err == nil
}

// joinHeads copies attention's (batch, heads, ctx, d) output into token
// rows of heads*d (the inverse layout of splitHeads, without rotation).
func joinHeads(dst, src []float32, batch, ctx, heads, d int) {
	for b := range batch {
		for h := range heads {
			for t := range ctx {
				copy(dst[((b*ctx+t)*heads+h)*d:((b*ctx+t)*heads+h+1)*d], src[((b*heads+h)*ctx+t)*d:((b*heads+h)*ctx+t+1)*d])
			}
		}
	}
}

// attend runs the configured attention on a block's queries, keys and
// values.
func (m *Model) attend(ctx context.Context, la *layerActs) (*fastattn.Result[float32], error) {
	q := fastattn.Tensor[float32]{Data: la.qa, Shape: la.qShape}
	k := fastattn.Tensor[float32]{Data: la.kAtt, Shape: la.kShape}
	v := fastattn.Tensor[float32]{Data: la.vAtt, Shape: la.vShp}
	if slow, why := m.Attn.tooSlow(q, k, v, la.attOpts); slow {
		if !m.Attn.Fallback {
			return nil, fmt.Errorf("%s declined: %s", m.Attn.Method, why)
		}
		m.Declined++
		la.attOpts.Method = "exact"
		return fastattn.Attend(ctx, q, k, v, la.attOpts)
	}
	res, err := fastattn.Attend(ctx, q, k, v, la.attOpts)
	if err != nil && m.Attn.Fallback && errors.Is(err, fastattn.ErrUnsupported) {
		m.Declined++
		la.attOpts.Method = "exact"
		return fastattn.Attend(ctx, q, k, v, la.attOpts)
	}
	return res, err
}

// attendBackward returns dQ, dK, dV of a block's attention.
func (m *Model) attendBackward(ctx context.Context, la *layerActs, dOut []float32) (dq, dk, dv []float32, err error) {
	q := fastattn.Tensor[float32]{Data: la.qa, Shape: la.qShape}
	k := fastattn.Tensor[float32]{Data: la.kAtt, Shape: la.kShape}
	v := fastattn.Tensor[float32]{Data: la.vAtt, Shape: la.vShp}
	d := fastattn.Tensor[float32]{Data: dOut, Shape: la.qShape}
	opts := la.attOpts
	opts.Method = la.res.Report.Method
	gr, err := fastattn.Gradient(ctx, q, k, v, la.res, d, opts)
	if err != nil {
		return nil, nil, nil, err
	}
	return gr.DQ.Data, gr.DK.Data, gr.DV.Data, nil
}

// softmaxRows turns rows of logits into probabilities in place.
func softmaxRows(x []float32, v int) {
	for i := 0; i < len(x); i += v {
		l := x[i : i+v]
		mx := l[0]
		for _, e := range l {
			mx = max(mx, e)
		}
		var s float32
		for j := range l {
			l[j] = float32(math.Exp(float64(l[j] - mx)))
			s += l[j]
		}
		for j := range l {
			l[j] /= s
		}
	}
}

// Backward accumulates the gradient of the forward's mean loss into m.G
// (which the caller zeroes). It consumes a's probabilities.
func (m *Model) Backward(ctx context.Context, a *acts) error {
	c := m.Cfg
	C := c.Dim
	N := len(a.tokens)
	crossEntropyBackward(a.probs, a.targets, N, c.Vocab)
	dhf := make([]float32, N*C)
	matmulBackward(dhf, m.g.wte, a.probs, a.hf, m.w.wte, N, C, c.Vocab)
	dx := make([]float32, N*C)
	rmsnormBackward(dx, m.g.lnf, dhf, a.xf, m.w.lnf, a.rstdf, N, C)
	for l := c.Layers - 1; l >= 0; l-- {
		var err error
		if dx, err = m.blockBackward(ctx, l, &a.layers[l], dx); err != nil {
			return err
		}
	}
	// Embedding: scatter-add the input gradient into the tied table.
	for i, t := range a.tokens {
		row := m.g.wte[int(t)*C : (int(t)+1)*C]
		for j, v := range dx[i*C : (i+1)*C] {
			row[j] += v
		}
	}
	return nil
}

// blockBackward takes the gradient of a block's output and returns that
// of its input, accumulating the block's weight gradients.
func (m *Model) blockBackward(ctx context.Context, l int, la *layerActs, dy []float32) ([]float32, error) {
	c, w, g := m.Cfg, m.w.layers[l], m.g.layers[l]
	C, H, KV, D, F := c.Dim, c.Heads, c.KVHeads, c.HeadDim, c.Hidden
	N, B, T := la.rows, la.batch, la.seq
	// MLP: y = x2 + W2 (silu(W1 h2) * W3 h2), h2 = norm(x2).
	dgl := make([]float32, N*F)
	matmulBackward(dgl, g.w2, dy, la.gl, w.w2, N, F, C)
	da, db := make([]float32, N*F), make([]float32, N*F)
	swigluBackward(da, db, dgl, la.a, la.b)
	dh2 := make([]float32, N*C)
	matmulBackward(dh2, g.w1, da, la.h2, w.w1, N, C, F)
	matmulBackward(dh2, g.w3, db, la.h2, w.w3, N, C, F)
	dx2 := make([]float32, N*C)
	copy(dx2, dy)
	rmsnormBackward(dx2, g.ln2, dh2, la.x2, w.ln2, la.rstd2, N, C)
	// Attention: x2 = x + Wo att, att = attention(rope(Wq h1), rope(Wk h1), Wv h1).
	datt := make([]float32, N*H*D)
	matmulBackward(datt, g.wo, dx2, la.att, w.wo, N, H*D, C)
	dOut := make([]float32, N*H*D)
	splitHeads(dOut, datt, B, T, H, D, nil, 0, nil)
	start := time.Now()
	dqa, dka, dva, err := m.attendBackward(ctx, la, dOut)
	m.AttnSeconds += time.Since(start).Seconds()
	if err != nil {
		return nil, fmt.Errorf("layer %d attention backward: %w", l, err)
	}
	dq, dk, dv := make([]float32, N*H*D), make([]float32, N*KV*D), make([]float32, N*KV*D)
	mergeHeads(dq, dqa, B, T, H, D, m.rope, la.qn, la.qa)
	if len(dka) != len(la.ka) { // expanded: sum each group's gradients
		dka, dva = sumHeads(dka, B, KV, H/KV, T*D), sumHeads(dva, B, KV, H/KV, T*D)
	}
	mergeHeads(dk, dka, B, T, KV, D, m.rope, la.kn, la.ka)
	mergeHeads(dv, dva, B, T, KV, D, nil, nil, nil)
	dh1 := make([]float32, N*C)
	matmulBackward(dh1, g.wq, dq, la.h1, w.wq, N, C, H*D)
	matmulBackward(dh1, g.wk, dk, la.h1, w.wk, N, C, KV*D)
	matmulBackward(dh1, g.wv, dv, la.h1, w.wv, N, C, KV*D)
	dx := dx2 // the residual path
	rmsnormBackward(dx, g.ln1, dh1, la.x, w.ln1, la.rstd1, N, C)
	return dx, nil
}

// NumParams is the number of weights.
func (m *Model) NumParams() int { return len(m.W) }
