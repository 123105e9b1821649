package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fastattn/fastattn"
	"github.com/fastattn/fastattn/hardness"
	"github.com/fastattn/fastattn/internal/npyfile"
)

// readVectors reads an instance's a.npy or b.npy, checking it is binary.
func readVectors(t *testing.T, path string) hardness.Vectors {
	t.Helper()
	arr, err := npyfile.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if arr.F64 == nil || len(arr.Shape) != 2 {
		t.Fatalf("%s: %s %v, want 2-D float64", path, arr.DType(), arr.Shape)
	}
	v, err := hardness.NewVectors(arr.F64, arr.Shape[0], arr.Shape[1])
	if err != nil {
		t.Fatal(err)
	}
	if err := v.CheckBinary(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

func readShape(t *testing.T, path string) []int {
	t.Helper()
	arr, err := npyfile.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if arr.F64 == nil {
		t.Fatalf("%s is %s, want float64", path, arr.DType())
	}
	return arr.Shape
}

// solveResult is what hard solve prints, read back.
type solveResult = solveOutput

func solveDir(t *testing.T, dir string, extra ...string) (solveResult, bool) {
	t.Helper()
	code, stdout, stderr := cli(t, append([]string{"hard", "solve", "--dir", dir}, extra...)...)
	if code != 0 {
		return solveResult{}, false
	}
	if strings.Count(strings.TrimSpace(stdout), "\n") != 0 || stderr != "" {
		t.Fatalf("solve: want one JSON line on stdout and nothing on stderr, got %q / %q", stdout, stderr)
	}
	var r solveResult
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("solve output is not JSON: %v\n%s", err, stdout)
	}
	return r, true
}

// noTemps fails if a temporary file or directory is left in dir.
func noTemps(t *testing.T, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Fatalf("temporary %s left behind in %s", e.Name(), dir)
		}
	}
}

func TestHardANN(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "ann")
	code, stdout, stderr := cli(t, "hard", "ann", "--n", "48", "--m", "40", "--dim", "24", "--seed", "3", "--out", dir, "--planted", "4", "--decoys", "4")
	if code != 0 {
		t.Fatalf("hard ann: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "Gap-ANN") {
		t.Errorf("stdout: %q", stdout)
	}
	noTemps(t, root)
	var meta map[string]any
	raw, err := os.ReadFile(filepath.Join(dir, "instance.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"kind", "t", "eps", "beta", "scale", "threshold", "attention_eps", "n", "m", "dim", "planted", "decoys", "far_distance", "entry_bound"} {
		if _, ok := meta[key]; !ok {
			t.Errorf("instance.json lacks %q", key)
		}
	}
	if meta["kind"] != "ann" || meta["n"] != 48.0 || meta["m"] != 40.0 || meta["dim"] != 24.0 || meta["scale"] != 1/96.0 {
		t.Errorf("instance.json: %s", raw)
	}
	planted := meta["planted"].([]any)
	if len(planted) != 4 {
		t.Fatalf("planted: %v", planted)
	}
	a, b := readVectors(t, filepath.Join(dir, "a.npy")), readVectors(t, filepath.Join(dir, "b.npy"))
	if a.N != 48 || b.N != 40 || a.Dim != 24 || b.Dim != 24 {
		t.Fatalf("a %dx%d, b %dx%d", a.N, a.Dim, b.N, b.Dim)
	}
	for name, want := range map[string][]int{"q.npy": {96, 96}, "k.npy": {80, 96}, "v.npy": {80, 1}} {
		if got := readShape(t, filepath.Join(dir, name)); !slices.Equal(got, want) {
			t.Errorf("%s: shape %v, want %v", name, got, want)
		}
	}
	p := &hardness.ANN{A: a, B: b, T: int(meta["t"].(float64)), Eps: meta["eps"].(float64)}
	near := p.Nearest()
	for _, pr := range planted {
		i := int(pr.(map[string]any)["a"].(float64))
		if near[i] > p.T {
			t.Errorf("planted query %d: nearest distance %d > t = %d", i, near[i], p.T)
		}
	}

	for _, m := range append(fastattn.Methods(), fastattn.Auto) {
		r, ok := solveDir(t, dir, "--method", m, "--check")
		if !ok {
			if m == "exact" || m == fastattn.Auto {
				t.Fatalf("solve --method %s failed", m)
			}
			t.Logf("%s declines this instance", m)
			continue
		}
		if r.Kind != "ann" || len(r.Answers) != 48 || r.Check == nil || len(r.Check.BruteForce) != 48 {
			t.Fatalf("%s: %+v", m, r)
		}
		if !r.Certified {
			t.Logf("%s: not certified (bound %g > %g)", m, r.Report.ErrorBound, r.AttentionEps)
			continue
		}
		yes := 0
		for i, h := range near {
			if r.Answers[i] {
				yes++
			}
			if !p.InGap(h) && r.Answers[i] != (h <= p.T) {
				t.Errorf("%s: query %d at distance %d (t %d): answer %v", m, i, h, p.T, r.Answers[i])
			}
		}
		if r.Yes != yes || yes < 4 || r.Check.DisagreeOutsideGap != 0 || r.Check.Agree+r.Check.InGap != 48 {
			t.Errorf("%s: yes %d (counted %d), check %+v", m, r.Yes, yes, *r.Check)
		}
		if r.Report.Method == "" || r.AttentionEps != meta["attention_eps"] || r.Threshold != meta["threshold"] {
			t.Errorf("%s: report %+v, eps %g, threshold %g", m, r.Report, r.AttentionEps, r.Threshold)
		}
	}

	// The same seed gives the same instance; writing over an existing
	// directory replaces its files.
	code, _, stderr = cli(t, "hard", "ann", "--n", "48", "--m", "40", "--dim", "24", "--seed", "3", "--out", filepath.Join(root, "again"), "--planted", "4", "--decoys", "4")
	if code != 0 {
		t.Fatal(stderr)
	}
	for _, f := range []string{"a.npy", "b.npy", "q.npy", "instance.json"} {
		x, _ := os.ReadFile(filepath.Join(dir, f))
		y, _ := os.ReadFile(filepath.Join(root, "again", f))
		if !bytes.Equal(x, y) {
			t.Errorf("%s differs between runs with the same seed", f)
		}
	}
	code, _, stderr = cli(t, "hard", "ann", "--n", "20", "--dim", "16", "--seed", "4", "--out", dir)
	if code != 0 {
		t.Fatal(stderr)
	}
	noTemps(t, root)
	if got := readShape(t, filepath.Join(dir, "q.npy")); !slices.Equal(got, []int{40, 64}) {
		t.Fatalf("overwritten q.npy has shape %v", got)
	}
	if r, ok := solveDir(t, dir, "--method", "exact"); !ok || len(r.Answers) != 20 {
		t.Fatalf("solve after overwrite: %+v", r)
	}
}

func TestHardMaxIP(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "mip")
	code, _, stderr := cli(t, "hard", "maxip", "--n", "60", "--dim", "10", "--seed", "5", "--out", dir, "--planted", "5", "--tau", "7")
	if code != 0 {
		t.Fatalf("hard maxip: exit %d: %s", code, stderr)
	}
	noTemps(t, root)
	var meta map[string]any
	raw, _ := os.ReadFile(filepath.Join(dir, "instance.json"))
	if err := json.Unmarshal(raw, &meta); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"kind", "tau", "gap", "lambda", "scale", "threshold", "attention_eps", "n", "dim", "planted"} {
		if _, ok := meta[key]; !ok {
			t.Errorf("instance.json lacks %q", key)
		}
	}
	if meta["kind"] != "maxip" || meta["tau"] != 7.0 || meta["scale"] != 1.0 || len(meta["planted"].([]any)) != 5 {
		t.Errorf("instance.json: %s", raw)
	}
	for name, want := range map[string][]int{"q.npy": {60, 11}, "k.npy": {61, 11}, "v.npy": {61, 1}} {
		if got := readShape(t, filepath.Join(dir, name)); !slices.Equal(got, want) {
			t.Errorf("%s: shape %v, want %v", name, got, want)
		}
	}
	p := &hardness.MaxIP{A: readVectors(t, filepath.Join(dir, "a.npy")), B: readVectors(t, filepath.Join(dir, "b.npy")), Tau: 7, Gap: 1}
	want := p.BruteForce()
	for _, m := range append(fastattn.Methods(), fastattn.Auto) {
		r, ok := solveDir(t, dir, "--method", m, "--check")
		if !ok {
			if m == "exact" || m == fastattn.Auto {
				t.Fatalf("solve --method %s failed", m)
			}
			t.Logf("%s declines this instance", m)
			continue
		}
		if !r.Certified {
			t.Logf("%s: not certified", m)
			continue
		}
		if r.Kind != "maxip" || !slices.Equal(r.Answers, want) || r.Check.DisagreeOutsideGap != 0 || r.Check.Agree != 60 {
			t.Errorf("%s: answers %v, brute force %v, check %+v", m, r.Answers, want, r.Check)
		}
	}
}

func TestHardRejectsBadInput(t *testing.T) {
	root := t.TempDir()
	p := func(name string) string { return filepath.Join(root, name) }
	good := p("good")
	if code, _, stderr := cli(t, "hard", "ann", "--n", "16", "--dim", "12", "--out", good); code != 0 {
		t.Fatal(stderr)
	}
	os.WriteFile(p("file"), []byte("x"), 0o644)
	// Broken instance directories, each a copy of good with one defect.
	broken := func(name string, edit func(dir string)) string {
		dir := p(name)
		os.Mkdir(dir, 0o755)
		for _, f := range hardness.InstanceFiles {
			b, _ := os.ReadFile(filepath.Join(good, f))
			os.WriteFile(filepath.Join(dir, f), b, 0o644)
		}
		edit(dir)
		return dir
	}
	editJSON := func(f func(m map[string]any)) func(string) {
		return func(dir string) {
			var m map[string]any
			b, _ := os.ReadFile(filepath.Join(dir, "instance.json"))
			json.Unmarshal(b, &m)
			f(m)
			b, _ = json.Marshal(m)
			os.WriteFile(filepath.Join(dir, "instance.json"), b, 0o644)
		}
	}
	badJSON := broken("badjson", func(d string) { os.WriteFile(filepath.Join(d, "instance.json"), []byte("{not json"), 0o644) })
	badKind := broken("badkind", editJSON(func(m map[string]any) { m["kind"] = "sat" }))
	noT := broken("not", editJSON(func(m map[string]any) { delete(m, "t") }))
	badScale := broken("badscale", editJSON(func(m map[string]any) { m["scale"] = -1 }))
	badRows := broken("badrows", editJSON(func(m map[string]any) { m["rows"] = 33 }))
	truncated := broken("trunc", func(d string) {
		b, _ := os.ReadFile(filepath.Join(d, "k.npy"))
		os.WriteFile(filepath.Join(d, "k.npy"), b[:len(b)-9], 0o644)
	})
	f32 := broken("f32", func(d string) { npyfile.Write(filepath.Join(d, "v.npy"), []int{32, 1}, make([]float32, 32)) })
	nonBinary := broken("nonbinary", func(d string) {
		npyfile.Write(filepath.Join(d, "a.npy"), []int{16, 12}, slices.Repeat([]float64{0.5}, 16*12))
	})

	cases := map[string][]string{
		"no subcommand":      {"hard"},
		"unknown subcommand": {"hard", "sat"},
		"ann no --out":       {"hard", "ann"},
		"ann n 0":            {"hard", "ann", "--n", "0", "--out", p("x")},
		"ann dim 0":          {"hard", "ann", "--dim", "0", "--out", p("x")},
		"ann huge":           {"hard", "ann", "--n", "1000000", "--dim", "1000", "--out", p("x")},
		"ann eps 0":          {"hard", "ann", "--eps", "0", "--out", p("x")},
		"ann t > dim":        {"hard", "ann", "--dim", "8", "--t", "9", "--out", p("x")},
		"ann planted > n":    {"hard", "ann", "--n", "8", "--planted", "9", "--out", p("x")},
		"ann decoys far":     {"hard", "ann", "--n", "8", "--dim", "8", "--t", "5", "--decoys", "1", "--out", p("x")},
		"ann underflow":      {"hard", "ann", "--n", "64", "--dim", "4000", "--t", "1", "--eps", "0.1", "--out", p("x")},
		"ann parent missing": {"hard", "ann", "--out", p("no/such/x")},
		"ann out is a file":  {"hard", "ann", "--out", p("file")},
		"ann stray arg":      {"hard", "ann", "--out", p("x"), "extra"},
		"ann unknown flag":   {"hard", "ann", "--out", p("x"), "--beta", "3"},
		"ann bad seed":       {"hard", "ann", "--out", p("x"), "--seed", "-1"},
		"maxip tau > dim":    {"hard", "maxip", "--dim", "8", "--tau", "9", "--out", p("x")},
		"maxip density":      {"hard", "maxip", "--density", "1.5", "--out", p("x")},
		"maxip decoys tau 0": {"hard", "maxip", "--tau", "0", "--decoys", "1", "--out", p("x")},
		"solve no --dir":     {"hard", "solve"},
		"solve missing dir":  {"hard", "solve", "--dir", p("nope")},
		"solve bad json":     {"hard", "solve", "--dir", badJSON},
		"solve bad kind":     {"hard", "solve", "--dir", badKind},
		"solve no t":         {"hard", "solve", "--dir", noT},
		"solve bad scale":    {"hard", "solve", "--dir", badScale},
		"solve shape":        {"hard", "solve", "--dir", badRows},
		"solve truncated":    {"hard", "solve", "--dir", truncated},
		"solve float32":      {"hard", "solve", "--dir", f32},
		"solve non-binary":   {"hard", "solve", "--dir", nonBinary, "--check"},
		"solve bad method":   {"hard", "solve", "--dir", good, "--method", "magic"},
		"solve bad eps":      {"hard", "solve", "--dir", good, "--eps", "-1"},
	}
	for name, args := range cases {
		code, stdout, stderr := cli(t, args...)
		if code == 0 {
			t.Errorf("%s: exit 0, stdout %q", name, stdout)
		}
		if lines := strings.Count(strings.TrimSpace(stderr), "\n") + 1; stderr == "" || lines != 1 {
			t.Errorf("%s: want one line on stderr, got %q", name, stderr)
		}
		if len(args) > 1 && args[1] == "solve" && stdout != "" {
			t.Errorf("%s: output on stdout despite the error: %q", name, stdout)
		}
		if _, err := os.Stat(p("x")); err == nil {
			t.Fatalf("%s: output directory written despite the error", name)
		}
		noTemps(t, root)
	}
	if b, _ := os.ReadFile(p("file")); string(b) != "x" {
		t.Error("an existing file was replaced")
	}
}

func TestHardHelp(t *testing.T) {
	if code, out, _ := cli(t, "hard", "-h"); code != 0 || !strings.Contains(out, "maxip") || !strings.Contains(out, "instance.json") {
		t.Fatalf("hard -h: %d %q", code, out)
	}
	for _, sub := range []string{"ann", "maxip", "solve"} {
		if code, out, _ := cli(t, "hard", sub, "-h"); code != 0 || !strings.Contains(out, "fastattn hard "+sub) {
			t.Errorf("hard %s -h: %d %q", sub, code, out)
		}
	}
	if code, out, _ := cli(t, "help"); code != 0 || !strings.Contains(out, "hard") {
		t.Errorf("help does not list hard: %q", out)
	}
}
