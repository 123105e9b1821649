package hardness

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// An instance written to a directory reads back as the same attention
// problem, solves, and agrees with brute force outside the gap.
func TestInstanceRoundTrip(t *testing.T) {
	inst, err := GenerateANN(rand.New(rand.NewPCG(1, 2)), ANNSpec{N: 24, M: 20, Dim: 16, T: 3, Eps: 1, Planted: 3, Decoys: 3})
	if err != nil {
		t.Fatal(err)
	}
	red, err := ReduceANN(inst.Problem)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "ann")
	meta := NewANNFile(inst, red, 1)
	if meta.Counts["yes"] < 3 {
		t.Errorf("counts %v: the 3 planted pairs should be yes", meta.Counts)
	}
	if err := WriteInstance(dir, inst.Problem.A, inst.Problem.B, &red.Attention, meta); err != nil {
		t.Fatal(err)
	}
	in, err := ReadInstance(dir)
	if err != nil {
		t.Fatal(err)
	}
	if in.Info.Kind != "ann" || in.T != 3 || in.Eps != 1 || !slices.Equal(in.Attention.Q, red.Q) || in.Attention.Threshold != red.Threshold {
		t.Fatalf("read back %+v", in.Info)
	}
	sol, err := in.Attention.Solve(context.Background(), "exact", 0)
	if err != nil {
		t.Fatal(err)
	}
	c, err := in.Check(sol.Answers)
	if err != nil {
		t.Fatal(err)
	}
	if c.DisagreeOutsideGap != 0 || c.Agree+c.InGap != 24 {
		t.Errorf("check %+v", c)
	}

	os.WriteFile(filepath.Join(dir, "instance.json"), []byte(`{"kind": "knapsack"}`), 0o644)
	if _, err := ReadInstance(dir); !errors.Is(err, ErrBadInstance) {
		t.Errorf("unknown kind: %v, want ErrBadInstance", err)
	}
	if _, err := ReadInstance(filepath.Join(dir, "nope")); !errors.Is(err, ErrBadInstance) {
		t.Errorf("missing directory: %v, want ErrBadInstance", err)
	}
}
