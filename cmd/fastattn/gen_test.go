package main

import (
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
