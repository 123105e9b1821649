package outfile

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func text(path, s string) File {
	return File{path, func(w io.Writer) error { _, err := io.WriteString(w, s); return err }}
}

// A failure in any file leaves every regular target as it was and no
// temporary file behind, and its message names the file, not a temporary.
func TestAllOrNone(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.txt")
	os.WriteFile(a, []byte("old"), 0o644)
	fail := File{filepath.Join(dir, "b.txt"), func(w io.Writer) error {
		io.WriteString(w, "partial")
		return errors.New("disk full")
	}}
	err := WriteAll([]File{text(a, "new"), fail}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "b.txt") || strings.Contains(err.Error(), ".tmp") {
		t.Fatalf("got %v, want an error naming b.txt and no temporary file", err)
	}
	if b, _ := os.ReadFile(a); string(b) != "old" {
		t.Errorf("a.txt became %q after a failed write", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left behind: %v", entries)
	}
	err = WriteAll([]File{text(a, "new"), text(filepath.Join(dir, "no", "c.txt"), "x")}, io.Discard)
	if err == nil || strings.Contains(err.Error(), ".tmp") {
		t.Fatalf("missing directory: got %v", err)
	}
	if b, _ := os.ReadFile(a); string(b) != "old" {
		t.Errorf("a.txt became %q after a failed write", b)
	}
}

func TestStdoutAndModes(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.txt")
	os.WriteFile(a, []byte("old"), 0o600)
	var out bytes.Buffer
	if err := WriteAll([]File{text(a, "new"), text(Stdout, "report"), text(filepath.Join(dir, "b.txt"), "b")}, &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "report" {
		t.Errorf("stdout got %q", out.String())
	}
	if fi, _ := os.Stat(a); fi.Mode().Perm() != 0o600 {
		t.Errorf("a.txt mode %v, want its own 0600 kept", fi.Mode().Perm())
	}
	if fi, _ := os.Stat(filepath.Join(dir, "b.txt")); fi.Mode().Perm() != 0o644 {
		t.Errorf("new file mode %v, want 0644", fi.Mode().Perm())
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	for path, want := range map[string]string{
		filepath.Join(dir, "x.npy"):       "",
		filepath.Join(dir, "no", "x.npy"): "does not exist",
		dir:                               "is a directory",
		Stdout:                            "",
		os.DevNull:                        "",
	} {
		err := Check(path)
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("Check(%s) = %v, want %q", path, err, want)
		}
	}
	if err := CheckDir(filepath.Join(dir, "new")); err != nil {
		t.Errorf("CheckDir of a new directory under an existing one: %v", err)
	}
	if err := CheckDir(filepath.Join(dir, "a", "b")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("CheckDir with a missing parent: %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("the checks left files behind: %v", entries)
	}
	if !SameFile(filepath.Join(dir, "x"), filepath.Join(dir, ".", "x")) || SameFile(filepath.Join(dir, "x"), filepath.Join(dir, "y")) {
		t.Errorf("SameFile")
	}
}
