package anytemp

import (
	"context"
	"fmt"
	"math"
	"runtime"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/vscale"
)

// MaxPlanDim is the largest effective dimension for which Estimate
// measures the treecode's work on a pilot: above it a kd-tree prunes almost
// nothing and the expansions have too many terms, so Estimate prices every
// key as summed directly (the method does not pay, and auto passes it over).
const MaxPlanDim = 6

// Pilot sizes: Estimate runs the method on pilotRows rows against
// pilotKeys keys of one head, with the window and expansion rule of the
// full problem, and extrapolates the counts.
const (
	pilotRows = 192
	pilotKeys = 4096
)

// Estimate32 predicts the cost of Forward32.
func (m Method) Estimate32(p *attn.Problem[float32]) (attn.Estimate, error) {
	return estimate(m, p, true)
}

// Estimate64 predicts the cost of Forward64.
func (m Method) Estimate64(p *attn.Problem[float64]) (attn.Estimate, error) {
	return estimate(m, p, false)
}

// pilotCounts are per-row averages from the pilot, already extrapolated
// to the full number of keys.
type pilotCounts struct {
	r, g                              int
	side                              string
	visited, brute, expTerms, cells   float64
	momentFlops                       float64 // for the whole run
	momentFrac, momPerKey, momPerNode float64
	window                            float64
}

func estimate[T attn.Float](m Method, p *attn.Problem[T], f32 bool) (attn.Estimate, error) {
	if err := p.Validate(); err != nil {
		return attn.Estimate{}, err
	}
	if err := checkEps(p.Eps, f32); err != nil {
		return attn.Estimate{}, err
	}
	// The head with the most keys stands for all.
	h, l := 0, 0
	for hh := range p.Heads {
		if p.KeyLen(hh) > l {
			h, l = hh, p.KeyLen(hh)
		}
	}
	if l == 0 {
		return attn.Estimate{Seconds: 1e-6, Reason: "no valid keys"}, nil
	}
	lp := l // keys per row the pilot stands for
	if leftBounded(p) {
		lp = min(l, windowKeys(p, h))
	}
	pc, err := pilot(p, h, lp, f32, vscale.SubnormalOutput(p))
	if err != nil {
		return attn.Estimate{}, err
	}
	workers := float64(m.workers())
	if m.Workers == 0 {
		workers = float64(runtime.GOMAXPROCS(0))
	}
	heads := float64(p.Heads)
	n := float64(p.N)
	lf := float64(l)
	levels := math.Max(1, math.Log2(lf/leafSize)+1)
	rt := measuredRates()
	perRow := rt.row + rt.visit*pc.visited + rt.brute*pc.brute + rt.term*pc.expTerms + rt.cell*pc.cells
	rows := heads * n * perRow
	build := heads * (rt.build*lf*levels + rt.build*n*math.Log2(n+1)/4)
	moments := heads * rt.momentFlop * pc.momentFlops
	if leftBounded(p) {
		rows, build, moments = windowCost(p, rows, moments, lf, float64(lp), workers)
	} else if ranged(p) {
		// Each row walks about half of log2(L/64) blocks (most pruned at
		// the root) and sums its tail of up to 64 keys directly; each
		// chunk of rows builds its small blocks, whose moments are
		// computed again. The factors are measured (d = 2, e = 8,
		// n = 2^15, entries N(0, 1): 2.1x the terms and 3x the moment
		// flops of the same rows without the mask).
		blocks := math.Max(1, 0.5*math.Log2(lf/minTreeBlock))
		rows = rows*(1+0.25*blocks) + heads*n*rt.brute*minTreeBlock
		chunks := math.Max(1, math.Min(n/minTreeBlock, math.Ceil(4*workers/heads)))
		build *= 1 + 0.15*chunks // large blocks are shared between chunks
		moments *= 1 + 0.45*blocks
	}
	secs := (rows+moments)/workers + build/math.Min(workers, 1.5)
	if p.D >= 2 && !m.NoReduce {
		secs += heads * rt.reduce * (n + lf) * float64(p.D*p.D) / workers
	}
	nodes := 2 * lf / leafSize * 2
	bytes := heads * (lf*(float64(pc.r)*8+float64(p.E)*sizeOf[T]()+4) + nodes*float64(2*pc.r+3)*8)
	bytes += heads * pc.momentFlops / 4 // moments kept
	return attn.Estimate{
		Seconds: secs,
		Bytes:   bytes,
		Reason: fmt.Sprintf("effective dim %d (%s), window %.1f, per row %.0f nodes + %.0f keys + %.0f expansion terms, degree <= %d",
			pc.r, pc.side, pc.window, pc.visited, pc.brute, pc.expTerms, pc.g),
	}, nil
}

func sizeOf[T attn.Float]() float64 {
	var x T
	if _, ok := any(x).(float32); ok {
		return 4
	}
	return 8
}

// pilot runs the method on a sample of head h: pilotRows rows evenly
// spaced against keys evenly spaced among the l valid ones, with the
// window width of l keys. With l <= pilotKeys the sample holds every key;
// otherwise it runs at pilotKeys/4 and pilotKeys keys and extrapolates
// each per-row count to l keys along its own power law (constant for
// near one-hot rows, growing with the density of keys in the window at
// middle temperatures).
func pilot[T attn.Float](p *attn.Problem[T], h, l int, f32 bool, outExtra float64) (*pilotCounts, error) {
	k2 := min(l, pilotKeys)
	c2, err := pilotRun(p, h, l, k2, f32, outExtra)
	if err != nil || k2 == l {
		return c2, err
	}
	k1 := k2 / 4
	c1, err := pilotRun(p, h, l, k1, f32, outExtra)
	if err != nil {
		return nil, err
	}
	ext := func(a, b float64) float64 {
		if !(a > 0) || !(b > 0) {
			return b
		}
		alpha := math.Log(b/a) / math.Log(float64(k2)/float64(k1))
		alpha = math.Max(0, math.Min(1.2, alpha))
		return b * math.Pow(float64(l)/float64(k2), alpha)
	}
	c2.visited = ext(c1.visited, c2.visited)
	c2.brute = ext(c1.brute, c2.brute)
	c2.expTerms = ext(c1.expTerms, c2.expTerms)
	c2.cells = ext(c1.cells, c2.cells)
	// Moments: the fraction of the sample tree's moment work its rows
	// needed, grown with the number of rows, applied to the full tree.
	c2.momentFlops = math.Min(1, c2.momentFrac*math.Sqrt(float64(p.N)/float64(min(p.N, pilotRows)))) * c2.fullMoments(l)
	return c2, nil
}

func (pc *pilotCounts) fullMoments(keys int) float64 {
	return float64(keys)*pc.momPerKey + float64(keys)/leafSize*pc.momPerNode
}

func pilotRun[T attn.Float](p *attn.Problem[T], h, l, nk int, f32 bool, outExtra float64) (*pilotCounts, error) {
	nr := min(p.N, pilotRows)
	d, e := p.D, p.E
	ps := &attn.Problem[T]{Heads: 1, N: nr, M: nk, D: d, E: e, Scale: p.Scale, Eps: p.Eps,
		Q: make([]T, nr*d), K: make([]T, nk*d), V: make([]T, nk*e)}
	for i := range nr {
		src := h*p.N + i*p.N/nr
		copy(ps.Q[i*d:(i+1)*d], p.Q[src*d:(src+1)*d])
	}
	for j := range nk {
		src := p.KVHead(h)*p.M + j*l/nk
		copy(ps.K[j*d:(j+1)*d], p.K[src*d:(src+1)*d])
		copy(ps.V[j*e:(j+1)*e], p.V[src*e:(src+1)*e])
	}
	runs, b, err := plan(context.Background(), Method{Workers: 1}, ps, f32, outExtra)
	if err != nil {
		return nil, err
	}
	hr := runs[0]
	r := hr.hd.r
	if r > MaxPlanDim {
		// The forward runs (an explicit request is honoured) but a kd-tree
		// prunes almost nothing here: price every key as summed directly,
		// a lower bound, so that auto passes it over.
		return &pilotCounts{r: r, side: hr.hd.side, window: b.window(nk), brute: float64(nk)}, nil
	}
	b.keyScale = float64(l) / float64(nk)
	pr := hr.pr
	hr.tree = buildTree(hr.hd, hr.v, e, 0, nk, pr.g, pr.mo, false)
	hr.order = rowOrder(hr.hd.q, nr, r)
	out := attn.NewOutput(ps)
	rc := newRowCtx(pr)
	plainRows(rc, ps, hr, out, 0, nr)
	c := rc.c
	rowsF := float64(nr)
	nt := float64(pr.mo.terms(pr.g))
	pc := &pilotCounts{
		r: r, g: pr.g, side: hr.hd.side, window: b.window(nk),
		visited:    float64(c.visited) / rowsF,
		brute:      float64(c.brute) / rowsF,
		expTerms:   float64(c.expTerms) / rowsF,
		cells:      float64(c.cells) / rowsF,
		momPerKey:  nt * float64(2*e+3),
		momPerNode: 4 * float64(r*(e+1)) * nt * float64(pr.g+3) / 3,
	}
	pc.momentFrac = float64(hr.tree.momFlops.Load()) / pc.fullMoments(nk)
	pc.momentFlops = math.Min(1, pc.momentFrac*math.Sqrt(float64(p.N)/rowsF)) * pc.fullMoments(l)
	return pc, nil
}
