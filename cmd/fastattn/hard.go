package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fastattn/fastattn"
	"github.com/fastattn/fastattn/hardness"
	"github.com/fastattn/fastattn/internal/npyfile"
)

func init() {
	register(command{"hard", "hard instances: nearest neighbour and max inner product encoded as attention", hardCmd})
}

const hardHelp = `Usage: fastattn hard SUBCOMMAND [flags]   (fastattn hard SUBCOMMAND -h for its flags)

Problems believed to need quadratic time (under SETH), encoded as attention
(package hardness; Alman & Song, Lemma 4.7; Gupta et al.):

  ann    --n N --dim D --seed S --out DIR   Gap approximate Hamming nearest neighbour instance
  maxip  --n N --dim D --seed S --out DIR   maximum inner product instance
  solve  --dir DIR [--method M] [--check]   answer an instance of either kind through attention

ann and maxip write into DIR (created, or its files replaced, only once all
are complete):
  a.npy, b.npy       the vectors a_i and b_j, float64 0/1, one per row
  q.npy, k.npy, v.npy  the attention instance, float64 (2-D)
  instance.json      the problem's parameters (t and eps, or tau), the
                     reduction's (beta or lambda, scale, threshold,
                     attention_eps) and the planted pairs
solve reads the kind from instance.json, computes attention of q, k, v with
the instance's scale and error target, and prints JSON on stdout: answers
(one boolean per row of a: true when some b is within distance t, or has
inner product >= tau), the decision threshold and the method's report.
The same attention can be run by hand:
  fastattn run --q DIR/q.npy --k DIR/k.npy --v DIR/v.npy --scale SCALE --eps ATTENTION_EPS --out u.npy
and row i of u answers yes when u[i] > threshold (rows beyond n are padding).
`

func hardCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stdout, hardHelp)
		return usagef("missing subcommand: ann, maxip or solve")
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, hardHelp)
		return flag.ErrHelp
	case "ann":
		return hardANN(args[1:], stdout)
	case "maxip":
		return hardMaxIP(args[1:], stdout)
	case "solve":
		return hardSolve(args[1:], stdout)
	}
	return usagef("unknown subcommand %q: use ann, maxip or solve", args[0])
}

// instanceCommon is what instance.json holds for every kind.
type instanceCommon struct {
	Kind        string `json:"kind"`
	Description string `json:"description"`
	N           int    `json:"n"`
	M           int    `json:"m"`
	Dim         int    `json:"dim"`
	Seed        uint64 `json:"seed"`
	// The attention instance and its decision rule.
	Rows         int     `json:"rows"`
	Keys         int     `json:"keys"`
	AttentionDim int     `json:"attention_dim"`
	Queries      int     `json:"queries"`
	Scale        float64 `json:"scale"`
	EntryBound   float64 `json:"entry_bound"`
	Threshold    float64 `json:"threshold"`
	AttentionEps float64 `json:"attention_eps"`
	YesLower     float64 `json:"yes_lower"`
	NoUpper      float64 `json:"no_upper"`
}

type annFile struct {
	instanceCommon
	T           int                `json:"t"`
	Eps         float64            `json:"eps"`
	FarDistance int                `json:"far_distance"`
	Beta        float64            `json:"beta"`
	Gamma       float64            `json:"gamma"`
	Ratio       float64            `json:"ratio"`
	Planted     []hardness.ANNPair `json:"planted"`
	Decoys      []hardness.ANNPair `json:"decoys"`
	Counts      map[string]int     `json:"counts"`
}

type maxipFile struct {
	instanceCommon
	Tau     int                  `json:"tau"`
	Gap     float64              `json:"gap"`
	Density float64              `json:"density"`
	Lambda  float64              `json:"lambda"`
	Planted []hardness.MaxIPPair `json:"planted"`
	Decoys  []hardness.MaxIPPair `json:"decoys"`
	Counts  map[string]int       `json:"counts"`
}

func common(kind, desc string, n, m, dim int, seed uint64, a *hardness.Attention) instanceCommon {
	return instanceCommon{
		Kind: kind, Description: desc, N: n, M: m, Dim: dim, Seed: seed,
		Rows: a.Rows, Keys: a.Keys, AttentionDim: a.Dim, Queries: a.Queries,
		Scale: a.Scale, EntryBound: a.EntryBound(), Threshold: a.Threshold, AttentionEps: a.Eps,
		YesLower: a.YesLower, NoUpper: a.NoUpper,
	}
}

// maxInstanceSize caps n*dim so that a mistyped size fails fast instead of
// filling the disk: q.npy of the ann reduction takes 64 n dim bytes.
const maxInstanceSize = 1 << 24

// genFlags are the flags ann and maxip share.
type genFlags struct {
	n, m, dim       int
	seed            uint64
	out             string
	planted, decoys int
}

func (g *genFlags) register(fs *flag.FlagSet, defaultDim int) {
	fs.IntVar(&g.n, "n", 256, "number of query vectors a_i")
	fs.IntVar(&g.m, "m", 0, "number of vectors b_j (0: same as --n)")
	fs.IntVar(&g.dim, "dim", defaultDim, "dimension of the binary vectors")
	fs.Uint64Var(&g.seed, "seed", 1, "random seed")
	fs.StringVar(&g.out, "out", "", "output directory (required)")
	fs.IntVar(&g.planted, "planted", -1, "planted yes pairs (-1: max(1, n/32))")
	fs.IntVar(&g.decoys, "decoys", -1, "planted near-miss pairs just outside the yes side (-1: as many as --planted, if room)")
}

func (g *genFlags) check() error {
	if g.m == 0 {
		g.m = g.n
	}
	switch {
	case g.out == "":
		return usagef("--out is required")
	case g.n < 1 || g.m < 1:
		return usagef("--n and --m must be positive, got %d and %d", g.n, g.m)
	case g.dim < 1:
		return usagef("--dim must be positive, got %d", g.dim)
	case float64(max(g.n, g.m))*float64(g.dim) > maxInstanceSize:
		return usagef("--n %d x --dim %d is too large (the limit is n*dim <= %d)", max(g.n, g.m), g.dim, maxInstanceSize)
	case g.planted < -1 || g.decoys < -1:
		return usagef("--planted and --decoys must be >= 0 (or -1 for the default)")
	}
	if g.planted == -1 {
		g.planted = min(max(1, g.n/32), g.n, g.m)
	}
	return checkOutDir(g.out)
}

// defaultDecoys is --decoys when not given: as many as planted pairs, as
// far as the vectors and the instance allow.
func (g *genFlags) defaultDecoys(possible bool) {
	if g.decoys != -1 {
		return
	}
	g.decoys = 0
	if possible {
		g.decoys = max(0, min(g.planted, min(g.n, g.m)-g.planted))
	}
}

func hardANN(args []string, stdout io.Writer) error {
	fs := newFlagSet("hard ann", "hard ann --n N --dim D --seed S --out DIR [flags]", stdout)
	var g genFlags
	g.register(fs, 64)
	var t int
	var eps float64
	fs.IntVar(&t, "t", -1, "distance threshold (-1: the largest t for which random pairs are expected to stay beyond (1+eps) t)")
	fs.Float64Var(&eps, "eps", 1, "the gap: a no-instance has every b farther than (1+eps) t")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := g.check(); err != nil {
		return err
	}
	if !(eps > 0) || math.IsInf(eps, 0) {
		return usagef("--eps must be a positive number, got %g", eps)
	}
	if t == -1 {
		t = hardness.DefaultANNThreshold(g.n, g.m, g.dim, eps)
	}
	if t < 0 || t > g.dim {
		return usagef("--t must be in [0, %d] (the dimension), got %d", g.dim, t)
	}
	g.defaultDecoys(int(math.Floor((1+eps)*float64(t)))+1 <= g.dim)
	inst, err := hardness.GenerateANN(rand.New(rand.NewPCG(g.seed, 0x616e6e)),
		hardness.ANNSpec{N: g.n, M: g.m, Dim: g.dim, T: t, Eps: eps, Planted: g.planted, Decoys: g.decoys})
	if err != nil {
		return hardInputError(err)
	}
	p := inst.Problem
	red, err := hardness.ReduceANN(p)
	if err != nil {
		return hardInputError(err)
	}
	yes, no, gap := 0, 0, 0
	for _, h := range p.Nearest() {
		switch {
		case h <= p.T:
			yes++
		case p.InGap(h):
			gap++
		default:
			no++
		}
	}
	meta := annFile{
		instanceCommon: common("ann", "Gap approximate Hamming nearest neighbour: is some b_j within Hamming distance t of a_i (yes), or all farther than (1+eps) t (no)? Attention per Alman & Song, Lemma 4.7.",
			g.n, g.m, g.dim, g.seed, &red.Attention),
		T: t, Eps: eps, FarDistance: red.Far, Beta: red.Beta, Gamma: red.Gamma, Ratio: red.Ratio,
		Planted: nonNil(inst.Planted), Decoys: nonNil(inst.Decoys),
		Counts: map[string]int{"yes": yes, "no": no, "gap": gap},
	}
	if err := writeInstance(g.out, p.A, p.B, &red.Attention, meta); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: Gap-ANN n=%d m=%d dim=%d t=%d eps=%g (%d yes, %d no, %d in the gap; %d planted); attention %dx%d keys, dim %d, beta=%.4g (B=%.4g), threshold %.4g, attention eps %.3g\n",
		g.out, g.n, g.m, g.dim, t, eps, yes, no, gap, len(inst.Planted), red.Rows, red.Keys, red.Dim, red.Beta, math.Sqrt(red.Beta), red.Threshold, red.Eps)
	return nil
}

func hardMaxIP(args []string, stdout io.Writer) error {
	fs := newFlagSet("hard maxip", "hard maxip --n N --dim D --seed S --out DIR [flags]", stdout)
	var g genFlags
	g.register(fs, 16)
	var tau int
	var density float64
	fs.IntVar(&tau, "tau", -1, "inner product threshold (-1: the smallest tau random pairs are expected not to reach)")
	fs.Float64Var(&density, "density", 0.5, "probability of a 1 in the random vectors")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := g.check(); err != nil {
		return err
	}
	if !(density > 0 && density <= 1) {
		return usagef("--density must be in (0, 1], got %g", density)
	}
	if tau == -1 {
		tau = hardness.DefaultMaxIPTau(g.n, g.m, g.dim, density)
	}
	if tau < 0 || tau > g.dim {
		return usagef("--tau must be in [0, %d] (the dimension), got %d", g.dim, tau)
	}
	g.defaultDecoys(tau >= 1)
	inst, err := hardness.GenerateMaxIP(rand.New(rand.NewPCG(g.seed, 0x6d6970)),
		hardness.MaxIPSpec{N: g.n, M: g.m, Dim: g.dim, Tau: tau, Density: density, Planted: g.planted, Decoys: g.decoys})
	if err != nil {
		return hardInputError(err)
	}
	p := inst.Problem
	red, err := hardness.ReduceMaxIP(p)
	if err != nil {
		return hardInputError(err)
	}
	yes := 0
	for _, a := range p.BruteForce() {
		if a {
			yes++
		}
	}
	meta := maxipFile{
		instanceCommon: common("maxip", "Maximum inner product: does some b_j have <a_i, b_j> >= tau (yes), or do all have <a_i, b_j> <= tau - gap (no)? Attention per Gupta et al. (docs/ALGORITHMS.md section 6).",
			g.n, g.m, g.dim, g.seed, &red.Attention),
		Tau: tau, Gap: p.Gap, Density: density, Lambda: red.Lambda,
		Planted: nonNil(inst.Planted), Decoys: nonNil(inst.Decoys),
		Counts: map[string]int{"yes": yes, "no": p.A.N - yes, "gap": 0},
	}
	if err := writeInstance(g.out, p.A, p.B, &red.Attention, meta); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: MaxIP n=%d m=%d dim=%d tau=%d (%d yes, %d no; %d planted); attention %dx%d keys, dim %d, lambda=%.4g (entries up to %.4g), threshold %.4g, attention eps %.3g\n",
		g.out, g.n, g.m, g.dim, tau, yes, p.A.N-yes, len(inst.Planted), red.Rows, red.Keys, red.Dim, red.Lambda, red.EntryBound(), red.Threshold, red.Eps)
	return nil
}

// hardInputError marks an error of package hardness as the caller's, without
// repeating the package name after the command's.
func hardInputError(err error) error {
	return usagef("%s", strings.ReplaceAll(err.Error(), "hardness: ", ""))
}

func nonNil[T any](x []T) []T {
	if x == nil {
		return []T{}
	}
	return x
}

// checkOutDir fails early when dir cannot become the output directory.
func checkOutDir(dir string) error {
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return usagef("--out %s exists and is not a directory", dir)
	}
	parent := filepath.Dir(filepath.Clean(dir))
	if fi, err := os.Stat(parent); err != nil || !fi.IsDir() {
		return usagef("--out %s: parent directory %s does not exist", dir, parent)
	}
	return nil
}

// instanceFiles are the files an instance directory holds; instance.json
// comes last so that its presence means the rest are complete.
var instanceFiles = []string{"a.npy", "b.npy", "q.npy", "k.npy", "v.npy", "instance.json"}

// writeInstance writes the instance into a temporary directory beside dir
// and then moves it into place: renamed to dir if dir does not exist, or
// file by file (each rename atomic) into an existing dir. A failure leaves
// dir as it was.
func writeInstance(dir string, a, b hardness.Vectors, att *hardness.Attention, meta any) error {
	dir = filepath.Clean(dir)
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	p := func(name string) string { return filepath.Join(tmp, name) }
	for _, w := range []func() error{
		func() error { return npyfile.Write(p("a.npy"), []int{a.N, a.Dim}, a.Data) },
		func() error { return npyfile.Write(p("b.npy"), []int{b.N, b.Dim}, b.Data) },
		func() error { return npyfile.Write(p("q.npy"), []int{att.Rows, att.Dim}, att.Q) },
		func() error { return npyfile.Write(p("k.npy"), []int{att.Keys, att.Dim}, att.K) },
		func() error { return npyfile.Write(p("v.npy"), []int{att.Keys, 1}, att.V) },
		func() error { return writeJSON(p("instance.json"), meta) },
	} {
		if err := w(); err != nil {
			return err
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		if err := os.Rename(tmp, dir); err == nil {
			return nil
		}
	}
	for _, name := range instanceFiles {
		if err := os.Rename(filepath.Join(tmp, name), filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// instanceHeader is what solve reads from instance.json.
type instanceHeader struct {
	instanceCommon
	T   *int     `json:"t"`
	Eps *float64 `json:"eps"`
	Tau *float64 `json:"tau"`
	Gap *float64 `json:"gap"`
}

type solveOutput struct {
	Kind         string          `json:"kind"`
	Answers      []bool          `json:"answers"`
	Yes          int             `json:"yes"`
	Threshold    float64         `json:"threshold"`
	AttentionEps float64         `json:"attention_eps"`
	Certified    bool            `json:"certified"`
	Report       fastattn.Report `json:"report"`
	Check        *solveCheck     `json:"check,omitempty"`
}

// solveCheck compares the answers with brute force on a.npy and b.npy.
type solveCheck struct {
	BruteForce         []bool `json:"brute_force"`
	Agree              int    `json:"agree"`
	InGap              int    `json:"in_gap"`
	DisagreeOutsideGap int    `json:"disagree_outside_gap"`
}

func hardSolve(args []string, stdout io.Writer) error {
	fs := newFlagSet("hard solve", "hard solve --dir DIR [--method M] [--eps E] [--check]", stdout)
	var dir, method string
	var eps float64
	var check bool
	fs.StringVar(&dir, "dir", "", "instance directory written by 'hard ann' or 'hard maxip' (required)")
	fs.StringVar(&method, "method", fastattn.Auto, "attention method: "+strings.Join(fastattn.Methods(), ", ")+", or auto (the fastest predicted to meet the error target)")
	fs.Float64Var(&eps, "eps", 0, "attention error target (0: the instance's attention_eps, under which every answer outside the gap is guaranteed)")
	fs.BoolVar(&check, "check", false, "also answer by brute force from a.npy and b.npy and count disagreements")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if dir == "" {
		return usagef("--dir is required")
	}
	if eps < 0 || math.IsNaN(eps) || math.IsInf(eps, 0) {
		return usagef("--eps must be a positive number (or 0 for the instance's), got %g", eps)
	}
	att, hdr, err := readInstance(dir)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	sol, err := att.Solve(ctx, method, eps)
	if err != nil {
		if errors.Is(err, fastattn.ErrInvalidInput) {
			return usageError{err}
		}
		return err
	}
	out := solveOutput{Kind: hdr.Kind, Answers: sol.Answers, Threshold: att.Threshold, AttentionEps: att.Eps,
		Certified: sol.Certified, Report: sol.Report}
	for _, a := range sol.Answers {
		if a {
			out.Yes++
		}
	}
	if check {
		if out.Check, err = bruteCheck(dir, hdr, sol.Answers); err != nil {
			return err
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	_, err = stdout.Write(append(b, '\n'))
	return err
}

// readInstance loads instance.json and the attention tensors of dir and
// checks that they agree.
func readInstance(dir string) (*hardness.Attention, *instanceHeader, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "instance.json"))
	if err != nil {
		return nil, nil, usageError{fmt.Errorf("%s is not an instance directory: %w", dir, err)}
	}
	var h instanceHeader
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, nil, usagef("%s: %v", filepath.Join(dir, "instance.json"), err)
	}
	bad := func(format string, args ...any) error {
		return usagef("%s: %s", filepath.Join(dir, "instance.json"), fmt.Sprintf(format, args...))
	}
	switch h.Kind {
	case "ann":
		if h.T == nil || h.Eps == nil {
			return nil, nil, bad("an ann instance needs t and eps")
		}
	case "maxip":
		if h.Tau == nil || h.Gap == nil {
			return nil, nil, bad("a maxip instance needs tau and gap")
		}
	default:
		return nil, nil, bad("unknown kind %q (want ann or maxip)", h.Kind)
	}
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	switch {
	case !(h.Scale > 0) || !finite(h.Scale):
		return nil, nil, bad("scale must be positive, got %g", h.Scale)
	case !finite(h.Threshold) || !(h.AttentionEps > 0) || !finite(h.AttentionEps):
		return nil, nil, bad("threshold (%g) and attention_eps (%g) must be finite and attention_eps positive", h.Threshold, h.AttentionEps)
	case h.Queries < 1 || h.Queries > h.Rows:
		return nil, nil, bad("queries (%d) must be in [1, rows = %d]", h.Queries, h.Rows)
	}
	att := &hardness.Attention{Rows: h.Rows, Keys: h.Keys, Dim: h.AttentionDim, Queries: h.Queries,
		Scale: h.Scale, Threshold: h.Threshold, Eps: h.AttentionEps, YesLower: h.YesLower, NoUpper: h.NoUpper}
	for _, f := range []struct {
		name  string
		dst   *[]float64
		shape []int
	}{{"q.npy", &att.Q, []int{h.Rows, h.AttentionDim}}, {"k.npy", &att.K, []int{h.Keys, h.AttentionDim}}, {"v.npy", &att.V, []int{h.Keys, 1}}} {
		arr, err := npyfile.Read(filepath.Join(dir, f.name))
		if err != nil {
			return nil, nil, usageError{err}
		}
		if arr.F64 == nil {
			return nil, nil, usagef("%s is %s; the instance is float64", filepath.Join(dir, f.name), arr.DType())
		}
		if !slices.Equal(arr.Shape, f.shape) {
			return nil, nil, usagef("%s has shape %s but instance.json says %s", filepath.Join(dir, f.name), fmtShape(arr.Shape), fmtShape(f.shape))
		}
		*f.dst = arr.F64
	}
	return att, &h, nil
}

// bruteCheck answers the instance of dir by brute force and compares.
func bruteCheck(dir string, h *instanceHeader, answers []bool) (*solveCheck, error) {
	vecs := make([]hardness.Vectors, 2)
	for i, name := range []string{"a.npy", "b.npy"} {
		arr, err := npyfile.Read(filepath.Join(dir, name))
		if err != nil {
			return nil, usageError{err}
		}
		if arr.F64 == nil || len(arr.Shape) != 2 {
			return nil, usagef("%s must be a 2-D float64 array, got %s %s", filepath.Join(dir, name), arr.DType(), fmtShape(arr.Shape))
		}
		if vecs[i], err = hardness.NewVectors(arr.F64, arr.Shape[0], arr.Shape[1]); err != nil {
			return nil, usagef("%s: %s", filepath.Join(dir, name), strings.ReplaceAll(err.Error(), "hardness: ", ""))
		}
	}
	if vecs[0].N != len(answers) {
		return nil, usagef("a.npy has %d vectors but the instance has %d queries", vecs[0].N, len(answers))
	}
	c := &solveCheck{}
	var gap func(i int) bool
	switch h.Kind {
	case "ann":
		p := &hardness.ANN{A: vecs[0], B: vecs[1], T: *h.T, Eps: *h.Eps}
		if err := p.Validate(); err != nil {
			return nil, hardInputError(err)
		}
		near := p.Nearest()
		c.BruteForce = p.BruteForce()
		gap = func(i int) bool { return p.InGap(near[i]) }
	case "maxip":
		p := &hardness.MaxIP{A: vecs[0], B: vecs[1], Tau: *h.Tau, Gap: *h.Gap}
		if err := p.Validate(); err != nil {
			return nil, hardInputError(err)
		}
		best := p.MaxInner()
		c.BruteForce = p.BruteForce()
		gap = func(i int) bool { return p.InGap(best[i]) }
	}
	for i, a := range answers {
		switch {
		case gap(i):
			c.InGap++
		case a == c.BruteForce[i]:
			c.Agree++
		default:
			c.DisagreeOutsideGap++
		}
	}
	return c, nil
}
