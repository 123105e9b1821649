package main

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/fastattn/fastattn/internal/npyfile"
)

// smallInputs writes q, k, v .npy files of one head into dir.
func smallInputs(t *testing.T, dir string, n, d int) (q, k, v string) {
	t.Helper()
	r := rand.New(rand.NewPCG(7, 8))
	q, k, v = filepath.Join(dir, "q.npy"), filepath.Join(dir, "k.npy"), filepath.Join(dir, "v.npy")
	writeRandom(t, q, r, true, n, d)
	writeRandom(t, k, r, true, n, d)
	writeRandom(t, v, r, true, n, d)
	return q, k, v
}

// A missing output directory is found before the inputs are read (so before
// any computation), and no message names a temporary file.
func TestOutputDirCheckedFirst(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no", "such", "out.npy")
	for _, args := range [][]string{
		{"run", "--q", "nope-q.npy", "--k", "nope-k.npy", "--v", "nope-v.npy", "--out", missing},
		{"run", "--q", "nope-q.npy", "--k", "nope-k.npy", "--v", "nope-v.npy", "--out", filepath.Join(dir, "o.npy"), "--report", filepath.Join(dir, "gone", "r.json")},
		{"grad", "--q", "a", "--k", "b", "--v", "c", "--dout", "d", "--dq", missing, "--dk", filepath.Join(dir, "dk"), "--dv", filepath.Join(dir, "dv")},
		{"gen", "--out", filepath.Join(dir, "no", "such")},
		{"transition", "--quick", "--out", filepath.Join(dir, "no", "such")},
		{"scaling", "--quick", "--out", filepath.Join(dir, "no", "such")},
		{"hard", "ann", "--n", "8", "--dim", "8", "--out", filepath.Join(dir, "no", "such")},
	} {
		code, stdout, stderr := cli(t, args...)
		if code != 2 || !strings.Contains(stderr, "does not exist") || strings.Contains(stderr, "nope") {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 naming the missing directory before reading inputs", args, code, stderr)
		}
		if strings.Contains(stderr, ".tmp") || strings.Contains(stderr, "probe") || stdout != "" {
			t.Errorf("%v: stdout %q, stderr %q: a temporary name or output leaked", args, stdout, stderr)
		}
	}
}

// A symbolic link given as an output is written through: the link stays,
// its target gets the data. A dangling link creates its target.
func TestOutputSymlinkWrittenThrough(t *testing.T) {
	dir := t.TempDir()
	q, k, v := smallInputs(t, dir, 16, 4)
	target := filepath.Join(dir, "real-out.npy")
	os.WriteFile(target, []byte("old"), 0o600)
	link := filepath.Join(dir, "out.npy")
	if err := os.Symlink("real-out.npy", link); err != nil {
		t.Skip("no symbolic links here:", err)
	}
	dangling := filepath.Join(dir, "lse.npy")
	os.Symlink(filepath.Join(dir, "sub-lse.npy"), dangling)
	code, _, stderr := cli(t, "run", "--q", q, "--k", k, "--v", v, "--out", link, "--lse", dangling, "--method", "exact")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, l := range []string{link, dangling} {
		if fi, err := os.Lstat(l); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Errorf("%s is no longer a symbolic link", l)
		}
	}
	out, err := npyfile.Read(target)
	if err != nil || len(out.F32) != 16*4 {
		t.Fatalf("the link's target does not hold the output: %v", err)
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o600 {
		t.Errorf("the target's mode became %v; an existing file keeps its own", fi.Mode().Perm())
	}
	if _, err := npyfile.Read(filepath.Join(dir, "sub-lse.npy")); err != nil {
		t.Errorf("the dangling link's target was not created: %v", err)
	}
}

// Special files (here a link to /dev/stdout, which the child's stdout pipe
// backs, and /dev/null) are written in place, never replaced; "-" is
// standard output for the report, and the summary line then goes to stderr.
func TestReportToStdoutAndSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	q, k, v := smallInputs(t, dir, 16, 4)
	out := filepath.Join(dir, "out.npy")
	code, stdout, stderr := cli(t, "run", "--q", q, "--k", k, "--v", v, "--out", out, "--report", "-", "--method", "exact")
	if code != 0 {
		t.Fatalf("--report -: exit %d: %s", code, stderr)
	}
	var rep map[string]any
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("--report -: stdout is not the JSON report: %v\n%s", err, stdout)
	}
	if rep["method"] != "exact" || rep["version"] == "" || rep["version"] == nil || rep["kernels"] == nil {
		t.Errorf("report lacks method, version or kernels: %v", rep)
	}
	if !strings.Contains(stderr, "exact attention") {
		t.Errorf("the summary line should be on stderr when the report is on stdout, got %q", stderr)
	}

	link := filepath.Join(dir, "report.json")
	if err := os.Symlink("/dev/stdout", link); err != nil {
		t.Skip("no symbolic links here:", err)
	}
	code, stdout, stderr = cli(t, "run", "--q", q, "--k", k, "--v", v, "--out", "/dev/null", "--report", link, "--method", "exact")
	if code != 0 || !strings.Contains(stdout, `"method": "exact"`) {
		t.Fatalf("report through a link to /dev/stdout: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the link to /dev/stdout was replaced")
	}
	if fi, err := os.Stat("/dev/null"); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Fatalf("/dev/null is no longer a device: %v", err)
	}

	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err == nil {
		done := make(chan []byte)
		go func() {
			b, _ := os.ReadFile(fifo)
			done <- b
		}()
		code, _, stderr = cli(t, "run", "--q", q, "--k", k, "--v", v, "--out", out, "--report", fifo, "--method", "exact")
		if b := <-done; code != 0 || !strings.Contains(string(b), `"method"`) {
			t.Errorf("report to a named pipe: exit %d, read %q, stderr %q", code, b, stderr)
		}
	}

	// Only the report may go to standard output.
	code, _, stderr = cli(t, "run", "--q", q, "--k", k, "--v", v, "--out", "-")
	if code != 2 || !strings.Contains(stderr, "--out cannot be -") {
		t.Errorf("--out -: exit %d, stderr %q", code, stderr)
	}
}

// -h prints the help once, on stdout, with exit status 0; a wrong flag is a
// one-line error on stderr with exit status 2; so is a missing command.
func TestHelpAndUsageErrors(t *testing.T) {
	for _, c := range commands() {
		args := []string{c.name, "-h"}
		if c.name == "hard" {
			args = []string{"hard", "ann", "-h"}
		}
		code, stdout, stderr := cli(t, args...)
		if code != 0 || strings.Count(stdout, "Usage:") != 1 || stderr != "" {
			t.Errorf("%v: exit %d, %d usages on stdout, stderr %q; want exit 0, one usage, nothing on stderr", args, code, strings.Count(stdout, "Usage:"), stderr)
		}
		args = []string{c.name, "--no-such-flag"}
		if c.name == "hard" {
			args = []string{"hard", "solve", "--no-such-flag"}
		}
		code, stdout, stderr = cli(t, args...)
		if code != 2 || stdout != "" || strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.Contains(stderr, "no-such-flag") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 2, one line on stderr only", args, code, stdout, stderr)
		}
	}
	if code, stdout, stderr := cli(t, "hard", "-h"); code != 0 || strings.Count(stdout, "Usage:") != 1 || stderr != "" {
		t.Errorf("hard -h: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, stdout, stderr := cli(t); code != 2 || stdout != "" || !strings.Contains(stderr, "Usage:") {
		t.Errorf("no command: exit %d, stdout %q, stderr %q; want the usage on stderr, exit 2", code, stdout, stderr)
	}
	if code, stdout, _ := cli(t, "help"); code != 0 || strings.Count(stdout, "Usage:") != 1 {
		t.Errorf("help: exit %d, stdout %q", code, stdout)
	}
	// "help COMMAND" is "COMMAND -h"; flags are listed as the usage line
	// spells them, with two dashes.
	if code, stdout, stderr := cli(t, "help", "gen"); code != 0 || !strings.Contains(stdout, "Usage: fastattn gen") ||
		!strings.Contains(stdout, "\n  --out string\n") || !strings.Contains(stdout, `(default "float32")`) || stderr != "" {
		t.Errorf("help gen: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

// JSON outputs keep <, > and & as they are.
func TestJSONNotHTMLEscaped(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "r.json")
	f, err := jsonFile(p, map[string]string{"reason": "a < b && c > d"})
	if err != nil {
		t.Fatal(err)
	}
	if err := writeAll([]pendingFile{f}, os.Stdout); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if !strings.Contains(string(b), "a < b && c > d") || strings.Contains(string(b), `\u003c`) {
		t.Errorf("got %s", b)
	}
	var sb strings.Builder
	printJSON(&sb, map[string]string{"x": "<"})
	if sb.String() != "{\"x\":\"<\"}\n" {
		t.Errorf("printJSON: got %q", sb.String())
	}
}

// run prints GFLOP/s as exact attention's flop count over the method's
// time, whatever the method, and says so.
func TestRunFlopConvention(t *testing.T) {
	dir := t.TempDir()
	const n, d = 64, 4
	q, k, v := smallInputs(t, dir, n, d)
	rep := filepath.Join(dir, "r.json")
	code, stdout, stderr := cli(t, "run", "--q", q, "--k", k, "--v", v, "--out", filepath.Join(dir, "o.npy"), "--report", rep,
		"--method", "poly", "--scale", "1/d", "--eps", "1e-3")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r struct {
		Seconds float64 `json:"seconds"`
	}
	b, _ := os.ReadFile(rep)
	json.Unmarshal(b, &r)
	m := regexp.MustCompile(`\(([0-9.]+) GFLOP/s at exact attention's flop count\)`).FindStringSubmatch(stdout)
	if m == nil {
		t.Fatalf("no GFLOP/s at exact's flop count in %q", stdout)
	}
	got, _ := strconv.ParseFloat(m[1], 64)
	want := 2 * n * n * float64(d+d) / r.Seconds / 1e9
	if math.Abs(got-want) > 0.006+1e-3*want {
		t.Errorf("printed %g GFLOP/s, want exact's flops / time = %g", got, want)
	}
}

// An explicitly requested method predicted slower than exact attention
// runs, and the command line says so on stderr (the report too).
func TestExplicitSlowerMethodNote(t *testing.T) {
	dir := t.TempDir()
	q, k, v := smallInputs(t, dir, 2048, 4)
	rep := filepath.Join(dir, "r.json")
	code, _, stderr := cli(t, "run", "--q", q, "--k", k, "--v", v, "--out", filepath.Join(dir, "o.npy"), "--report", rep,
		"--method", "anytemp", "--scale", "1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "note: anytemp was requested and ran, but it was predicted slower than exact") {
		t.Errorf("stderr %q: want the note", stderr)
	}
	b, _ := os.ReadFile(rep)
	if !strings.Contains(string(b), `"predicted_slower_than_exact": true`) {
		t.Errorf("report lacks predicted_slower_than_exact: %s", b)
	}
}
