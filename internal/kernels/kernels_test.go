package kernels

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
)

// gonumGemm is the trusted reference: C = alpha op(A) op(B) + beta C.
func gonumGemm(tB blas.Transpose, m, n, k int, a []float64, lda int, b []float64, ldb int, c []float64, ldc int, beta float64) {
	rb, cb := k, n
	if tB == blas.Trans {
		rb, cb = n, k
	}
	blas64.Gemm(blas.NoTrans, tB, 1,
		blas64.General{Rows: m, Cols: k, Stride: lda, Data: a},
		blas64.General{Rows: rb, Cols: cb, Stride: ldb, Data: b},
		beta, blas64.General{Rows: m, Cols: n, Stride: ldc, Data: c})
}

func randSlice(r *rand.Rand, n int) []float64 { return normals[float64](r, n) }

// normals returns n standard normal values from r, rounded to T.
func normals[T float32 | float64](r *rand.Rand, n int) []T {
	x := make([]T, n)
	for i := range x {
		x[i] = T(r.NormFloat64())
	}
	return x
}

func to32(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

// gemmCases includes shapes that are not multiples of any vector width and
// leading dimensions larger than the rows.
var gemmCases = [][3]int{{1, 1, 1}, {1, 7, 3}, {5, 3, 1}, {17, 33, 9}, {64, 64, 64}, {31, 129, 67}, {3, 300, 128}}

func TestGemmAgainstGonum(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, sz := range gemmCases {
		m, n, k := sz[0], sz[1], sz[2]
		lda, ldb, ldc := k+3, k+1, n+2
		a := randSlice(r, m*lda)
		bt := randSlice(r, n*ldb) // B^T layout: n x k
		c0 := randSlice(r, m*ldc)

		// NT: C = A B^T.
		want := append([]float64(nil), c0...)
		gonumGemm(blas.Trans, m, n, k, a, lda, bt, ldb, want, ldc, 0)
		got := append([]float64(nil), c0...)
		GemmNT64(m, n, k, a, lda, bt, ldb, got, ldc)
		got32 := to32(c0)
		GemmNT32(m, n, k, to32(a), lda, to32(bt), ldb, got32, ldc)
		checkClose(t, "GemmNT", sz, want, got, got32, ldc, n, k)

		// NN: C += A B with B k x n.
		ldbn := n + 5
		b := randSlice(r, k*ldbn)
		want = append([]float64(nil), c0...)
		gonumGemm(blas.NoTrans, m, n, k, a, lda, b, ldbn, want, ldc, 1)
		got = append([]float64(nil), c0...)
		GemmNN64(m, n, k, a, lda, b, ldbn, got, ldc)
		got32 = to32(c0)
		GemmNN32(m, n, k, to32(a), lda, to32(b), ldbn, got32, ldc)
		checkClose(t, "GemmNN", sz, want, got, got32, ldc, n, k)
	}
}

func checkClose(t *testing.T, name string, sz [3]int, want, got []float64, got32 []float32, ldc, n, k int) {
	t.Helper()
	for i := range want {
		tol64 := 1e-13 * float64(k+1)
		tol32 := 2e-6 * float64(k+1)
		if i%ldc >= n { // outside C: must be untouched
			tol64, tol32 = 0, 1e-7
		}
		if d := math.Abs(got[i] - want[i]); d > tol64*(1+math.Abs(want[i])) {
			t.Fatalf("%s64 %v: entry %d = %g, gonum %g", name, sz, i, got[i], want[i])
		}
		if d := math.Abs(float64(got32[i]) - want[i]); d > tol32*(1+math.Abs(want[i])) {
			t.Fatalf("%s32 %v: entry %d = %g, gonum %g", name, sz, i, got32[i], want[i])
		}
	}
}

func TestExpShiftSum(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{0, 1, 5, 8, 16, 33, 257} {
		x := randSlice(r, n)
		for i := range x {
			x[i] *= 30
		}
		scale, shift := 0.7, 25.0
		y64 := append([]float64(nil), x...)
		y32 := to32(x)
		s64 := ExpShiftSum64(y64, scale, shift)
		s32 := ExpShiftSum32(y32, float32(scale), float32(shift))
		var want float64
		for i, v := range x {
			e := math.Exp(scale*v - shift)
			want += e
			if math.Abs(y64[i]-e) > 1e-15*e {
				t.Fatalf("n=%d: exp64[%d] = %g, want %g", n, i, y64[i], e)
			}
			arg := float64(float32(scale)*float32(v) - float32(shift))
			if e32 := math.Exp(arg); math.Abs(float64(y32[i])-e32) > 3e-7*e32 {
				t.Fatalf("n=%d: exp32[%d] = %g, want %g", n, i, y32[i], e32)
			}
		}
		if math.Abs(s64-want) > 1e-13*want || math.Abs(float64(s32)-want) > 1e-4*want+1e-30 {
			t.Fatalf("n=%d: sums %g, %g, want %g", n, s64, s32, want)
		}
	}
}

func TestMax(t *testing.T) {
	if !math.IsInf(Max64(nil), -1) || !math.IsInf(float64(Max32(nil)), -1) {
		t.Fatal("max of empty slice must be -Inf")
	}
	if Max64([]float64{-3, 2, 1}) != 2 || Max32([]float32{-3, -2, -5}) != -2 {
		t.Fatal("wrong max")
	}
}
