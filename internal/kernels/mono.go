package kernels

// MonoApplyBlock is the most points MonoApply64 takes per call.
const MonoApplyBlock = 16

// MonoTable is a graded monomial table checked once for MonoApply64: h_0
// = 1 and h_a = h_parent[a] * x_vari[a] for a >= 1, each parent before its
// children, in d variables.
type MonoTable struct {
	parent, vari []int32
	d            int
}

// NewMonoTable checks and wraps a monomial table (parent[0] and vari[0]
// are ignored).
func NewMonoTable(parent, vari []int32, d int) *MonoTable {
	if len(parent) != len(vari) || len(parent) == 0 {
		panic("kernels: NewMonoTable: bad sizes")
	}
	for a := 1; a < len(parent); a++ {
		if p, t := int(parent[a]), int(vari[a]); p < 0 || p >= a || t < 0 || t >= d {
			panic("kernels: NewMonoTable: bad monomial table")
		}
	}
	return &MonoTable{parent: parent, vari: vari, d: d}
}

// MonoApply64 evaluates, for cnt <= MonoApplyBlock points, the first r
// monomials of table m and sets y[c*ldy+i] = sum_a s[a*nc+c] h_a(point i)
// for the nc columns c: a polynomial with nc coefficient vectors applied
// to points given variable-major (variable t of point i at x[t*ldx+i]).
// The sum runs over a in order, one rounding per multiplication and per
// addition at most (fused multiply-adds may round less). h is scratch of
// at least r*MonoApplyBlock.
//
// It is the polynomial method's query side: where MonoApplyFast(nc)
// holds, the monomials meet their coefficients as they are built instead
// of being written out as a matrix for a GEMM.
func MonoApply64(y []float64, ldy int, s []float64, nc int, x []float64, ldx, cnt int, m *MonoTable, r int, h []float64) {
	if cnt <= 0 || nc <= 0 || r <= 0 {
		return
	}
	if cnt > MonoApplyBlock || r > len(m.parent) || len(s) < r*nc || len(h) < r*MonoApplyBlock ||
		len(y) < (nc-1)*ldy+cnt || ldy < cnt || ldx < cnt || len(x) < (m.d-1)*ldx+cnt {
		panic("kernels: MonoApply64: bad sizes")
	}
	monoApply64(y, ldy, s, nc, x, ldx, cnt, m.parent, m.vari, r, h)
}

// MonoApplyFast reports whether MonoApply64 with nc columns runs a vector
// kernel (else it is plain Go, slower than features and a GEMM).
func MonoApplyFast(nc int) bool { return monoApplyFast(nc) }

func monoApply64Go(y []float64, ldy int, s []float64, nc int, x []float64, ldx, cnt int, parent, vari []int32, r int, h []float64) {
	const w = MonoApplyBlock
	for i := range cnt {
		h[i] = 1
	}
	for c := range nc {
		for i := range cnt {
			y[c*ldy+i] = s[c]
		}
	}
	for a := 1; a < r; a++ {
		ha, hp := h[a*w:a*w+cnt], h[int(parent[a])*w:int(parent[a])*w+cnt]
		xt := x[int(vari[a])*ldx : int(vari[a])*ldx+cnt]
		for i := range cnt {
			ha[i] = hp[i] * xt[i]
		}
		for c, sc := range s[a*nc : (a+1)*nc] {
			yc := y[c*ldy : c*ldy+cnt]
			for i, v := range ha {
				yc[i] += sc * v
			}
		}
	}
}

// MonoMomentsBlock is the number of points MonoMoments64 takes per call.
const MonoMomentsBlock = 128

// MonoMoments64 evaluates the first r monomials of table m at
// MonoMomentsBlock points given variable-major (variable t of point j at
// u[t*ldu+j]) and adds to mom[a*e1+c] the sum over the points of h_a(point
// j) vt[c*MonoMomentsBlock+j], for the e1 rows of vt: the moments of the
// points' monomials against e1 weights per point (points to leave out get
// zero weights). Each sum is over the block's points in an order of the
// implementation's choosing, then added to mom. h is scratch of at least
// r*MonoMomentsBlock.
func MonoMoments64(mom []float64, e1 int, vt, u []float64, ldu int, m *MonoTable, r int, h []float64) {
	const w = MonoMomentsBlock
	if e1 <= 0 || r <= 0 {
		return
	}
	if r > len(m.parent) || len(mom) < r*e1 || len(vt) < e1*w || len(h) < r*w || ldu < w || len(u) < (m.d-1)*ldu+w {
		panic("kernels: MonoMoments64: bad sizes")
	}
	monoMoments64(mom, e1, vt, u, ldu, m.parent, m.vari, r, h)
}

// MonoMomentsFast reports whether MonoMoments64 runs a vector kernel.
func MonoMomentsFast() bool { return monoMomentsFast() }

func monoMoments64Go(mom []float64, e1 int, vt, u []float64, ldu int, parent, vari []int32, r int, h []float64) {
	const w = MonoMomentsBlock
	for j := range w {
		h[j] = 1
	}
	for a := range r {
		ha := h[a*w : (a+1)*w]
		if a > 0 {
			hp := h[int(parent[a])*w : int(parent[a])*w+w]
			ut := u[int(vari[a])*ldu : int(vari[a])*ldu+w]
			for j := range w {
				ha[j] = hp[j] * ut[j]
			}
		}
		for c := range e1 {
			var sum float64
			for j, x := range vt[c*w : (c+1)*w] {
				sum += ha[j] * x
			}
			mom[a*e1+c] += sum
		}
	}
}
