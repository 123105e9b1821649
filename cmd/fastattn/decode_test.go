package main

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/npyfile"
)

func readFloats(t *testing.T, path string) ([]float64, []int) {
	t.Helper()
	a, err := npyfile.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if a.F64 != nil {
		return a.F64, a.Shape
	}
	x := make([]float64, len(a.F32))
	for i, v := range a.F32 {
		x[i] = float64(v)
	}
	return x, a.Shape
}

// TestDecodeEqualsRunCausal: decoding the files token by token gives run
// --causal's output: exact to float rounding, poly and auto within the
// reported bound relative to max |V| over each row's keys.
func TestDecodeEqualsRunCausal(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(3, 4))
	p := func(name string) string { return filepath.Join(dir, name) }
	for _, c := range []struct {
		lead       []int
		n, d, e    int
		f32        bool
		prefill    string
		scale, eps string
		kvHeads    int    // grouped-query attention: K and V heads
		window     string // --window
		sinks      bool
	}{
		{nil, 300, 4, 3, false, "0", "1/d", "1e-3", 0, "", false},
		{[]int{2}, 500, 8, 5, true, "100", "1/d", "1e-4", 0, "", false},
		{[]int{2, 2}, 260, 6, 6, true, "259", "0.1", "1e-3", 0, "", false},
		{[]int{2, 4}, 300, 5, 4, false, "50", "1/d", "1e-3", 2, "20,0", true},
		{[]int{3}, 200, 4, 2, true, "1", "0.3", "1e-3", 1, "-1,0", true},
	} {
		shape := func(cols int) []int { return append(slices.Clone(c.lead), c.n, cols) }
		kvShape := func(cols int) []int {
			s := shape(cols)
			if c.kvHeads > 0 {
				s[len(s)-3] = c.kvHeads
			}
			return s
		}
		writeRandom(t, p("q.npy"), r, c.f32, shape(c.d)...)
		writeRandom(t, p("k.npy"), r, c.f32, kvShape(c.d)...)
		v := writeRandom(t, p("v.npy"), r, c.f32, kvShape(c.e)...)
		in := []string{"--q", p("q.npy"), "--k", p("k.npy"), "--v", p("v.npy"), "--scale", c.scale}
		if c.window != "" {
			in = append(in, "--window", c.window)
		}
		if c.sinks {
			writeRandom(t, p("sinks.npy"), r, false, shape(1)[len(shape(1))-3])
			in = append(in, "--sinks", p("sinks.npy"))
		}
		if code, _, stderr := cli(t, append([]string{"run", "--causal", "--method", "exact", "--out", p("run.npy")}, in...)...); code != 0 {
			t.Fatalf("run: exit %d: %s", code, stderr)
		}
		want, _ := readFloats(t, p("run.npy"))
		for _, method := range []string{"exact", "poly", "auto"} {
			args := append([]string{"decode", "--method", method, "--prefill", c.prefill, "--eps", c.eps,
				"--out", p("dec.npy"), "--lse", p("lse.npy"), "--report", p("r.json")}, in...)
			code, stdout, stderr := cli(t, args...)
			if code != 0 {
				t.Fatalf("%+v %s: exit %d: %s", c, method, code, stderr)
			}
			got, gotShape := readFloats(t, p("dec.npy"))
			if !slices.Equal(gotShape, shape(c.e)) {
				t.Fatalf("output shape %v, want %v", gotShape, shape(c.e))
			}
			var rep decodeReport
			b, _ := os.ReadFile(p("r.json"))
			if err := json.Unmarshal(b, &rep); err != nil {
				t.Fatal(err)
			}
			if rep.Steps != c.n-atoi(c.prefill) || len(rep.PerStep) == 0 || !strings.Contains(stdout, "tokens/s") {
				t.Fatalf("%s: report %s, stdout %q", method, b, stdout)
			}
			tol := 1e-12
			if c.f32 {
				tol = 3e-6
			}
			heads := len(want) / (c.n * c.e)
			group := 1
			if c.kvHeads > 0 {
				group = shape(1)[len(shape(1))-3] / c.kvHeads
			}
			left := c.n
			if c.window != "" && !strings.HasPrefix(c.window, "-1") {
				left = atoi(strings.Split(c.window, ",")[0])
			}
			colMax := make([]float64, c.e)
			for h := range heads {
				for i := range c.n {
					for col := range c.e {
						// The guarantee's unit: max |V| over the row's keys.
						colMax[col] = 0
						for j := max(0, i-left); j <= i; j++ {
							colMax[col] = max(colMax[col], math.Abs(v[(h/group*c.n+j)*c.e+col]))
						}
						x := (h*c.n+i)*c.e + col
						if err := math.Abs(got[x] - want[x]); err > tol+float64(rep.Bound)*colMax[col] {
							t.Fatalf("%+v %s: head %d token %d column %d: %g, run --causal %g (bound %g)", c, method, h, i, col, got[x], want[x], rep.Bound)
						}
					}
				}
			}
			if method == "poly" && (rep.PolyRows == 0 || rep.Bound == 0 || float64(rep.Bound) > atof(c.eps)) {
				t.Fatalf("poly: %d rows from the polynomial state, bound %g", rep.PolyRows, rep.Bound)
			}
		}
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = 10*n + int(c-'0')
	}
	return n
}

func atof(s string) float64 {
	var x float64
	if err := json.Unmarshal([]byte(s), &x); err != nil {
		panic(err)
	}
	return x
}

func TestDecodeRejectsBadInput(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(5, 6))
	p := func(name string) string { return filepath.Join(dir, name) }
	writeRandom(t, p("q.npy"), r, true, 2, 10, 4)
	writeRandom(t, p("k.npy"), r, true, 2, 10, 4)
	writeRandom(t, p("v.npy"), r, true, 2, 10, 3)
	writeRandom(t, p("k9.npy"), r, true, 2, 9, 4)
	writeRandom(t, p("k64.npy"), r, false, 2, 10, 4)
	base := map[string]string{"--q": p("q.npy"), "--k": p("k.npy"), "--v": p("v.npy"), "--out": p("o.npy")}
	for _, c := range []struct {
		override []string
		msg      string
	}{
		{[]string{"--k", p("k9.npy")}, "one sequence"},
		{[]string{"--k", p("k64.npy")}, "dtype"},
		{[]string{"--prefill", "11"}, "prefill"},
		{[]string{"--method", "anytemp"}, "method"},
		{[]string{"--eps", "1e-9", "--method", "poly"}, "eps"},
		{[]string{"--window", "-2,0"}, "window"},
		{[]string{"--key-lengths", "3"}, "do not apply"},
		{[]string{"--causal"}, "always causal"},
		{[]string{"--causal-align", "top-left"}, "always causal"},
		{[]string{"--out", ""}, "--out"},
	} {
		code, _, stderr := cli(t, withOverrides("decode", base, c.override)...)
		if code != 2 || !strings.Contains(stderr, c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.override, code, stderr, c.msg)
		}
		if _, err := os.Stat(p("o.npy")); err == nil {
			t.Fatalf("%v: wrote an output", c.override)
		}
	}
}

// TestDecodeHelpOmitsCausal: decode's help lists run's attention flags
// but not --causal and --causal-align, which it refuses.
func TestDecodeHelpOmitsCausal(t *testing.T) {
	code, stdout, _ := cli(t, "decode", "-h")
	if code != 0 || !strings.Contains(stdout, "--window") || !strings.Contains(stdout, "--sinks") {
		t.Fatalf("decode -h: exit %d, %q", code, stdout)
	}
	if strings.Contains(stdout, "\n  --causal") {
		t.Fatalf("decode -h lists a causal flag:\n%s", stdout)
	}
}

// TestDecodeSixteenBit: float16 keys and values (and bfloat16 bits with
// --bf16) make a 16-bit cache whose output equals run --causal on the same
// files, for float32 and 16-bit queries.
func TestDecodeSixteenBit(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	r := rand.New(rand.NewPCG(7, 8))
	const hq, hkv, n, d = 4, 2, 200, 8
	q := writeRandom(t, p("q32.npy"), r, true, hq, n, d)
	k := writeRandom(t, p("k32.npy"), r, true, hkv, n, d)
	v := writeRandom(t, p("v32.npy"), r, true, hkv, n, d)
	for _, f := range []attn.HalfFormat{attn.Float16, attn.BFloat16} {
		write := func(name string, x []float64, shape ...int) {
			h := make([]uint16, len(x))
			for i, y := range x {
				h[i] = attn.Float32ToHalf(f, float32(y))
			}
			var data any = h
			if f == attn.Float16 {
				data = npyfile.Float16(h)
			}
			if err := npyfile.Write(p(name), shape, data); err != nil {
				t.Fatal(err)
			}
		}
		write("q16.npy", q, hq, n, d)
		write("k16.npy", k, hkv, n, d)
		write("v16.npy", v, hkv, n, d)
		for _, qName := range []string{"q32.npy", "q16.npy"} {
			in := []string{"--q", p(qName), "--k", p("k16.npy"), "--v", p("v16.npy"), "--method", "exact"}
			if f == attn.BFloat16 {
				in = append(in, "--bf16")
			}
			if code, _, stderr := cli(t, append([]string{"run", "--causal", "--out", p("run.npy")}, in...)...); code != 0 {
				t.Fatalf("run: exit %d: %s", code, stderr)
			}
			if code, _, stderr := cli(t, append([]string{"decode", "--prefill", "50", "--out", p("dec.npy"), "--report", p("r.json")}, in...)...); code != 0 {
				t.Fatalf("decode %v %s: exit %d: %s", f, qName, code, stderr)
			}
			want, ws := npyfile.Read(p("run.npy"))
			got, gs := npyfile.Read(p("dec.npy"))
			if ws != nil || gs != nil || got.DType() != want.DType() || !slices.Equal(got.Shape, want.Shape) {
				t.Fatalf("%v %s: outputs %s %v (%v) and %s %v (%v)", f, qName, got.DType(), got.Shape, gs, want.DType(), want.Shape, ws)
			}
			g, w := toFloats(f, got), toFloats(f, want)
			tol := 3e-6
			if qName == "q16.npy" {
				tol = 1e-2 // both rounded to 16 bits: at most an ulp apart
			}
			for i := range w {
				if math.Abs(g[i]-w[i]) > tol*(1+math.Abs(w[i])) {
					t.Fatalf("%v %s: entry %d = %g, run --causal %g", f, qName, i, g[i], w[i])
				}
			}
			b, _ := os.ReadFile(p("r.json"))
			if !strings.Contains(string(b), `"kv_format": "`+f.String()+`"`) {
				t.Fatalf("report lacks kv_format %v: %s", f, b)
			}
		}
	}
}

// toFloats returns an output array's values (float32 or 16-bit in f).
func toFloats(f attn.HalfFormat, a npyfile.Array) []float64 {
	var x []float64
	switch {
	case a.F32 != nil:
		for _, v := range a.F32 {
			x = append(x, float64(v))
		}
	case a.F16 != nil:
		for _, h := range a.F16 {
			x = append(x, float64(attn.HalfToFloat32(attn.Float16, h)))
		}
	default:
		for _, h := range a.U16 {
			x = append(x, float64(attn.HalfToFloat32(f, h)))
		}
	}
	return x
}
