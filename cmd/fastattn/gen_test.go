package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/fastattn/fastattn/internal/npyfile"
)

func TestGenThenRun(t *testing.T) {
	dir := t.TempDir()
	if code, _, stderr := cli(t, "gen", "--out", dir, "--n", "50", "--m", "70", "--d", "4", "--e", "3", "--heads", "2", "--entries", "uniform:1"); code != 0 {
		t.Fatalf("gen: %s", stderr)
	}
	k, err := npyfile.Read(filepath.Join(dir, "k.npy"))
	if err != nil || !slices.Equal(k.Shape, []int{2, 70, 4}) || k.F32 == nil {
		t.Fatalf("k.npy: %v %v", k.Shape, err)
	}
	for _, x := range k.F32 {
		if x < -1 || x > 1 {
			t.Fatalf("uniform:1 entry %g outside [-1, 1]", x)
		}
	}
	code, _, stderr := cli(t, "run", "--q", filepath.Join(dir, "q.npy"), "--k", filepath.Join(dir, "k.npy"), "--v", filepath.Join(dir, "v.npy"), "--out", filepath.Join(dir, "o.npy"))
	if code != 0 {
		t.Fatalf("run: %s", stderr)
	}
	if code, _, _ := cli(t, "gen", "--out", dir, "--entries", "cauchy:1"); code != 2 {
		t.Fatalf("bad --entries: exit %d", code)
	}
}

// TestRunRepeat checks --repeat: the report lists one time per repeated
// call, the output and log-sum-exp files are those of a run without it, and
// bad uses are usage errors that write nothing.
func TestRunRepeat(t *testing.T) {
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	if code, _, stderr := cli(t, "gen", "--out", dir, "--n", "90", "--m", "130", "--d", "8", "--heads", "3"); code != 0 {
		t.Fatalf("gen: %s", stderr)
	}
	in := []string{"--q", path("q.npy"), "--k", path("k.npy"), "--v", path("v.npy"), "--method", "exact", "--causal"}
	run := func(name string, extra ...string) (out []float32, lse []float64, rep map[string]any) {
		t.Helper()
		args := append([]string{"run", "--out", path(name + ".npy"), "--lse", path(name + "_lse.npy"), "--report", path(name + ".json")}, in...)
		if code, _, stderr := cli(t, append(args, extra...)...); code != 0 {
			t.Fatalf("run %v: exit %d: %s", extra, code, stderr)
		}
		o, err := npyfile.Read(path(name + ".npy"))
		if err != nil {
			t.Fatal(err)
		}
		l, err := npyfile.Read(path(name + "_lse.npy"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path(name + ".json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(b, &rep); err != nil {
			t.Fatal(err)
		}
		return o.F32, l.F64, rep
	}
	once, onceLSE, onceRep := run("once")
	if _, ok := onceRep["repeat_seconds"]; ok {
		t.Errorf("report without --repeat has repeat_seconds: %v", onceRep["repeat_seconds"])
	}
	again, againLSE, rep := run("again", "--repeat", "3")
	secs, _ := rep["repeat_seconds"].([]any)
	if len(secs) != 3 {
		t.Fatalf("repeat_seconds = %v, want 3 times", rep["repeat_seconds"])
	}
	for _, s := range secs {
		if x, ok := s.(float64); !ok || !(x > 0) {
			t.Errorf("repeat_seconds holds %v, want positive seconds", s)
		}
	}
	if !slices.Equal(once, again) || !slices.Equal(onceLSE, againLSE) || len(once) != 3*90*8 {
		t.Errorf("output with --repeat differs from the output without it")
	}
	for _, bad := range [][]string{{"--repeat", "-1"}, {"--repeat", "2", "--method", "poly"}, {"--repeat", "1", "--method", "auto"}} {
		args := append(append([]string{"run", "--out", path("bad.npy")}, in...), bad...)
		if code, _, _ := cli(t, args...); code != 2 {
			t.Errorf("run %v: exit %d, want 2", bad, code)
		}
		if _, err := os.Stat(path("bad.npy")); err == nil {
			t.Errorf("run %v wrote its output", bad)
		}
	}
}
