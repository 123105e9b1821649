package main

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fastattn/fastattn"
	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/npyfile"
	"github.com/fastattn/fastattn/internal/reference"
)

func TestGradMatchesReference(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(21, 2))
	p := func(name string) string { return filepath.Join(dir, name) }
	cases := []struct {
		lead    []int
		n, m    int
		d, e    int
		f32     bool
		causal  bool
		scale   string
		keyLens string
		perHead []int
	}{
		{nil, 7, 9, 4, 3, false, false, "", "", nil},
		{[]int{3}, 70, 33, 8, 5, true, false, "1/d", "", nil},
		{[]int{2, 2}, 5, 300, 16, 16, true, true, "0.3", "", nil},
		{[]int{1, 3}, 65, 65, 6, 2, false, true, "1/sqrt(d)", "", nil},
		{[]int{2, 1}, 6, 10, 3, 3, false, true, "", "7,0", []int{7, 0}},
	}
	for ci, c := range cases {
		shape := func(rows, cols int) []int { return append(slices.Clone(c.lead), rows, cols) }
		q := writeRandom(t, p("q.npy"), r, c.f32, shape(c.n, c.d)...)
		k := writeRandom(t, p("k.npy"), r, c.f32, shape(c.m, c.d)...)
		v := writeRandom(t, p("v.npy"), r, c.f32, shape(c.m, c.e)...)
		dO := writeRandom(t, p("do.npy"), r, c.f32, shape(c.n, c.e)...)
		args := []string{"grad", "--q", p("q.npy"), "--k", p("k.npy"), "--v", p("v.npy"), "--dout", p("do.npy"),
			"--dq", p("dq.npy"), "--dk", p("dk.npy"), "--dv", p("dv.npy"), "--report", p("r.json")}
		if c.causal {
			args = append(args, "--causal")
		}
		if c.scale != "" {
			args = append(args, "--scale", c.scale)
		}
		if c.keyLens != "" {
			args = append(args, "--key-lengths", c.keyLens)
		}
		code, stdout, stderr := cli(t, args...)
		if code != 0 {
			t.Fatalf("case %d: exit %d: %s", ci, code, stderr)
		}
		if !strings.Contains(stdout, "gradients") {
			t.Fatalf("case %d: stdout %q", ci, stdout)
		}
		scale := map[string]float64{"": 1 / math.Sqrt(float64(c.d)), "1/d": 1 / float64(c.d), "0.3": 0.3, "1/sqrt(d)": 1 / math.Sqrt(float64(c.d))}[c.scale]
		heads := len(q) / (c.n * c.d)
		want := reference.Gradient(&attn.Problem[float64]{Heads: heads, N: c.n, M: c.m, D: c.d, E: c.e, Q: q, K: k, V: v,
			Scale: scale, Causal: c.causal, KeyLens: c.perHead}, dO)
		tol := 1e-12
		if c.f32 {
			tol = 2e-5
		}
		for _, f := range []struct {
			name  string
			want  []float64
			shape []int
		}{{"dq", want.DQ, shape(c.n, c.d)}, {"dk", want.DK, shape(c.m, c.d)}, {"dv", want.DV, shape(c.m, c.e)}} {
			a, err := npyfile.Read(p(f.name + ".npy"))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(a.Shape, f.shape) || (a.F32 != nil) != c.f32 {
				t.Fatalf("case %d: %s has shape %v dtype %s, want %v", ci, f.name, a.Shape, a.DType(), f.shape)
			}
			var errMax, ref float64
			for i, w := range f.want {
				got := 0.0
				if c.f32 {
					got = float64(a.F32[i])
				} else {
					got = a.F64[i]
				}
				errMax = max(errMax, math.Abs(got-w))
				ref = max(ref, math.Abs(w))
			}
			if errMax > tol*ref {
				t.Errorf("case %d: %s error %g relative to max %g", ci, f.name, errMax, ref)
			}
		}
		var rep map[string]any
		b, _ := os.ReadFile(p("r.json"))
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{"method", "seconds", "flops", "forward"} {
			if _, ok := rep[key]; !ok {
				t.Fatalf("report lacks %q: %s", key, b)
			}
		}
		if fwd, _ := rep["forward"].(map[string]any); fwd == nil || fwd["method"] != rep["method"] {
			t.Fatalf("forward report %v for method %v", rep["forward"], rep["method"])
		}
	}
}

func TestGradRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(23, 4))
	p := func(name string) string { return filepath.Join(dir, name) }
	writeRandom(t, p("q.npy"), r, true, 2, 4, 8)
	writeRandom(t, p("k.npy"), r, true, 2, 6, 8)
	writeRandom(t, p("v.npy"), r, true, 2, 6, 3)
	writeRandom(t, p("do.npy"), r, true, 2, 4, 3)
	writeRandom(t, p("do64.npy"), r, false, 2, 4, 3)
	writeRandom(t, p("doshape.npy"), r, true, 2, 4, 4)
	writeRandom(t, p("dorows.npy"), r, true, 2, 5, 3)
	writeRandom(t, p("k64.npy"), r, false, 2, 6, 8)
	writeRandom(t, p("kd.npy"), r, true, 2, 6, 7)
	writeRandom(t, p("flat.npy"), r, true, 8)
	doNaN := make([]float32, 2*4*3)
	doNaN[5] = float32(math.NaN())
	npyfile.Write(p("donan.npy"), []int{2, 4, 3}, doNaN)
	doInf := make([]float32, 2*4*3)
	doInf[23] = float32(math.Inf(-1))
	npyfile.Write(p("doinf.npy"), []int{2, 4, 3}, doInf)
	good, _ := os.ReadFile(p("do.npy"))
	os.WriteFile(p("trunc.npy"), good[:len(good)-5], 0o644)
	os.Mkdir(p("adir"), 0o755)

	base := map[string]string{"--q": p("q.npy"), "--k": p("k.npy"), "--v": p("v.npy"), "--dout": p("do.npy"),
		"--dq": p("dq.npy"), "--dk": p("dk.npy"), "--dv": p("dv.npy")}
	cases := map[string][]string{
		"NaN in dO":          {"--dout", p("donan.npy")},
		"Inf in dO":          {"--dout", p("doinf.npy")},
		"dO dtype":           {"--dout", p("do64.npy")},
		"dO columns":         {"--dout", p("doshape.npy")},
		"dO rows":            {"--dout", p("dorows.npy")},
		"dO rank":            {"--dout", p("flat.npy")},
		"dO truncated":       {"--dout", p("trunc.npy")},
		"dO missing":         {"--dout", p("nope.npy")},
		"K dtype":            {"--k", p("k64.npy")},
		"head dim":           {"--k", p("kd.npy")},
		"missing --dout":     {"--dout", ""},
		"missing --dv":       {"--dv", ""},
		"same outputs":       {"--dk", p("dq.npy")},
		"report is output":   {"--report", p("dv.npy")},
		"output directory":   {"--dk", p("adir")},
		"bad scale":          {"--scale", "0"},
		"bad eps":            {"--eps", "-1"},
		"bad method":         {"--method", "magic"},
		"key length big":     {"--key-lengths", "7"},
		"last output fails":  {"--dv", p("no/such/dir/dv.npy")},
		"report dir missing": {"--report", p("no/such/dir/r.json")},
		"stray argument":     {"extra"},
	}
	for _, m := range fastattn.Methods() {
		if !slices.Contains(fastattn.DifferentiableMethods(), m) {
			cases["no backward ("+m+")"] = []string{"--method", m}
			break
		}
	}
	argv := func(override []string) []string { return withOverrides("grad", base, override) }
	for name, override := range cases {
		code, stdout, stderr := cli(t, argv(override)...)
		if code == 0 {
			t.Errorf("%s: exit 0, stdout %q", name, stdout)
		}
		if lines := strings.Count(strings.TrimSpace(stderr), "\n") + 1; stderr == "" || lines != 1 {
			t.Errorf("%s: want one line on stderr, got %q", name, stderr)
		}
		for _, out := range []string{"dq.npy", "dk.npy", "dv.npy", "r.json"} {
			if _, err := os.Stat(p(out)); err == nil {
				t.Fatalf("%s: %s written despite the error", name, out)
			}
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".tmp") {
				t.Fatalf("%s: temporary file %s left behind", name, e.Name())
			}
		}
	}
	// Usage errors exit with status 2.
	for _, name := range []string{"NaN in dO", "dO columns", "missing --dout", "bad method", "same outputs"} {
		if code, _, stderr := cli(t, argv(cases[name])...); code != 2 {
			t.Errorf("%s: exit %d (%s), want 2", name, code, stderr)
		}
	}
}

func TestGradHelp(t *testing.T) {
	if code, out, _ := cli(t, "grad", "-h"); code != 0 || !strings.Contains(out, "dout") {
		t.Fatalf("grad -h: %d %q", code, out)
	}
	if code, out, _ := cli(t, "help"); code != 0 || !strings.Contains(out, "grad") {
		t.Fatalf("help: %d %q", code, out)
	}
}
