package attn

import (
	"errors"
	"math"
	"testing"
)

// TestKeyLimit pins the mask semantics independently of any method: the
// reference and every method share KeyLimit, so only this test catches a
// change in what "causal" means.
func TestKeyLimit(t *testing.T) {
	cases := []struct {
		name    string
		n, m    int
		causal  bool
		keyLens []int
		want    [][]int // per head, per row
	}{
		{"full", 2, 3, false, nil, [][]int{{3, 3}}},
		{"causal-square", 3, 3, true, nil, [][]int{{1, 2, 3}}},
		// Bottom-right: the last query sees all keys, earlier ones one fewer each.
		{"causal-decode", 2, 5, true, nil, [][]int{{4, 5}}},
		// More queries than keys: the first rows see nothing.
		{"causal-tall", 4, 2, true, nil, [][]int{{0, 0, 1, 2}}},
		{"padding", 2, 5, false, []int{3, 0}, [][]int{{3, 3}, {0, 0}}},
		// Padding and causal: aligned to the valid keys of each head.
		{"padding-causal", 2, 5, true, []int{3, 5}, [][]int{{2, 3}, {4, 5}}},
	}
	for _, c := range cases {
		p := &Problem[float64]{Heads: len(c.want), N: c.n, M: c.m, Causal: c.causal, KeyLens: c.keyLens}
		for h, rows := range c.want {
			for i, want := range rows {
				if got := p.KeyLimit(h, i); got != want {
					t.Errorf("%s: KeyLimit(%d, %d) = %d, want %d", c.name, h, i, got, want)
				}
			}
		}
	}
}

func TestValidate(t *testing.T) {
	good := func() *Problem[float32] {
		return &Problem[float32]{Heads: 1, N: 2, M: 3, D: 2, E: 1,
			Q: make([]float32, 4), K: make([]float32, 6), V: make([]float32, 3), Scale: 1}
	}
	if err := good().Validate(); err != nil {
		t.Fatalf("valid problem rejected: %v", err)
	}
	bad := map[string]func(p *Problem[float32]){
		"zero n":       func(p *Problem[float32]) { p.N = 0 },
		"short Q":      func(p *Problem[float32]) { p.Q = p.Q[:3] },
		"long V":       func(p *Problem[float32]) { p.V = make([]float32, 4) },
		"scale 0":      func(p *Problem[float32]) { p.Scale = 0 },
		"scale NaN":    func(p *Problem[float32]) { p.Scale = math.NaN() },
		"negative eps": func(p *Problem[float32]) { p.Eps = -1 },
		"eps 1":        func(p *Problem[float32]) { p.Eps = 1 },
		"NaN in K":     func(p *Problem[float32]) { p.K[4] = float32(math.NaN()) },
		"Inf in V":     func(p *Problem[float32]) { p.V[2] = float32(math.Inf(-1)) },
		"key lens":     func(p *Problem[float32]) { p.KeyLens = []int{1, 2} },
		"key len > m":  func(p *Problem[float32]) { p.KeyLens = []int{4} },
	}
	for name, spoil := range bad {
		p := good()
		spoil(p)
		if err := p.Validate(); !errors.Is(err, ErrBadProblem) {
			t.Errorf("%s: Validate() = %v, want ErrBadProblem", name, err)
		}
	}
}
