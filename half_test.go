package fastattn

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/fastattn/fastattn/attn"
)

// widenHalf returns the float32 values of a 16-bit tensor.
func widenHalf(h HalfTensor) Tensor[float32] {
	x := Tensor[float32]{Data: make([]float32, len(h.Data)), Shape: h.Shape}
	for i, b := range h.Data {
		x.Data[i] = attn.HalfToFloat32(h.Format, b)
	}
	return x
}

// TestAttendHalf checks 16-bit queries and output: AttendHalf and
// AttendHalfInto must give exactly the float32 output of AttendHalfKV and
// AttendHalfKVInto on the widened queries, rounded to the format (the
// arithmetic is the same), and the same LSE; AttendHalfInto allocates
// nothing after warm-up.
func TestAttendHalf(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 10))
	// A prefill (several query tiles, packed keys) and a decode step
	// (split keys).
	for _, shapes := range [][3][]int{{{1, 4, 150, 64}, {1, 2, 150, 64}, {1, 2, 150, 32}}, {{1, 8, 1, 128}, {1, 2, 3000, 128}, {1, 2, 3000, 128}}} {
		q := randTensor[float32](r, shapes[0]...)
		k := randTensor[float32](r, shapes[1]...)
		v := randTensor[float32](r, shapes[2]...)
		for _, f := range []HalfFormat{Float16, BFloat16} {
			q16, k16, v16 := toHalf(q, f), toHalf(k, f), toHalf(v, f)
			qw := widenHalf(q16)
			opts := Options{Method: Auto, Causal: true, Sinks: []float64{0, 1, 2, 3, 4, 5, 6, 7}[:shapes[0][1]]}
			res, err := AttendHalf(context.Background(), q16, k16, v16, opts)
			if err != nil {
				t.Fatal(err)
			}
			want, err := AttendHalfKV(context.Background(), qw, k16, v16, opts)
			if err != nil {
				t.Fatal(err)
			}
			// bfloat16 products (exact/bf16.go: AMX or VDPBF16PS) compute
			// differently: there the outputs must agree within the two bounds.
			products := strings.HasPrefix(fmt.Sprint(res.Report.Details["arithmetic"]), "bfloat16 on")
			if res.Report.Method != "exact" || res.Report.QOFormat != f.String() || want.Report.QOFormat != "" || res.Out.Format != f || !slices.Equal(res.Out.Shape, want.Out.Shape) || (!products && !slices.Equal(res.LSE.Data, want.LSE.Data)) {
				t.Fatalf("%v: method %s, format %v, shape %v (want %v), or LSE differs", f, res.Report.Method, res.Out.Format, res.Out.Shape, want.Out.Shape)
			}
			if u := []float64{Float16: 0x1p-11, BFloat16: 0x1p-8}[f]; res.Report.ErrorBound < want.Report.ErrorBound+u {
				t.Errorf("%v: error bound %g does not add the output's rounding %g to %g", f, res.Report.ErrorBound, u, want.Report.ErrorBound)
			}
			if products {
				var vMax float64
				for _, x := range widenHalf(v16).Data {
					vMax = max(vMax, math.Abs(float64(x)))
				}
				tol := (res.Report.ErrorBound + want.Report.ErrorBound) * vMax
				for i, x := range want.Out.Data {
					if d := math.Abs(float64(attn.HalfToFloat32(f, res.Out.Data[i]) - x)); d > tol {
						t.Fatalf("%v: AttendHalf on bfloat16 products: entry %d is %g, float32 %g: beyond the bounds' %g", f, i, attn.HalfToFloat32(f, res.Out.Data[i]), x, tol)
					}
				}
				for i, l := range want.LSE.Data {
					if math.Abs(res.LSE.Data[i]-l) > 1e-4 {
						t.Fatalf("%v: AttendHalf on bfloat16 products: LSE %d is %g, float32 %g", f, i, res.LSE.Data[i], l)
					}
				}
			}
			for i, x := range want.Out.Data {
				if products {
					break
				}
				if w := attn.Float32ToHalf(f, x); res.Out.Data[i] != w {
					t.Fatalf("%v: AttendHalf entry %d is %#04x, float32 %g rounds to %#04x", f, i, res.Out.Data[i], x, w)
				}
			}

			ws, ws32 := NewWorkspace(), NewWorkspace()
			opts.Method = ""
			out := HalfTensor{Data: make([]uint16, len(res.Out.Data)), Shape: res.Out.Shape, Format: f}
			out32 := Tensor[float32]{Data: make([]float32, len(res.Out.Data)), Shape: res.Out.Shape}
			lse, lse32 := make([]float64, len(res.LSE.Data)), make([]float64, len(res.LSE.Data))
			call := func() {
				if err := AttendHalfInto(context.Background(), ws, out, lse, q16, k16, v16, opts); err != nil {
					t.Fatal(err)
				}
			}
			call()
			if err := AttendHalfKVInto(context.Background(), ws32, out32, lse32, qw, k16, v16, opts); err != nil {
				t.Fatal(err)
			}
			for i, x := range out32.Data {
				if w := attn.Float32ToHalf(f, x); out.Data[i] != w {
					t.Fatalf("%v: AttendHalfInto entry %d is %#04x, float32 %g rounds to %#04x", f, i, out.Data[i], x, w)
				}
			}
			if !slices.Equal(lse, lse32) {
				t.Errorf("%v: AttendHalfInto's LSE differs from AttendHalfKVInto's", f)
			}
			if a := testing.AllocsPerRun(10, call); a != 0 && !cacheRaceEnabled {
				t.Errorf("%v: %v allocations per call", f, a)
			}
		}
	}

	q, k, v := decodeInputs(r, 100)
	q16, k16, v16 := toHalf(q, Float16), toHalf(k, Float16), toHalf(v, Float16)
	if _, err := AttendHalf(context.Background(), toHalf(q, BFloat16), k16, v16, Options{}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("bfloat16 Q with float16 K, V: %v", err)
	}
	_, err := AttendHalf(context.Background(), q16, k16, v16, Options{Method: "poly"})
	if !errors.Is(err, attn.ErrUnsupported) || !strings.Contains(err.Error(), attn.HalfQO.String()) {
		t.Errorf("poly with 16-bit queries: %v, want ErrUnsupported naming them", err)
	}
	out := HalfTensor{Data: make([]uint16, 8*128), Shape: []int{1, 8, 1, 128}, Format: BFloat16}
	if err := AttendHalfInto(context.Background(), NewWorkspace(), out, nil, q16, k16, v16, Options{}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("bfloat16 out for float16 Q: %v", err)
	}
	out.Format, out.Shape = Float16, []int{1, 8, 2, 64}
	if err := AttendHalfInto(context.Background(), NewWorkspace(), out, nil, q16, k16, v16, Options{}); !errors.Is(err, ErrInvalidInput) {
		t.Errorf("out of the wrong shape: %v", err)
	}
}
