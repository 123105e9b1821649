package exact

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/reference"
)

// TestFloat32HugeLogits covers logits near float32's limits with scales
// that are not powers of two: the row max must be rounded as the exp kernel
// rounds, or the largest entry's exponent leaves [-88, 88] (NaN, or a row
// wrongly reported as having no keys). Found by review.
func TestFloat32HugeLogits(t *testing.T) {
	cases := []struct {
		q, k  []float32
		scale float64
	}{
		{[]float32{1e5}, []float32{1e5, -1e5}, 1.0 / 3},
		{[]float32{3e5}, []float32{1e5, -1e5}, 0.1},
		{[]float32{100, -100}, []float32{100, 50}, 1e30},
		{[]float32{1e15}, []float32{1e15, 3e14, -1e15}, 0.7},
	}
	for ci, c := range cases {
		m := len(c.k)
		p := &attn.Problem[float32]{Heads: 1, N: len(c.q), M: m, D: 1, E: 1, Q: c.q, K: c.k, V: make([]float32, m), Scale: c.scale}
		for j := range m {
			p.V[j] = float32(j + 1)
		}
		out := attn.NewOutput(p)
		if _, err := (Method{}).Forward32(context.Background(), p, out); err != nil {
			t.Fatalf("case %d: %v", ci, err)
		}
		want, _ := reference.Attention(p)
		for i, w := range want {
			if got := float64(out.O[i]); math.IsNaN(got) || math.Abs(got-w) > 1e-6*float64(m) || math.IsInf(out.LSE[i], 0) {
				t.Fatalf("case %d row %d: output %g (LSE %g), reference %g", ci, i, got, out.LSE[i], w)
			}
		}
	}
	// Logits beyond float32's range are an error, not NaN.
	p := &attn.Problem[float32]{Heads: 1, N: 1, M: 2, D: 2, E: 1, Q: []float32{3e19, 3e19}, K: []float32{3e19, 3e19, 1, 1}, V: []float32{1, 2}, Scale: 1}
	if _, err := (Method{}).Forward32(context.Background(), p, attn.NewOutput(p)); !errors.Is(err, attn.ErrBadProblem) {
		t.Fatalf("overflowing logits: got %v", err)
	}
}
