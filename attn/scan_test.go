package attn

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestScans checks the fast scans against plain loops, on odd widths and
// widths around the kernels' vectors of 8 float64 and 16 float32, with
// negative values, an Inf and (for MaxAbsRows) a NaN, in float64, float32
// and types defined on them.
func TestScans(t *testing.T) {
	type myFloat32 float32
	type myFloat64 float64
	r := rand.New(rand.NewPCG(3, 4))
	for _, e := range []int{1, 3, 8, 9, 16, 17, 64, 100, 128, 200} {
		rows := 1 + r.IntN(300)
		x := make([]float64, rows*e)
		for i := range x {
			x[i] = r.NormFloat64() * math.Pow(10, float64(r.IntN(6)-3))
		}
		x[r.IntN(len(x))] = math.Inf(-1)
		want := make([]float64, e)
		wlo, whi := make([]float64, e), make([]float64, e)
		for c := range e {
			wlo[c], whi[c] = math.Inf(1), math.Inf(-1)
		}
		for l := range rows {
			for c := range e {
				v := x[l*e+c]
				want[c] = max(want[c], math.Abs(v))
				wlo[c], whi[c] = min(wlo[c], v), max(whi[c], v)
			}
		}
		x32, xm32, xm64 := make([]float32, len(x)), make([]myFloat32, len(x)), make([]myFloat64, len(x))
		for i, v := range x {
			x32[i], xm32[i], xm64[i] = float32(v), myFloat32(v), myFloat64(v)
		}
		check := func(name string, got, want []float64) {
			t.Helper()
			if !slices.Equal(got, want) {
				t.Fatalf("e=%d %s: %v, want %v", e, name, got, want)
			}
		}
		got, got32 := make([]float64, e), make([]float64, e)
		MaxAbsRows(x, got)
		MaxAbsRows(x32, got32)
		lo, hi := slicesOf(e, math.Inf(1)), slicesOf(e, math.Inf(-1))
		lo32, hi32 := slicesOf(e, math.Inf(1)), slicesOf(e, math.Inf(-1))
		RowRange(x, lo, hi)
		RowRange(x32, lo32, hi32)
		gotm32, gotm64 := make([]float64, e), make([]float64, e)
		MaxAbsRows(xm32, gotm32)
		MaxAbsRows(xm64, gotm64)
		check("MaxAbsRows of a type defined on float32", gotm32, got32)
		check("MaxAbsRows of a type defined on float64", gotm64, got)
		lom, him := slicesOf(e, math.Inf(1)), slicesOf(e, math.Inf(-1))
		RowRange(xm32, lom, him)
		check("RowRange lo of a type defined on float32", lom, lo32)
		check("RowRange hi of a type defined on float32", him, hi32)
		lom, him = slicesOf(e, math.Inf(1)), slicesOf(e, math.Inf(-1))
		RowRange(xm64, lom, him)
		check("RowRange lo of a type defined on float64", lom, lo)
		check("RowRange hi of a type defined on float64", him, hi)
		for c := range e {
			if got[c] != want[c] || got32[c] != float64(float32(want[c])) {
				t.Fatalf("e=%d column %d: max |x| %g (float32 %g), want %g", e, c, got[c], got32[c], want[c])
			}
			if lo[c] != wlo[c] || hi[c] != whi[c] || lo32[c] != float64(float32(wlo[c])) || hi32[c] != float64(float32(whi[c])) {
				t.Fatalf("e=%d column %d: range [%g, %g] (float32 [%g, %g]), want [%g, %g]", e, c, lo[c], hi[c], lo32[c], hi32[c], wlo[c], whi[c])
			}
		}
		x[r.IntN(len(x))] = math.NaN()
		clear(got)
		MaxAbsRows(x, got)
		nan := false
		for _, v := range got {
			nan = nan || math.IsNaN(v)
		}
		if !nan {
			t.Fatalf("e=%d: a NaN value left no NaN column maximum: %v", e, got)
		}
	}
}

func slicesOf(n int, v float64) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = v
	}
	return s
}

// TestFirstNonFinite: the first NaN or Inf is found wherever it lies
// relative to the chunks the SIMD kernels check, in both types and in a
// type defined on float32.
func TestFirstNonFinite(t *testing.T) {
	type myFloat float32
	for _, n := range []int{0, 1, 7, 4095, 4096, 4097, 10000} {
		for _, at := range []int{-1, 0, n / 2, n - 1, 4095, 4096} {
			if at >= n || (at < 0 && at != -1) {
				continue
			}
			for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
				x32, x64, xm := make([]float32, n), make([]float64, n), make([]myFloat, n)
				for i := range n {
					x32[i], x64[i], xm[i] = float32(i), float64(i), myFloat(i)
				}
				if at >= 0 {
					x32[at], x64[at], xm[at] = float32(bad), bad, myFloat(bad)
					if at+1 < n { // a later one must not be reported
						x32[n-1], x64[n-1], xm[n-1] = float32(bad), bad, myFloat(bad)
					}
				}
				if g32, g64, gm := FirstNonFinite(x32), FirstNonFinite(x64), FirstNonFinite(xm); g32 != at || g64 != at || gm != at {
					t.Fatalf("n %d, %g at %d: found at %d (float32), %d (float64), %d (defined type)", n, bad, at, g32, g64, gm)
				}
			}
		}
	}
}

// TestColumnMaxAbsHalf checks ColumnMaxAbs on 16-bit values (one vector
// pass over their bits) against the largest |value| of each column read
// one by one, in both formats, over a prefix of the keys of the second
// key/value head (GQA: query head 3 reads it), with zeros, signed values,
// Inf and subnormals among them.
func TestColumnMaxAbsHalf(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for _, f := range []HalfFormat{Float16, BFloat16} {
		for _, e := range []int{1, 7, 32, 33, 100} {
			const m, rows = 90, 77
			v := make([]uint16, 2*m*e)
			for i := range v {
				switch r.IntN(20) {
				case 0:
					v[i] = 0x8000 // -0
				case 1:
					v[i] = 0x0001 // the least subnormal
				case 2:
					v[i] = Float32ToHalf(f, float32(math.Inf(-1)))
				default:
					v[i] = Float32ToHalf(f, float32(r.NormFloat64()*math.Pow(10, float64(r.IntN(5)-2))))
				}
			}
			p := &Problem[float32]{Heads: 4, KVHeads: 2, N: 1, M: m, D: 1, E: e, KVFormat: f, V16: v}
			got := ColumnMaxAbs(p, 3, rows)
			for c := range e {
				var want float64
				for l := range rows {
					want = max(want, math.Abs(float64(HalfToFloat32(f, v[(m+l)*e+c]))))
				}
				if got[c] != want {
					t.Fatalf("%v e=%d column %d: %g, want %g", f, e, c, got[c], want)
				}
			}
		}
	}
}
