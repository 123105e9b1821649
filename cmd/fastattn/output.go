package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/fastattn/fastattn/internal/npyfile"
)

// flagPath is an output flag and the path it names.
type flagPath struct{ name, val string }

// checkOutputs rejects two output flags naming one file, and directories.
func checkOutputs(outs []flagPath) error {
	seen := map[string]string{}
	for _, f := range outs {
		if f.val == "" {
			continue
		}
		abs, err := filepath.Abs(f.val)
		if err != nil {
			return err
		}
		if other, ok := seen[abs]; ok {
			return usagef("--%s and --%s name the same file %s", other, f.name, f.val)
		}
		seen[abs] = f.name
		if st, err := os.Stat(f.val); err == nil && st.IsDir() {
			return usagef("--%s %s is a directory", f.name, f.val)
		}
	}
	return nil
}

// pendingFile is an output file and how to fill it.
type pendingFile struct {
	path string
	fill func(io.Writer) error
}

// writeAll writes every file to a temporary file beside it and renames them
// into place only once all are complete, so a failure (a full disk, a
// missing directory) leaves none of them behind.
func writeAll(files []pendingFile) error {
	tmps := make([]string, 0, len(files))
	defer func() {
		for _, t := range tmps {
			os.Remove(t) // no-op once renamed
		}
	}()
	for _, f := range files {
		tmp, err := os.CreateTemp(filepath.Dir(f.path), "."+filepath.Base(f.path)+".*.tmp")
		if err != nil {
			return err
		}
		tmps = append(tmps, tmp.Name())
		if err := f.fill(tmp); err != nil {
			tmp.Close()
			return fmt.Errorf("writing %s: %w", f.path, err)
		}
		if err := tmp.Close(); err != nil {
			return fmt.Errorf("writing %s: %w", f.path, err)
		}
		// CreateTemp makes 0600 files; outputs get what numpy.save would.
		if err := os.Chmod(tmp.Name(), 0o644); err != nil {
			return err
		}
	}
	var failed []string
	for i, f := range files {
		if err := os.Rename(tmps[i], f.path); err != nil {
			failed = append(failed, f.path)
		}
	}
	if failed != nil {
		return fmt.Errorf("could not move %s into place", strings.Join(failed, ", "))
	}
	return nil
}

// npyFile is a pending .npy output.
func npyFile(path string, shape []int, data any) pendingFile {
	return pendingFile{path, func(w io.Writer) error { return npyfile.Encode(w, shape, data) }}
}

// jsonFile is a pending indented JSON output.
func jsonFile(path string, v any) (pendingFile, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return pendingFile{}, err
	}
	return pendingFile{path, func(w io.Writer) error {
		_, err := w.Write(append(b, '\n'))
		return err
	}}, nil
}

// writeJSON writes v as indented JSON, atomically.
func writeJSON(path string, v any) error {
	f, err := jsonFile(path, v)
	if err != nil {
		return err
	}
	return writeAll([]pendingFile{f})
}
