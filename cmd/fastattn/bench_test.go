package main

import (
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
