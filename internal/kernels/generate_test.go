package kernels

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestGeneratedUpToDate runs the generator in _asm into a temporary
// directory and checks that the committed zkernels_amd64.{s,go} are what
// it writes, so an edit of the generator cannot land without its output
// (or the output be edited by hand).
func TestGeneratedUpToDate(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to run the generator:", err)
	}
	dir := t.TempDir()
	cmd := exec.Command(goTool, "run", "-C", "_asm", ".", "-out", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("generator failed: %v\n%s", err, out)
	}
	for _, name := range []string{"zkernels_amd64.s", "zkernels_amd64.go"} {
		want, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is not what internal/kernels/_asm generates: run go generate in internal/kernels", name)
		}
	}
}
