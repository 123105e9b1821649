package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBenchHelpListsDecode: bench -h shows the --decode switch, and every
// spelling of it reaches bench --decode (whose own -h lists its flags).
func TestBenchHelpListsDecode(t *testing.T) {
	code, out, stderr := cli(t, "bench", "-h")
	if code != 0 || !strings.Contains(out, "-decode") || stderr != "" {
		t.Fatalf("bench -h: exit %d, stdout lacks -decode or stderr not empty:\n%s\n%s", code, out, stderr)
	}
	for _, spelling := range []string{"--decode", "-decode", "--decode=true"} {
		code, out, stderr := cli(t, "bench", spelling, "-h")
		if code != 0 || !strings.Contains(out, "-poly-to") {
			t.Errorf("bench %s -h: exit %d, no bench --decode help:\n%s\n%s", spelling, code, out, stderr)
		}
	}
}

// TestBenchSaysWhyNA: a method that declines an input shows n/a in the
// table and the reason below it, and bench still succeeds.
func TestBenchSaysWhyNA(t *testing.T) {
	code, out, stderr := cli(t, "bench", "--methods", "poly", "--eps", "1e-13", "--n", "64", "--d", "4", "--dtype", "float64", "--reps", "1")
	if code != 0 {
		t.Fatalf("exit %d:\n%s\n%s", code, out, stderr)
	}
	if !strings.Contains(out, "n/a: poly at n = 64: ") || !strings.Contains(out, "1e-12") {
		t.Errorf("no reason for poly's n/a:\n%s", out)
	}
}

// TestBenchValueDim: --e sets a value dimension of its own (anytemp's
// shape d = 2, e = 8).
func TestBenchValueDim(t *testing.T) {
	code, out, stderr := cli(t, "bench", "--methods", "anytemp", "--n", "64", "--d", "2", "--e", "8", "--dtype", "float32", "--reps", "1")
	if code != 0 || !strings.Contains(out, "anytemp (s)") || strings.Contains(out, "n/a") {
		t.Fatalf("exit %d:\n%s\n%s", code, out, stderr)
	}
}

// TestGenBenchBadFlags: bad sizes, scales and targets of gen and bench are
// one line on stderr, exit status 2, nothing on stdout and no files; sizes
// that would not fit in memory are refused before anything is allocated.
func TestGenBenchBadFlags(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "g")
	for _, args := range [][]string{
		{"gen", "--out", out, "--n", "0"},
		{"gen", "--out", out, "--n", "100000", "--d", "100000"},
		{"gen", "--out", out, "--entries", "normal:-1"},
		{"bench", "--n", "100000000", "--d", "64"},
		{"bench", "--n", "64", "--d", "4", "--scale", "abc"},
		{"bench", "--n", "64", "--d", "4", "--eps", "2"},
		{"bench", "--n", "64", "--d", "4", "--eps", "0"},
		{"bench", "--n", "64", "--d", "4", "--methods", "nope"},
		{"bench", "--n", "64", "--d", "4", "--e", "-1"},
	} {
		code, stdout, stderr := cli(t, args...)
		if code != 2 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "fastattn "+args[0]+": ") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 2, nothing, one line", args, code, stdout, stderr)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused gen left %s behind (%v)", out, err)
	}
}
