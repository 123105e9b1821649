package main

import (
	"strings"
	"testing"
)

// TestBenchDecode runs a small bench --decode: every case prints a row per
// context length, the bandwidth and the poly summary.
func TestBenchDecode(t *testing.T) {
	code, stdout, stderr := cli(t, "bench", "--decode", "--from", "6", "--to", "8", "--poly-to", "9", "--steps", "2",
		"--heads", "1,2", "--gqa", "2", "--exact-d", "16", "--poly-d", "4", "--bandwidth-mb", "16")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"memory bandwidth", "exact d=16 heads=1 ", "exact d=16 heads=2 kv=1", "poly d=4 heads=1 ", "poly d=4 heads=2 kv=1", "log-log slope", "exact / poly at context 2^8", "exact d=16 heads=1 float16 ", "float16 cache: time per token against float32", "exact d=16 heads=2 kv=1 bfloat16 "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	if n := strings.Count(stdout, "poly d=4 heads=1 "); n != 4 {
		t.Errorf("%d rows for poly d=4 heads=1, want 4 (2^6 to 2^9):\n%s", n, stdout)
	}
	if code, _, stderr := cli(t, "bench", "--decode", "--from", "9", "--to", "8"); code != 2 || !strings.Contains(stderr, "--from") {
		t.Errorf("--from above --to: exit %d, %q", code, stderr)
	}
}
