// Package outfile writes output files all or none, safely for every kind
// of target: regular files are written to a temporary file beside the
// target and renamed into place once every file of the set is complete; a
// symbolic link is written through (its target is replaced, the link
// stays); a special file such as /dev/stdout or a named pipe is written in
// place, last; the name "-" is standard output. Error messages name the
// file the caller asked for, never a temporary file.
package outfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Stdout is the path that means standard output.
const Stdout = "-"

// File is one output: its path and how to fill it.
type File struct {
	Path string
	Fill func(io.Writer) error
}

// maxLinks bounds the symbolic links followed, as the kernel does.
const maxLinks = 40

// kind is what an output path names.
type kind int

const (
	missing kind = iota // nothing yet: a new regular file at target
	regular             // an existing regular file at target
	inPlace             // a special file, written through path itself
)

// resolve finds where path's data goes. An existing path is followed by
// the kernel (so links such as /dev/stdout -> /proc/self/fd/1 -> a pipe
// work); a regular file's real path is where the temporary file is put and
// renamed to, so a symbolic link stays a link. A missing path may be a
// dangling link, followed to the file it names.
func resolve(path string) (target string, k kind, mode fs.FileMode, err error) {
	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.IsDir():
		return "", 0, 0, fmt.Errorf("%s is a directory", path)
	case err == nil && !fi.Mode().IsRegular():
		return path, inPlace, 0, nil
	case err == nil:
		target, err := filepath.EvalSymlinks(path)
		if err != nil {
			return "", 0, 0, fmt.Errorf("%s: %w", path, cause(err))
		}
		return target, regular, fi.Mode().Perm(), nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", 0, 0, fmt.Errorf("%s: %w", path, cause(err))
	}
	p := path
	for range maxLinks {
		li, err := os.Lstat(p)
		if err != nil || li.Mode()&fs.ModeSymlink == 0 {
			return p, missing, 0o644, nil // what numpy.save gives
		}
		l, err := os.Readlink(p)
		if err != nil {
			return "", 0, 0, fmt.Errorf("%s: %w", path, cause(err))
		}
		if !filepath.IsAbs(l) {
			l = filepath.Join(filepath.Dir(p), l)
		}
		p = l
	}
	return "", 0, 0, fmt.Errorf("%s: too many levels of symbolic links", path)
}

// Check tells whether path can be written, without writing it: it must not
// be a directory, and a file to be created or replaced needs an existing,
// writable directory. Special files and "-" are accepted as they are.
// Callers run it before any long computation.
func Check(path string) error {
	if path == Stdout {
		return nil
	}
	target, k, _, err := resolve(path)
	if err != nil || k == inPlace {
		return err
	}
	dir := filepath.Dir(target)
	di, err := os.Stat(dir)
	if err != nil || !di.IsDir() {
		return fmt.Errorf("%s: directory %s does not exist", path, dir)
	}
	return probe(path, dir)
}

// probe creates and removes a file in dir, as the write will: the only
// portable test that dir is writable.
func probe(path, dir string) error {
	f, err := os.CreateTemp(dir, ".fastattn-probe-*")
	if err != nil {
		return fmt.Errorf("%s: cannot create files in %s: %w", path, dir, cause(err))
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// SameFile reports whether two output paths name one file, following
// symbolic links.
func SameFile(a, b string) bool {
	if a == Stdout || b == Stdout {
		return a == b
	}
	if fa, err := os.Stat(a); err == nil {
		if fb, err := os.Stat(b); err == nil {
			return os.SameFile(fa, fb)
		}
	}
	ta, _, _, err1 := resolve(a)
	tb, _, _, err2 := resolve(b)
	if err1 != nil || err2 != nil {
		return false
	}
	aa, err1 := filepath.Abs(ta)
	ab, err2 := filepath.Abs(tb)
	return err1 == nil && err2 == nil && aa == ab
}

// WriteAll writes every file, or, if one cannot be written, none of the
// regular ones: each is filled into a temporary file beside its target,
// and the temporaries are renamed into place only once all are complete.
// Special files and "-" (written to stdout) cannot be replaced atomically;
// they are written last, after every rename.
func WriteAll(files []File, stdout io.Writer) error {
	type staged struct {
		f           File
		target, tmp string
	}
	var regular, inPlaces []staged
	defer func() {
		for _, s := range regular {
			os.Remove(s.tmp) // no-op once renamed
		}
	}()
	for _, f := range files {
		if f.Path == Stdout {
			inPlaces = append(inPlaces, staged{f: f})
			continue
		}
		target, k, mode, err := resolve(f.Path)
		if err != nil {
			return err
		}
		if k == inPlace {
			inPlaces = append(inPlaces, staged{f: f, target: target})
			continue
		}
		tmp, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".*.tmp")
		if err != nil {
			return fmt.Errorf("writing %s: %w", f.Path, cause(err))
		}
		regular = append(regular, staged{f: f, target: target, tmp: tmp.Name()})
		err = f.Fill(tmp)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Chmod(tmp.Name(), mode)
		}
		if err != nil {
			return fmt.Errorf("writing %s: %w", f.Path, cause(err))
		}
	}
	var failed []string
	for _, s := range regular {
		if err := os.Rename(s.tmp, s.target); err != nil {
			failed = append(failed, s.f.Path)
		}
	}
	if failed != nil {
		return fmt.Errorf("could not move %s into place", strings.Join(failed, ", "))
	}
	for _, s := range inPlaces {
		if err := writeInPlace(s.f, s.target, stdout); err != nil {
			return err
		}
	}
	return nil
}

func writeInPlace(f File, target string, stdout io.Writer) error {
	if f.Path == Stdout {
		if err := f.Fill(stdout); err != nil {
			return fmt.Errorf("writing standard output: %w", cause(err))
		}
		return nil
	}
	w, err := os.OpenFile(target, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("writing %s: %w", f.Path, cause(err))
	}
	err = f.Fill(w)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", f.Path, cause(err))
	}
	return nil
}

// Write writes one file through WriteAll.
func Write(path string, fill func(io.Writer) error) error {
	return WriteAll([]File{{path, fill}}, os.Stdout)
}

// JSON encodes v as indented JSON with a final newline, without escaping
// <, > and & (the output is read by people and JSON parsers, not embedded
// in HTML).
func JSON(v any) ([]byte, error) { return encode(v, "  ") }

// JSONLine encodes v as JSON on one line, with a final newline and without
// HTML escaping.
func JSONLine(v any) ([]byte, error) { return encode(v, "") }

func encode(v any, indent string) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", indent)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// JSONFile is a pending JSON output of v (encoded now, so that an encoding
// error comes before any file is written).
func JSONFile(path string, v any) (File, error) {
	b, err := JSON(v)
	if err != nil {
		return File{}, err
	}
	return File{path, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	}}, nil
}

// cause strips the path from a file-system error, which may name a
// temporary file the caller never asked for.
func cause(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

// CheckDir tells whether dir can hold output files: an existing, writable
// directory, or a name whose parent directory exists (the directory is
// created when the files are written).
func CheckDir(dir string) error {
	fi, err := os.Stat(dir)
	if err == nil && !fi.IsDir() {
		return fmt.Errorf("%s exists and is not a directory", dir)
	}
	probeIn := dir
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: %w", dir, cause(err))
		}
		parent := filepath.Dir(filepath.Clean(dir))
		if pi, err := os.Stat(parent); err != nil || !pi.IsDir() {
			return fmt.Errorf("%s: parent directory %s does not exist", dir, parent)
		}
		probeIn = parent
	}
	return probe(dir, probeIn)
}

// WriteDir creates dir if needed and writes files (paths relative to dir)
// all or none; a directory it created is removed again on failure.
func WriteDir(dir string, files []File) error {
	_, statErr := os.Stat(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, cause(err))
	}
	in := make([]File, len(files))
	for i, f := range files {
		in[i] = File{filepath.Join(dir, f.Path), f.Fill}
	}
	err := WriteAll(in, os.Stdout)
	if err != nil && errors.Is(statErr, fs.ErrNotExist) {
		os.Remove(dir) // only if still empty
	}
	return err
}
