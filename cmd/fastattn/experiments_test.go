package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTransitionCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	code, stdout, stderr := cli(t, "transition", "--quick", "--logn", "7-12", "--measure-up-to", "9", "--c", "1", "--max-seconds", "1", "--out", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "B*/√ln n") || !strings.Contains(stdout, "2^12") {
		t.Errorf("stdout: %s", stdout)
	}
	if !strings.Contains(stderr, "100%") {
		t.Errorf("no progress on stderr: %q", stderr)
	}
	for _, f := range []string{"transition.csv", "crossover.csv", "crossover.png", "crossover.svg", "time_vs_B_c1.png", "time_vs_B_c1.svg"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "crossover.csv"))
	if lines := strings.Count(string(b), "\n"); lines != 1+6 {
		t.Errorf("crossover.csv has %d lines:\n%s", lines, b)
	}
}

func TestScalingCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out")
	code, stdout, stderr := cli(t, "scaling", "--logn", "6-9", "--max-seconds", "2", "--methods", "poly", "--out", dir, "--no-progress")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if stderr != "" || !strings.Contains(stdout, "slope") || !strings.Contains(stdout, "poly") {
		t.Errorf("stdout %q, stderr %q", stdout, stderr)
	}
	for _, f := range []string{"scaling.csv", "slopes.csv", "scaling_bounded.png", "scaling_large-entries.svg"} {
		if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestExperimentsRejectBadInput(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	out := filepath.Join(root, "x")
	for name, args := range map[string][]string{
		"transition no out":    {"transition", "--quick"},
		"transition bad c":     {"transition", "--c", "0,1", "--out", out},
		"transition bad logn":  {"transition", "--logn", "9-3", "--out", out},
		"transition bad secs":  {"transition", "--max-seconds", "-1", "--out", out},
		"transition measure":   {"transition", "--measure-up-to", "99", "--out", out},
		"transition out file":  {"transition", "--out", file},
		"transition stray arg": {"transition", "--out", out, "now"},
		"scaling no out":       {"scaling"},
		"scaling bad method":   {"scaling", "--methods", "magic", "--out", out},
		"scaling bad logn":     {"scaling", "--logn", "x", "--out", out},
	} {
		code, stdout, stderr := cli(t, args...)
		if code != 2 {
			t.Errorf("%s: exit %d, stdout %q", name, code, stdout)
		}
		if lines := strings.Count(strings.TrimSpace(stderr), "\n") + 1; stderr == "" || lines != 1 {
			t.Errorf("%s: want one line on stderr, got %q", name, stderr)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("output directory created despite bad flags")
	}
}

// TestExperimentInterruptedWritesNothing: an experiment stopped by Ctrl-C
// leaves no output directory behind (it is created only with the files).
func TestExperimentInterruptedWritesNothing(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	cmd := exec.Command(os.Args[0], "transition", "--out", out, "--no-progress")
	cmd.Env = append(os.Environ(), "FASTATTN_BE_CLI=1")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	cmd.Process.Signal(os.Interrupt)
	if err := cmd.Wait(); err == nil {
		t.Fatalf("the full transition experiment finished within half a second?")
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("interrupted experiment left %s (%v); stderr %q", out, err, stderr.String())
	}
}
