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
		"kv heads":     func(p *Problem[float32]) { p.KVHeads = 2 },
		"window":       func(p *Problem[float32]) { p.Window = &Window{-2, 0} },
		"sinks":        func(p *Problem[float32]) { p.Sinks = []float64{0, 1} },
		"sink NaN":     func(p *Problem[float32]) { p.Sinks = []float64{math.NaN()} },
		"mask empty":   func(p *Problem[float32]) { p.Mask = &Mask{} },
		"mask short":   func(p *Problem[float32]) { p.Mask = &Mask{Bool: make([]bool, 5), RowStride: 3, ColStride: 1} },
		"mask +Inf":    func(p *Problem[float32]) { p.Mask = &Mask{Add: []float64{math.Inf(1)}} },
	}
	for name, spoil := range bad {
		p := good()
		spoil(p)
		if err := p.Validate(); !errors.Is(err, ErrBadProblem) {
			t.Errorf("%s: Validate() = %v, want ErrBadProblem", name, err)
		}
	}
}

// TestKeyRange pins the window and alignment semantics: FlashAttention-2's
// window_size, query i sees i + L - n - left <= j <= i + L - n + right
// (bottom-right) or i - left <= j <= i + right (top-left).
func TestKeyRange(t *testing.T) {
	type rng [2]int
	cases := []struct {
		name   string
		n, m   int
		causal bool
		align  CausalAlignment
		w      *Window
		want   []rng
	}{
		{"top-left-causal-decode", 2, 5, true, TopLeft, nil, []rng{{0, 1}, {0, 2}}},
		{"top-left-causal-tall", 4, 2, true, TopLeft, nil, []rng{{0, 1}, {0, 2}, {0, 2}, {0, 2}}},
		{"window-1-0", 4, 4, false, BottomRight, &Window{1, 0}, []rng{{0, 1}, {0, 2}, {1, 3}, {2, 4}}},
		{"window-causal-caps-right", 3, 3, true, BottomRight, &Window{0, 5}, []rng{{0, 1}, {1, 2}, {2, 3}}},
		{"window-decode-bottom-right", 2, 6, false, BottomRight, &Window{1, 1}, []rng{{3, 6}, {4, 6}}},
		{"window-unbounded-left", 2, 6, false, TopLeft, &Window{-1, 1}, []rng{{0, 2}, {0, 3}}},
		{"window-tall-empty", 4, 2, false, BottomRight, &Window{0, 0}, []rng{{0, 0}, {0, 0}, {0, 1}, {1, 2}}},
		{"window-unbounded", 2, 3, false, BottomRight, &Window{-1, -1}, []rng{{0, 3}, {0, 3}}},
	}
	for _, c := range cases {
		p := &Problem[float64]{Heads: 1, N: c.n, M: c.m, Causal: c.causal, CausalAlign: c.align, Window: c.w}
		for i, want := range c.want {
			lo, hi := p.KeyRange(0, i)
			if (rng{lo, hi}) != want {
				t.Errorf("%s: KeyRange(0, %d) = [%d, %d), want %v", c.name, i, lo, hi, want)
			}
		}
	}
}

func TestFeatures(t *testing.T) {
	p := &Problem[float64]{Heads: 4, KVHeads: 4, N: 3, M: 3, Causal: true, CausalAlign: TopLeft}
	if f := p.Features(); f != 0 {
		t.Errorf("top-left with n == m and no GQA: features %v, want none", f)
	}
	p.KVHeads, p.M, p.Window, p.Sinks = 2, 5, &Window{-1, -1}, []float64{math.Inf(-1)}
	if f := p.Features(); f != GQA|TopLeftAlign {
		t.Errorf("features %v, want GQA and top-left", f)
	}
	err := CheckSupport(fakeMethod{}, p, false)
	var ue *UnsupportedError
	if !errors.Is(err, ErrUnsupported) || !errors.As(err, &ue) || ue.Missing != GQA|TopLeftAlign {
		t.Errorf("CheckSupport = %v", err)
	}
}

type fakeMethod struct{ Method }

func (fakeMethod) Name() string { return "fake" }
