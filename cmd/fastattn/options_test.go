package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/npyfile"
	"github.com/fastattn/fastattn/internal/reference"
)

// writeBoolNpy writes a |b1 .npy file as numpy.save does.
func writeBoolNpy(t *testing.T, path string, data []bool, shape ...int) {
	t.Helper()
	dims := make([]string, len(shape))
	for i, s := range shape {
		dims[i] = fmt.Sprint(s)
	}
	sh := strings.Join(dims, ", ")
	if len(shape) == 1 {
		sh += ","
	}
	hdr := fmt.Sprintf("{'descr': '|b1', 'fortran_order': False, 'shape': (%s), }", sh)
	for (10+len(hdr)+1)%64 != 0 {
		hdr += " "
	}
	hdr += "\n"
	var b bytes.Buffer
	b.WriteString("\x93NUMPY\x01\x00")
	binary.Write(&b, binary.LittleEndian, uint16(len(hdr)))
	b.WriteString(hdr)
	for _, x := range data {
		if x {
			b.WriteByte(1)
		} else {
			b.WriteByte(0)
		}
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRunRealModelOptions runs `run` and `grad` with grouped-query shapes,
// --causal-align, --window, a boolean or additive --mask and --sinks, and
// compares with the float64 reference.
func TestRunRealModelOptions(t *testing.T) {
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	r := rand.New(rand.NewPCG(7, 8))
	const b, hq, hkv, n, m, d = 2, 4, 2, 5, 8, 4
	q := writeRandom(t, path("q.npy"), r, false, b, hq, n, d)
	k := writeRandom(t, path("k.npy"), r, false, b, hkv, m, d)
	v := writeRandom(t, path("v.npy"), r, false, b, hkv, m, d)
	dO := writeRandom(t, path("do.npy"), r, false, b, hq, n, d)
	sinks := writeRandom(t, path("sinks.npy"), r, false, hq)
	boolMask := make([]bool, n*m)
	for i := range boolMask {
		boolMask[i] = r.IntN(3) != 0
	}
	writeBoolNpy(t, path("mask.npy"), boolMask, n, m)
	addMask := writeRandom(t, path("addmask.npy"), r, true, hq, 1, m)
	addMask[3] = math.Inf(-1)
	if err := npyfile.Write(path("addmask.npy"), []int{hq, 1, m}, toF32(addMask)); err != nil {
		t.Fatal(err)
	}
	base := []string{"--q", path("q.npy"), "--k", path("k.npy"), "--v", path("v.npy"), "--method", "exact"}
	for _, c := range []struct {
		name  string
		flags []string
		setup func(p *attn.Problem[float64])
	}{
		{"gqa-top-left", []string{"--causal", "--causal-align", "top-left"}, func(p *attn.Problem[float64]) {
			p.Causal, p.CausalAlign = true, attn.TopLeft
		}},
		{"window", []string{"--causal", "--window", "2,-1"}, func(p *attn.Problem[float64]) {
			p.Causal, p.Window = true, &attn.Window{Left: 2, Right: -1}
		}},
		{"bool-mask-sinks", []string{"--mask", path("mask.npy"), "--sinks", path("sinks.npy")}, func(p *attn.Problem[float64]) {
			p.Mask = &attn.Mask{Bool: boolMask, RowStride: m, ColStride: 1}
			p.Sinks = sinks
		}},
		{"additive-mask", []string{"--mask", path("addmask.npy")}, func(p *attn.Problem[float64]) {
			p.Mask = &attn.Mask{Add: addMask, HeadsPerBatch: hq, HeadStride: m, ColStride: 1}
		}},
	} {
		p := &attn.Problem[float64]{Heads: b * hq, KVHeads: b * hkv, N: n, M: m, D: d, E: d, Q: q, K: k, V: v, Scale: 0.5}
		c.setup(p)
		code, _, stderr := cli(t, append(append([]string{"run", "--out", path("o.npy")}, base...), c.flags...)...)
		if code != 0 {
			t.Fatalf("%s: run exit %d: %s", c.name, code, stderr)
		}
		want, _ := reference.Attention(p)
		closeTo(t, c.name+" out", path("o.npy"), want)
		args := append(append([]string{"grad", "--dout", path("do.npy"), "--dq", path("dq.npy"), "--dk", path("dk.npy"), "--dv", path("dv.npy")}, base...), c.flags...)
		if p.Sinks != nil {
			args = append(args, "--dsinks", path("ds.npy"))
		}
		if code, _, stderr := cli(t, args...); code != 0 {
			t.Fatalf("%s: grad exit %d: %s", c.name, code, stderr)
		}
		g := reference.Gradient(p, dO)
		closeTo(t, c.name+" dq", path("dq.npy"), g.DQ)
		closeTo(t, c.name+" dk", path("dk.npy"), g.DK)
		closeTo(t, c.name+" dv", path("dv.npy"), g.DV)
		if p.Sinks != nil {
			closeTo(t, c.name+" dsinks", path("ds.npy"), g.DSinks)
		}
	}
	for _, bad := range [][]string{
		{"--causal-align", "middle"}, {"--window", "3"}, {"--window", "a,b"}, {"--window", "-2,0"},
		{"--mask", path("q.npy")}, {"--sinks", path("mask.npy")}, {"--sinks", path("q.npy")}, {"--mask", path("missing.npy")},
	} {
		code, _, stderr := cli(t, append(append([]string{"run", "--out", path("bad.npy")}, base...), bad...)...)
		if code != 2 || stderr == "" {
			t.Errorf("run %v: exit %d (%q), want 2 with a message", bad, code, stderr)
		}
		if _, err := os.Stat(path("bad.npy")); err == nil {
			t.Errorf("run %v wrote an output", bad)
		}
	}
}

func toF32(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

func closeTo(t *testing.T, what, file string, want []float64) {
	t.Helper()
	a, err := npyfile.Read(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.F64) != len(want) {
		t.Fatalf("%s: %d values, want %d", what, len(a.F64), len(want))
	}
	for i, w := range want {
		if math.Abs(a.F64[i]-w) > 1e-10*(1+math.Abs(w)) {
			t.Fatalf("%s[%d] = %g, reference %g", what, i, a.F64[i], w)
		}
	}
}

// TestRunSixteenBit runs `run` on float16 (<f2) keys and values with
// float32 and float16 queries, and on bfloat16 bits (<u2 with --bf16),
// against the reference on the rounded values.
func TestRunSixteenBit(t *testing.T) {
	dir := t.TempDir()
	path := func(name string) string { return filepath.Join(dir, name) }
	r := rand.New(rand.NewPCG(9, 8))
	const hq, hkv, n, m, d = 4, 2, 3, 50, 8
	q := writeRandom(t, path("q32.npy"), r, true, hq, n, d)
	k := writeRandom(t, path("k32.npy"), r, true, hkv, m, d)
	v := writeRandom(t, path("v32.npy"), r, true, hkv, m, d)
	for _, f := range []attn.HalfFormat{attn.Float16, attn.BFloat16} {
		round := func(name string, x []float64, shape ...int) []uint16 {
			h := make([]uint16, len(x))
			for i, v := range x {
				h[i] = attn.Float32ToHalf(f, float32(v))
			}
			var data any = h
			if f == attn.Float16 {
				data = npyfile.Float16(h)
			}
			if err := npyfile.Write(path(name), shape, data); err != nil {
				t.Fatal(err)
			}
			return h
		}
		q16 := round("q16.npy", q, hq, n, d)
		k16 := round("k16.npy", k, hkv, m, d)
		v16 := round("v16.npy", v, hkv, m, d)
		for _, qName := range []string{"q32.npy", "q16.npy"} {
			args := []string{"run", "--q", path(qName), "--k", path("k16.npy"), "--v", path("v16.npy"), "--out", path("o.npy"), "--method", "exact", "--causal"}
			if f == attn.BFloat16 {
				if code, _, _ := cli(t, args...); code != 2 {
					t.Errorf("uint16 inputs without --bf16: exit %d, want 2", code)
				}
				args = append(args, "--bf16")
			}
			if code, _, stderr := cli(t, args...); code != 0 {
				t.Fatalf("%v %s: exit %d: %s", f, qName, code, stderr)
			}
			q32 := make([]float32, len(q))
			for i := range q {
				q32[i] = float32(q[i])
				if qName == "q16.npy" {
					q32[i] = attn.HalfToFloat32(f, q16[i])
				}
			}
			p := &attn.Problem[float32]{Heads: hq, KVHeads: hkv, N: n, M: m, D: d, E: d, Q: q32,
				KVFormat: f, K16: k16, V16: v16, Scale: 1 / math.Sqrt(d), Causal: true}
			want, _ := reference.Attention(p)
			a, err := npyfile.Read(path("o.npy"))
			if err != nil {
				t.Fatal(err)
			}
			got := a.F32
			u := 0.0 // float32 output: within the float32 computation's 3e-6
			if qName == "q16.npy" {
				bits := a.F16
				if f == attn.BFloat16 {
					bits = a.U16
				}
				got = make([]float32, len(bits))
				for i, h := range bits {
					got[i] = attn.HalfToFloat32(f, h)
				}
				u = 0x1p-11 // rounded to the storage format: half its ulp
				if f == attn.BFloat16 {
					u = 0x1p-8
				}
			}
			if len(got) != len(want) {
				t.Fatalf("%v %s: output %s of %d values, want %d", f, qName, a.DType(), len(got), len(want))
			}
			for i, w := range want {
				if math.Abs(float64(got[i])-w) > u*math.Abs(w)+3e-6 {
					t.Fatalf("%v %s: out[%d] = %g, reference %g", f, qName, i, got[i], w)
				}
			}
		}
	}
	if code, _, _ := cli(t, "run", "--q", path("q32.npy"), "--k", path("k16.npy"), "--v", path("v32.npy"), "--out", path("x.npy")); code != 2 {
		t.Errorf("mixed K and V dtypes: exit %d, want 2", code)
	}
	if code, _, _ := cli(t, "run", "--q", path("q32.npy"), "--k", path("k16.npy"), "--v", path("v16.npy"), "--out", path("x.npy"), "--method", "exact", "--bf16", "--repeat", "1"); code != 2 {
		t.Errorf("--repeat with 16-bit keys and values: exit %d, want 2", code)
	}
	if _, err := os.Stat(path("x.npy")); err == nil {
		t.Errorf("a run refused for its flags wrote its output")
	}
}
