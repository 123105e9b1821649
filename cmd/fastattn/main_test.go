package main

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/npyfile"
	"github.com/fastattn/fastattn/internal/reference"
)

// TestMain lets the test binary act as the fastattn binary, so the tests
// below run the real command in a child process.
func TestMain(m *testing.M) {
	if os.Getenv("FASTATTN_BE_CLI") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// cli runs the command in a child process and returns its exit status and
// output.
func cli(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "FASTATTN_BE_CLI=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), out.String(), errb.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, out.String(), errb.String()
}

func writeRandom(t *testing.T, path string, r *rand.Rand, f32 bool, shape ...int) []float64 {
	t.Helper()
	n := 1
	for _, s := range shape {
		n *= s
	}
	x := make([]float64, n)
	for i := range x {
		x[i] = r.NormFloat64()
	}
	var err error
	if f32 {
		y := make([]float32, n)
		for i, v := range x {
			y[i] = float32(v)
			x[i] = float64(y[i])
		}
		err = npyfile.Write(path, shape, y)
	} else {
		err = npyfile.Write(path, shape, x)
	}
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func TestRunMatchesReference(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		lead   []int
		n, m   int
		d, e   int
		f32    bool
		causal bool
		scale  string
	}{
		{nil, 7, 9, 4, 3, false, false, ""},
		{[]int{3}, 70, 33, 8, 5, true, false, "1/d"},
		{[]int{2, 2}, 5, 300, 16, 16, true, true, "0.3"},
		{[]int{1, 3}, 65, 65, 6, 2, false, true, "1/sqrt(d)"},
	}
	for ci, c := range cases {
		shape := func(rows, cols int) []int { return append(slices.Clone(c.lead), rows, cols) }
		q := writeRandom(t, filepath.Join(dir, "q.npy"), r, c.f32, shape(c.n, c.d)...)
		k := writeRandom(t, filepath.Join(dir, "k.npy"), r, c.f32, shape(c.m, c.d)...)
		v := writeRandom(t, filepath.Join(dir, "v.npy"), r, c.f32, shape(c.m, c.e)...)
		args := []string{"run", "--q", filepath.Join(dir, "q.npy"), "--k", filepath.Join(dir, "k.npy"), "--v", filepath.Join(dir, "v.npy"),
			"--out", filepath.Join(dir, "o.npy"), "--lse", filepath.Join(dir, "lse.npy"), "--report", filepath.Join(dir, "r.json"), "--method", "exact"}
		if c.causal {
			args = append(args, "--causal")
		}
		if c.scale != "" {
			args = append(args, "--scale", c.scale)
		}
		code, _, stderr := cli(t, args...)
		if code != 0 {
			t.Fatalf("case %d: exit %d: %s", ci, code, stderr)
		}
		out, err := npyfile.Read(filepath.Join(dir, "o.npy"))
		if err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(filepath.Join(dir, "o.npy")); err != nil || st.Mode().Perm() != 0o644 {
			t.Fatalf("output mode %v, want 0644 as numpy.save gives", st.Mode())
		}
		if want := shape(c.n, c.e); !slices.Equal(out.Shape, want) {
			t.Fatalf("case %d: output shape %v, want %v", ci, out.Shape, want)
		}
		if (out.F32 != nil) != c.f32 {
			t.Fatalf("case %d: output dtype %s", ci, out.DType())
		}
		scale := map[string]float64{"": 1 / math.Sqrt(float64(c.d)), "1/d": 1 / float64(c.d), "0.3": 0.3, "1/sqrt(d)": 1 / math.Sqrt(float64(c.d))}[c.scale]
		heads := len(q) / (c.n * c.d)
		want, _ := reference.Attention(&attn.Problem[float64]{Heads: heads, N: c.n, M: c.m, D: c.d, E: c.e, Q: q, K: k, V: v, Scale: scale, Causal: c.causal})
		tol := 1e-12
		if c.f32 {
			tol = 3e-6
		}
		for i, w := range want {
			got := float64(0)
			if c.f32 {
				got = float64(out.F32[i])
			} else {
				got = out.F64[i]
			}
			if math.Abs(got-w) > tol {
				t.Fatalf("case %d: entry %d = %g, reference %g", ci, i, got, w)
			}
		}
		var rep map[string]any
		b, _ := os.ReadFile(filepath.Join(dir, "r.json"))
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{"method", "seconds", "error_bound"} {
			if _, ok := rep[key]; !ok {
				t.Fatalf("report lacks %q: %s", key, b)
			}
		}
		if lse, err := npyfile.Read(filepath.Join(dir, "lse.npy")); err != nil || !slices.Equal(lse.Shape, append(slices.Clone(c.lead), c.n)) {
			t.Fatalf("case %d: LSE file %v, %v", ci, lse.Shape, err)
		}
	}
}

func TestRunRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(3, 4))
	p := func(name string) string { return filepath.Join(dir, name) }
	writeRandom(t, p("q.npy"), r, true, 2, 4, 8)
	writeRandom(t, p("k.npy"), r, true, 2, 6, 8)
	writeRandom(t, p("v.npy"), r, true, 2, 6, 3)
	writeRandom(t, p("k64.npy"), r, false, 2, 6, 8)
	writeRandom(t, p("kd.npy"), r, true, 2, 6, 7)
	writeRandom(t, p("vrows.npy"), r, true, 2, 5, 3)
	writeRandom(t, p("flat.npy"), r, true, 8)
	writeRandom(t, p("rank5.npy"), r, true, 1, 1, 2, 4, 8)
	writeRandom(t, p("lead.npy"), r, true, 3, 6, 8)
	nan := []float32{1, 2, float32(math.NaN()), 4}
	npyfile.Write(p("nan.npy"), []int{2, 2}, nan)
	kInf := make([]float32, 2*6*8)
	kInf[17] = float32(math.Inf(1))
	npyfile.Write(p("kinf.npy"), []int{2, 6, 8}, kInf)
	good, _ := os.ReadFile(p("k.npy"))
	os.WriteFile(p("trunc.npy"), good[:len(good)-7], 0o644)
	os.WriteFile(p("text.npy"), []byte("q,k,v\n1,2,3\n"), 0o644)
	ints, _ := os.ReadFile("../../internal/npyfile/testdata/i64.npy")
	os.WriteFile(p("int.npy"), ints, 0o644)

	base := map[string]string{"--q": p("q.npy"), "--k": p("k.npy"), "--v": p("v.npy"), "--out": p("out.npy")}
	cases := map[string][]string{
		"NaN in Q":        {"--q", p("nan.npy")},
		"Inf in K":        {"--k", p("kinf.npy")},
		"dtype mix":       {"--k", p("k64.npy")},
		"head dim":        {"--k", p("kd.npy")},
		"value rows":      {"--v", p("vrows.npy")},
		"rank 1":          {"--q", p("flat.npy")},
		"rank 5":          {"--q", p("rank5.npy")},
		"leading shape":   {"--k", p("lead.npy")},
		"truncated":       {"--k", p("trunc.npy")},
		"not npy":         {"--v", p("text.npy")},
		"int dtype":       {"--q", p("int.npy")},
		"missing file":    {"--q", p("nope.npy")},
		"bad scale":       {"--scale", "-2"},
		"bad scale text":  {"--scale", "1/e"},
		"bad eps":         {"--eps", "0"},
		"bad method":      {"--method", "magic"},
		"bad key lengths": {"--key-lengths", "1,x"},
		"key length big":  {"--key-lengths", "7"},
		"missing --q":     {"--q", ""},
		"out dir missing": {"--out", p("no/such/dir/out.npy")},
		"stray argument":  {"extra"},
		"lse dir missing": {"--lse", p("no/such/dir/lse.npy")},
		"report dir gone": {"--report", p("no/such/dir/r.json")},
		"out is lse":      {"--lse", p("out.npy")},
		"unknown flag":    {"--temperature", "2"},
	}
	for name, override := range cases {
		argv := withOverrides("run", base, override)
		code, stdout, stderr := cli(t, argv...)
		if code == 0 {
			t.Errorf("%s: exit 0, stdout %q", name, stdout)
		}
		// Bad input or flags exit 2; only failures writing outputs exit 1.
		if writeFailure := strings.Contains(name, "missing") || strings.Contains(name, "gone"); code != 2 && !writeFailure {
			t.Errorf("%s: exit %d, want 2 for bad input: %s", name, code, stderr)
		}
		if lines := strings.Count(strings.TrimSpace(stderr), "\n") + 1; stderr == "" || lines != 1 {
			t.Errorf("%s: want one line on stderr, got %q", name, stderr)
		}
		if _, err := os.Stat(p("out.npy")); err == nil {
			t.Fatalf("%s: output file written despite the error", name)
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".tmp") {
				t.Fatalf("%s: temporary file %s left behind", name, e.Name())
			}
		}
	}
}

func TestDemoAndBench(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the demo")
	}
	code, out, stderr := cli(t, "demo", "--quick")
	if code != 0 || !strings.Contains(out, "exact") || !strings.Contains(out, "max error") {
		t.Fatalf("demo: exit %d\n%s\n%s", code, out, stderr)
	}
	// Rows where auto chose say so, next to the rows of the named methods.
	if !strings.Contains(out, "auto -> anytemp") || !strings.Contains(out, "auto -> exact") {
		t.Errorf("demo: no auto -> METHOD rows:\n%s", out)
	}
	code, out, stderr = cli(t, "bench", "--methods", "poly", "--n", "64,100", "--d", "4", "--dtype", "float32", "--entries", "uniform:1", "--scale", "1/d", "--reps", "1", "--exact-rows", "80")
	if code != 0 || !strings.Contains(out, "poly (s)") || !strings.Contains(out, "slope") || !strings.Contains(out, "*") {
		t.Fatalf("bench: exit %d\n%s\n%s", code, out, stderr)
	}
}

func TestUsage(t *testing.T) {
	if code, out, _ := cli(t, "help"); code != 0 || !strings.Contains(out, "run") {
		t.Fatalf("help: %d %q", code, out)
	}
	if code, _, stderr := cli(t, "frobnicate"); code != 2 || !strings.Contains(stderr, "unknown command") {
		t.Fatalf("unknown command: %d %q", code, stderr)
	}
	if code, out, _ := cli(t, "run", "-h"); code != 0 || !strings.Contains(out, "--causal") && !strings.Contains(out, "-causal") {
		t.Fatalf("run -h: %d %q", code, out)
	}
}

// withOverrides builds a command line: base flags, with "--flag value" pairs
// in override replacing them (an empty value drops the flag) and any other
// override words appended.
func withOverrides(cmd string, base map[string]string, override []string) []string {
	args := map[string]string{}
	for k, v := range base {
		args[k] = v
	}
	var extra []string
	for i := 0; i < len(override); i++ {
		if strings.HasPrefix(override[i], "--") && i+1 < len(override) {
			args[override[i]] = override[i+1]
			i++
		} else {
			extra = append(extra, override[i])
		}
	}
	argv := []string{cmd}
	for k, v := range args {
		if v != "" {
			argv = append(argv, k, v)
		}
	}
	return append(argv, extra...)
}
