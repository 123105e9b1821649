package fastattn

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
)

func TestAttendIntoWritesTheCallersTensors(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	fill := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		return x
	}
	q, _ := NewTensor(fill(2*5*4), 2, 5, 4)
	k, _ := NewTensor(fill(2*6*4), 2, 6, 4)
	v, _ := NewTensor(fill(2*6*3), 2, 6, 3)
	opts := Options{Causal: true, KeyLengths: []int{6, 0}}
	want, err := Attend(context.Background(), q, k, v, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Garbage in the caller's buffers must not survive (rows without keys).
	outData, lseData := fill(2*5*3), make([]float64, 2*5)
	for i := range lseData {
		lseData[i] = 42
	}
	out, _ := NewTensor(outData, 2, 5, 3)
	lse, _ := NewTensor(lseData, 2, 5)
	got, err := AttendInto(context.Background(), q, k, v, out, lse, opts)
	if err != nil {
		t.Fatal(err)
	}
	if &got.Out.Data[0] != &outData[0] || &got.LSE.Data[0] != &lseData[0] {
		t.Fatal("the result does not use the caller's tensors")
	}
	for i := range outData {
		if outData[i] != want.Out.Data[i] {
			t.Fatalf("out[%d] = %v, want %v", i, outData[i], want.Out.Data[i])
		}
	}
	for i := range lseData {
		if lseData[i] != want.LSE.Data[i] && !(math.IsInf(lseData[i], -1) && math.IsInf(want.LSE.Data[i], -1)) {
			t.Fatalf("lse[%d] = %v, want %v", i, lseData[i], want.LSE.Data[i])
		}
	}

	bad, _ := NewTensor(make([]float32, 30), 5, 6)
	if _, err := AttendInto(context.Background(), q, k, v, bad, lse, opts); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("out of the wrong shape: %v", err)
	}
	badLSE, _ := NewTensor(make([]float64, 10), 10)
	if _, err := AttendInto(context.Background(), q, k, v, out, badLSE, opts); !errors.Is(err, ErrInvalidInput) {
		t.Fatalf("lse of the wrong shape: %v", err)
	}
}
