package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"

	"github.com/fastattn/fastattn"
	"github.com/fastattn/fastattn/hardness"
	"github.com/fastattn/fastattn/internal/outfile"
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
		return usagef("missing subcommand: ann, maxip or solve (fastattn hard -h describes them)")
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
	meta := hardness.NewANNFile(inst, red, g.seed)
	if err := hardness.WriteInstance(g.out, p.A, p.B, &red.Attention, meta); err != nil {
		return err
	}
	yes, no, gap := meta.Counts["yes"], meta.Counts["no"], meta.Counts["gap"]
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
	meta := hardness.NewMaxIPFile(inst, red, g.seed, density)
	if err := hardness.WriteInstance(g.out, p.A, p.B, &red.Attention, meta); err != nil {
		return err
	}
	yes := meta.Counts["yes"]
	fmt.Fprintf(stdout, "wrote %s: MaxIP n=%d m=%d dim=%d tau=%d (%d yes, %d no; %d planted); attention %dx%d keys, dim %d, lambda=%.4g (entries up to %.4g), threshold %.4g, attention eps %.3g\n",
		g.out, g.n, g.m, g.dim, tau, yes, p.A.N-yes, len(inst.Planted), red.Rows, red.Keys, red.Dim, red.Lambda, red.EntryBound(), red.Threshold, red.Eps)
	return nil
}

// hardInputError marks an error of package hardness as the caller's, without
// repeating the package name after the command's.
func hardInputError(err error) error {
	return usagef("%s", strings.ReplaceAll(err.Error(), "hardness: ", ""))
}

// checkOutDir fails early, before any computation, when dir cannot become
// the output directory.
func checkOutDir(dir string) error {
	if err := outfile.CheckDir(dir); err != nil {
		return usagef("--out %v", err)
	}
	return nil
}

type solveOutput struct {
	Kind         string          `json:"kind"`
	Answers      []bool          `json:"answers"`
	Yes          int             `json:"yes"`
	Threshold    float64         `json:"threshold"`
	AttentionEps float64         `json:"attention_eps"`
	Certified    bool            `json:"certified"`
	Report       fastattn.Report `json:"report"`
	Check        *hardness.Check `json:"check,omitempty"`
}

func hardSolve(args []string, stdout io.Writer) error {
	fs := newFlagSet("hard solve", "hard solve --dir DIR [--method M] [--eps E] [--check]", stdout)
	var dir, method string
	var eps float64
	var check bool
	fs.StringVar(&dir, "dir", "", "instance directory written by 'hard ann' or 'hard maxip' (required)")
	fs.StringVar(&method, "method", fastattn.Auto, "attention method: "+strings.Join(fastattn.Methods(), ", ")+", or auto (the fastest predicted to meet the error target)")
	fs.Float64Var(&eps, "eps", 0, "attention error target (0: the instance's attention_eps, under which every answer outside the gap is guaranteed; when no method can certify that, exact attention runs at the default eps and the output says certified: false)")
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
	inst, err := hardness.ReadInstance(dir)
	if err != nil {
		return hardInputError(err)
	}
	att := inst.Attention
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	sol, err := att.Solve(ctx, method, eps)
	if err != nil {
		if errors.Is(err, fastattn.ErrInvalidInput) {
			return usageError{err}
		}
		return err
	}
	out := solveOutput{Kind: inst.Info.Kind, Answers: sol.Answers, Threshold: att.Threshold, AttentionEps: att.Eps,
		Certified: sol.Certified, Report: sol.Report}
	for _, a := range sol.Answers {
		if a {
			out.Yes++
		}
	}
	if check {
		if out.Check, err = inst.Check(sol.Answers); err != nil {
			return hardInputError(err)
		}
	}
	return printJSON(stdout, out)
}
