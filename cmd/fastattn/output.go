package main

import (
	"io"
	"slices"

	"github.com/fastattn/fastattn/internal/npyfile"
	"github.com/fastattn/fastattn/internal/outfile"
)

// flagPath is an output flag and the path it names.
type flagPath struct{ name, val string }

// checkOutputs runs before any computation: it rejects two output flags
// naming one file, directories, missing or read-only directories, and "-"
// (standard output) except for the flags in toStdout.
func checkOutputs(outs []flagPath, toStdout ...string) error {
	for i, f := range outs {
		if f.val == "" {
			continue
		}
		if f.val == outfile.Stdout && !slices.Contains(toStdout, f.name) {
			return usagef("--%s cannot be - (standard output); only --report can", f.name)
		}
		for _, g := range outs[:i] {
			if g.val != "" && outfile.SameFile(f.val, g.val) {
				return usagef("--%s and --%s name the same file %s", g.name, f.name, f.val)
			}
		}
		if err := outfile.Check(f.val); err != nil {
			return usagef("--%s %v", f.name, err)
		}
	}
	return nil
}

// pendingFile is an output file and how to fill it.
type pendingFile = outfile.File

// writeAll writes every file or, on a failure, none of them (see package
// outfile: symbolic links are written through, "-" is stdout).
func writeAll(files []pendingFile, stdout io.Writer) error {
	return outfile.WriteAll(files, stdout)
}

// npyFile is a pending .npy output.
func npyFile(path string, shape []int, data any) pendingFile {
	return pendingFile{Path: path, Fill: func(w io.Writer) error { return npyfile.Encode(w, shape, data) }}
}

// jsonFile is a pending indented JSON output, without HTML escaping.
func jsonFile(path string, v any) (pendingFile, error) { return outfile.JSONFile(path, v) }

// printJSON writes v to w as one line of JSON without HTML escaping.
func printJSON(w io.Writer, v any) error {
	b, err := outfile.JSONLine(v)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
