//go:build amd64 && gc && !purego

package kernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestExp2WithoutDQ checks the base-2 exponentials on an AVX-512 CPU
// without AVX512DQ (hasDQ false), whose AVX-512 kernels need VREDUCEPS:
// Exp2ShiftSum32 and Exp2Rows32 must then give the AVX2 kernel's values
// and sums, bit for bit.
func TestExp2WithoutDQ(t *testing.T) {
	if maxLevel < levelAVX512 {
		t.Skip("no AVX-512 here")
	}
	r := rand.New(rand.NewPCG(25, 26))
	const rows, cols, ld = 5, 48, 53
	src := make([]float32, rows*ld)
	for i := range src {
		src[i] = float32(r.NormFloat64() * 30)
		if i%3 == 0 {
			// Results under 2^-126: AVX2 keeps them subnormal, the AVX-512
			// kernels flush them to zero.
			src[i] = -150 - 40*r.Float32()
		}
	}
	shifts := []float32{1, -3, 40, 0, 7}
	run := func(l int, dq bool) (vals, rowVals, sums []float32) {
		old := hasDQ
		hasDQ = dq
		defer func() { hasDQ = old }()
		vals = append([]float32(nil), src...)
		rowVals = append([]float32(nil), src...)
		sums = make([]float32, rows)
		atLevel(t, l, func() {
			Exp2ShiftSum32(vals, 0.75, 2)
			Exp2Rows32(rowVals, ld, rows, cols, 0.75, shifts, sums)
		})
		return vals, rowVals, sums
	}
	wantVals, wantRows, wantSums := run(levelAVX2, hasDQ)
	gotVals, gotRows, gotSums := run(levelAVX512, false)
	same := func(what string, got, want []float32) {
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%s[%d] = %v without AVX512DQ, want AVX2's %v", what, i, got[i], want[i])
			}
		}
	}
	same("Exp2ShiftSum32", gotVals, wantVals)
	same("Exp2Rows32", gotRows, wantRows)
	same("Exp2Rows32 sums", gotSums, wantSums)
}
