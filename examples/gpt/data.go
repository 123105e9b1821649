package main

// Training data: the Go distribution's own source tree, split by file into
// training and validation sets with a fixed seed, one token per byte.

import (
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

// Dataset is the concatenated bytes of the training and validation files.
type Dataset struct {
	Train, Val           []byte
	TrainFiles, ValFiles int
}

// defaultDataDir is $(go env GOROOT)/src: the Go distribution's own
// source, present wherever the project builds. Without a go command on
// the path it falls back to the GOROOT this program was built with.
func defaultDataDir() string {
	if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
		if root := strings.TrimSpace(string(out)); root != "" {
			return filepath.Join(root, "src")
		}
	}
	return filepath.Join(runtime.GOROOT(), "src")
}

// LoadDataset reads every .go file under dir (skipping testdata), sorts
// the paths, shuffles them with seed and puts valFrac of them (at least
// one) in the validation set.
func LoadDataset(dir string, valFrac float64, seed uint64) (*Dataset, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == "testdata" {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the data directory: %w", err)
	}
	if len(paths) < 2 {
		return nil, fmt.Errorf("data directory %s has %d .go files; need at least 2 (one for validation)", dir, len(paths))
	}
	slices.Sort(paths)
	rng := rand.New(rand.NewPCG(seed, 0xda7a))
	rng.Shuffle(len(paths), func(i, j int) { paths[i], paths[j] = paths[j], paths[i] })
	nVal := max(1, int(math.Round(valFrac*float64(len(paths)))))
	ds := &Dataset{ValFiles: nVal, TrainFiles: len(paths) - nVal}
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		if i < nVal {
			ds.Val = append(ds.Val, b...)
		} else {
			ds.Train = append(ds.Train, b...)
		}
	}
	return ds, nil
}

// Batch draws batch random windows of ctx+1 bytes from data: inputs and
// the targets shifted by one.
func Batch(data []byte, batch, ctx int, rng *rand.Rand) (tokens, targets []byte) {
	tokens, targets = make([]byte, batch*ctx), make([]byte, batch*ctx)
	for b := range batch {
		o := rng.IntN(len(data) - ctx)
		copy(tokens[b*ctx:], data[o:o+ctx])
		copy(targets[b*ctx:], data[o+1:o+ctx+1])
	}
	return tokens, targets
}

// UnigramBitsPerByte fits byte frequencies on train (add-one smoothing)
// and returns the cross-entropy of val under them in bits per byte: what
// a model that ignores context achieves.
func UnigramBitsPerByte(train, val []byte) float64 {
	var counts [256]float64
	for _, b := range train {
		counts[b]++
	}
	total := float64(len(train)) + 256
	var bits float64
	for _, b := range val {
		bits -= math.Log2((counts[b] + 1) / total)
	}
	return bits / float64(len(val))
}
