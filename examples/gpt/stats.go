package main

// What real attention looks like to the two papers: for every layer and
// head, the quantities their premises are stated in.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gonum.org/v1/gonum/mat"

	"github.com/fastattn/fastattn/anytemp"
	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/poly"
	"github.com/fastattn/fastattn/polyexp"
)

// HeadStats describes one head's attention on one sequence.
type HeadStats struct {
	Layer, Head, N, D int
	Scale             float64
	// LogitMin and LogitMax span scale*q_i.k_j over the causal pairs.
	LogitMin, LogitMax float64
	// Beta = scale * max_i |q_i| * max_j |k_j - mean k|: poly's range
	// parameter (every centred logit lies in [-Beta, Beta]).
	Beta float64
	// MaxEntry is Alman & Song's B: the largest |entry| of Q and K once the
	// scale is folded in as their 1/d (Q K^T / d with Q, K scaled by
	// sqrt(scale*d)); their fast regime is B = o(sqrt(ln n)).
	MaxEntry, SqrtLnN float64
	// RankQ and RankK count singular values above 1e-3 of the largest.
	RankQ, RankK int
	// PolyDegree and PolyRank are what the polynomial method needs for
	// Beta at the error target (degree of e^x on [-Beta, Beta] to poly's
	// share of eps, and C(d+g, g) features); -1 when no degree certifies.
	PolyDegree, PolyRank int
	// AnytempWindow (logit units) and AnytempDim (effective dimension after
	// its low-rank reduction) come from an anytemp run on the head, when
	// its planner accepts the input; AnytempStatus says what happened.
	AnytempWindow float64
	AnytempDim    int
	AnytempStatus string
	// WindowShare is the mean over rows of the share of a row's keys whose
	// logit is within ln(L/eps) of the row's largest: the keys anytemp's
	// relevance window must treat (1 = every key matters).
	WindowShare float64
}

var statsHeader = []string{"step", "layer", "head", "n", "d", "scale", "logit_min", "logit_max", "beta",
	"max_entry_B", "sqrt_ln_n", "rank_q", "rank_k", "poly_degree", "poly_rank", "anytemp_window", "anytemp_dim", "anytemp_status", "window_share"}

func (c *csvFile) writeStats(step int, rows []HeadStats) error {
	for _, r := range rows {
		if err := c.write(step, r.Layer, r.Head, r.N, r.D, r.Scale, r.LogitMin, r.LogitMax, r.Beta,
			r.MaxEntry, r.SqrtLnN, r.RankQ, r.RankK, r.PolyDegree, r.PolyRank, r.AnytempWindow, r.AnytempDim, r.AnytempStatus, r.WindowShare); err != nil {
			return err
		}
	}
	return nil
}

// AttentionStats runs the model on one sequence (Cfg.Ctx tokens) and
// measures every layer's and head's queries and keys as attention sees
// them (after rotary embedding and QK-normalization).
func AttentionStats(ctx context.Context, m *Model, tokens []byte, eps float64) ([]HeadStats, error) {
	saved := m.Attn
	m.Attn = Attention{Method: "exact"}
	a, _, err := m.Forward(ctx, tokens, nil, 1)
	m.Attn = saved
	if err != nil {
		return nil, err
	}
	c := m.Cfg
	T, D := c.Ctx, c.HeadDim
	group := c.Heads / c.KVHeads
	var out []HeadStats
	for l, la := range a.layers {
		for h := range c.Heads {
			q := la.qa[h*T*D : (h+1)*T*D]
			kh := h / group
			k := la.ka[kh*T*D : (kh+1)*T*D]
			v := la.va[kh*T*D : (kh+1)*T*D]
			s := headStats(q, k, T, D, c.scale(), eps)
			s.Layer, s.Head = l, h
			s.AnytempWindow, s.AnytempDim, s.AnytempStatus = anytempProbe(ctx, q, k, v, T, D, c.scale(), eps)
			out = append(out, s)
		}
	}
	return out, nil
}

// headStats computes everything but anytemp's figures for one head.
func headStats(q, k []float32, n, d int, scale, eps float64) HeadStats {
	s := HeadStats{N: n, D: d, Scale: scale, LogitMin: math.Inf(1), LogitMax: math.Inf(-1), SqrtLnN: math.Sqrt(math.Log(float64(n)))}
	mean := make([]float64, d)
	var maxAbs float64
	for j := range n {
		for t := range d {
			mean[t] += float64(k[j*d+t]) / float64(n)
			maxAbs = max(maxAbs, math.Abs(float64(k[j*d+t])), math.Abs(float64(q[j*d+t])))
		}
	}
	var qMax, kRad float64
	row := make([]float64, n)
	for i := range n {
		var nq, nk float64
		for t := range d {
			nq += float64(q[i*d+t]) * float64(q[i*d+t])
			dk := float64(k[i*d+t]) - mean[t]
			nk += dk * dk
		}
		qMax, kRad = max(qMax, math.Sqrt(nq)), max(kRad, math.Sqrt(nk))
		for j := 0; j <= i; j++ {
			var dot float64
			for t := range d {
				dot += float64(q[i*d+t]) * float64(k[j*d+t])
			}
			dot *= scale
			row[j] = dot
			s.LogitMin, s.LogitMax = min(s.LogitMin, dot), max(s.LogitMax, dot)
		}
		top, w := math.Inf(-1), math.Log(float64(i+1)/eps)
		for _, x := range row[:i+1] {
			top = max(top, x)
		}
		in := 0
		for _, x := range row[:i+1] {
			if x >= top-w {
				in++
			}
		}
		s.WindowShare += float64(in) / float64(i+1) / float64(n)
	}
	s.Beta = scale * qMax * kRad
	s.MaxEntry = maxAbs * math.Sqrt(scale*float64(d))
	s.RankQ, s.RankK = numericalRank(q, n, d, 1e-3), numericalRank(k, n, d, 1e-3)
	s.PolyDegree, s.PolyRank = -1, -1
	if g, err := polyexp.DegreeFor(s.Beta, poly.PolyShare*eps); err == nil {
		s.PolyDegree, s.PolyRank = g, poly.Rank(d, g)
	}
	return s
}

// numericalRank counts the singular values of the n x d matrix x above
// tol times the largest.
func numericalRank(x []float32, n, d int, tol float64) int {
	a := mat.NewDense(n, d, nil)
	for i := range n {
		for j := range d {
			a.Set(i, j, float64(x[i*d+j]))
		}
	}
	var svd mat.SVD
	if !svd.Factorize(a, mat.SVDNone) {
		return -1
	}
	sv := svd.Values(nil)
	r := 0
	for _, v := range sv {
		if v > tol*sv[0] {
			r++
		}
	}
	return r
}

var effDim = regexp.MustCompile(`effective dimension (\d+)`)

// anytempProbe asks anytemp's planner about one head and, if it accepts,
// runs the method (with a time limit) to read its window and effective
// dimension from the report.
func anytempProbe(ctx context.Context, q, k, v []float32, n, d int, scale, eps float64) (float64, int, string) {
	p := &attn.Problem[float32]{Heads: 1, N: n, M: n, D: d, E: d, Q: q, K: k, V: v, Scale: scale, Causal: true, Eps: eps}
	if _, err := attn.EstimateCost(anytemp.Method{}, p); err != nil {
		msg := strings.TrimPrefix(err.Error(), attn.ErrUnsupported.Error()+": ")
		dim := -1
		if m := effDim.FindStringSubmatch(msg); m != nil {
			dim, _ = strconv.Atoi(m[1])
		}
		return math.NaN(), dim, "declined: " + msg
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := attn.Forward(ctx, anytemp.Method{}, p, attn.NewOutput(p))
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return math.NaN(), -1, "ran over 10 s"
		}
		return math.NaN(), -1, "failed: " + err.Error()
	}
	w, _ := st.Details["window_width"].(float64)
	r, _ := st.Details["effective_dim"].(int)
	return w, r, "ran"
}

// statsCmd measures a checkpoint's attention on validation sequences and
// plots the training run's statistics.
func statsCmd(args []string) error {
	fs := flag.NewFlagSet("stats", flag.ContinueOnError)
	dir := fs.String("out", "gpt-run", "training run directory (model.safetensors, stats.csv)")
	dataDir := fs.String("data", defaultDataDir(), "directory of .go files (for validation sequences)")
	seqs := fs.Int("seqs", 4, "validation sequences to measure")
	eps := fs.Float64("eps", 1e-3, "error target for poly's degree and anytemp")
	var seed int64
	fs.Int64Var(&seed, "seed", 1, "seed of the data split (as in training)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	m, ds, err := loadTrained(*dir, *dataDir, seed)
	if err != nil {
		return err
	}
	f, err := openCSV(filepath.Join(*dir, "final_stats.csv"), false, append([]string{"seq"}, statsHeader[1:]...))
	if err != nil {
		return err
	}
	defer f.close()
	T := m.Cfg.Ctx
	var logits []float64
	for s := range *seqs {
		off := (s * len(ds.Val) / *seqs) % (len(ds.Val) - T)
		tokens := ds.Val[off : off+T]
		rows, err := AttentionStats(context.Background(), m, tokens, *eps)
		if err != nil {
			return err
		}
		if err := f.writeStats(s, rows); err != nil {
			return err
		}
		if s == 0 {
			logits = allLogits(m, tokens)
			printStats(rows)
		}
	}
	if err := plotLogitHistogram(logits, filepath.Join(*dir, "logit_hist.png")); err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(*dir, "stats.csv")); err == nil {
		if err := plotBetaOverTraining(filepath.Join(*dir, "stats.csv"), filepath.Join(*dir, "beta.png")); err != nil {
			return err
		}
	}
	fmt.Printf("wrote %s, %s\n", filepath.Join(*dir, "final_stats.csv"), filepath.Join(*dir, "logit_hist.png"))
	return nil
}

func printStats(rows []HeadStats) {
	fmt.Printf("%5s %4s %8s %8s %7s %7s %7s %6s %6s %6s %9s %7s %8s %5s  %s\n", "layer", "head", "logit_lo", "logit_hi", "beta", "B", "sqrtln", "rankQ", "rankK", "deg", "polyrank", "inwin", "window", "dim", "anytemp")
	for _, r := range rows {
		fmt.Printf("%5d %4d %8.2f %8.2f %7.2f %7.2f %7.2f %6d %6d %6d %9d %7.3f %8.2f %5d  %s\n", r.Layer, r.Head, r.LogitMin, r.LogitMax, r.Beta,
			r.MaxEntry, r.SqrtLnN, r.RankQ, r.RankK, r.PolyDegree, r.PolyRank, r.WindowShare, r.AnytempWindow, r.AnytempDim, shorten(r.AnytempStatus, 60))
	}
}

func shorten(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// allLogits returns every causal logit of every layer and head on one
// sequence.
func allLogits(m *Model, tokens []byte) []float64 {
	a, _, err := m.Forward(context.Background(), tokens, nil, 1)
	if err != nil {
		return nil
	}
	c := m.Cfg
	T, D, group := c.Ctx, c.HeadDim, c.Heads/c.KVHeads
	var out []float64
	for _, la := range a.layers {
		for h := range c.Heads {
			q := la.qa[h*T*D:]
			k := la.ka[(h/group)*T*D:]
			for i := range T {
				for j := 0; j <= i; j++ {
					var dot float64
					for t := range D {
						dot += float64(q[i*D+t]) * float64(k[j*D+t])
					}
					out = append(out, dot*c.scale())
				}
			}
		}
	}
	return out
}
