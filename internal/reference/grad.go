package reference

import (
	"math"

	"github.com/fastattn/fastattn/attn"
)

// Grad is the gradient of a loss with respect to Q, K and V, in float64,
// shaped like the inputs. Next to each entry it holds the magnitude of the
// terms the entry sums, e.g. for dQ_it = s sum_j P_ij (dP_ij - Delta_i) K_jt
//
//	MagQ_it = s sum_j P_ij (|dP_ij| + |Delta_i|) |K_jt|
//
// which is the scale against which rounding errors of any way of computing
// the entry are measured: an entry that is a cancellation of large terms
// cannot be known to better than a few ulps of its magnitude.
type Grad struct {
	DQ, DK, DV       []float64
	MagQ, MagK, MagV []float64
}

// Gradient computes the gradient of the loss whose gradient with respect to
// the output is dO (heads*n*e), the obvious way, one query row at a time:
// with P_i = softmax of row i over its valid keys, O_i = P_i V,
// Delta_i = dO_i . O_i, dP_ij = dO_i . V_j and dS_ij = P_ij (dP_ij - Delta_i),
//
//	dQ_i = s sum_j dS_ij K_j,  dK_j = s sum_i dS_ij Q_i,  dV_j = sum_i P_ij dO_i.
//
// Masked keys and rows without a valid key get zeros.
func Gradient[T attn.Float](p *attn.Problem[T], dO []T) *Grad {
	g := &Grad{
		DQ: make([]float64, len(p.Q)), DK: make([]float64, len(p.K)), DV: make([]float64, len(p.V)),
		MagQ: make([]float64, len(p.Q)), MagK: make([]float64, len(p.K)), MagV: make([]float64, len(p.V)),
	}
	for h := range p.Heads {
		for i := range p.N {
			gradRow(p, dO, h, i, g, nil)
		}
	}
	return g
}

// GradientQueryRows returns rows (of head h) of dQ: len(rows)*d values.
func GradientQueryRows[T attn.Float](p *attn.Problem[T], dO []T, h int, rows []int) []float64 {
	out := make([]float64, len(rows)*p.D)
	for r, i := range rows {
		gradRow(p, dO, h, i, nil, out[r*p.D:(r+1)*p.D])
	}
	return out
}

// GradientKeyRows returns rows (keys of head h) of dK and dV: len(rows)*d
// and len(rows)*e values. They depend on every query row's log-sum-exp and
// output: lse (n values) and o (n*e values) give them for head h, e.g. from
// an exact forward pass; nil means compute them here, in O(n m d) time.
func GradientKeyRows[T attn.Float](p *attn.Problem[T], dO []T, h int, lse, o []float64, rows []int) (dk, dv []float64) {
	d, e := p.D, p.E
	if lse == nil || o == nil {
		lse = make([]float64, p.N)
		o = make([]float64, p.N*e)
		for i := range p.N {
			Row(p, h, i, o[i*e:(i+1)*e], &lse[i])
		}
	}
	dk = make([]float64, len(rows)*d)
	dv = make([]float64, len(rows)*e)
	for r, j := range rows {
		if j >= p.KeyLen(h) {
			continue
		}
		kj := p.K[(h*p.M+j)*d : (h*p.M+j+1)*d]
		vj := p.V[(h*p.M+j)*e : (h*p.M+j+1)*e]
		for i := range p.N {
			if j >= p.KeyLimit(h, i) {
				continue
			}
			qi := p.Q[(h*p.N+i)*d : (h*p.N+i+1)*d]
			doi := dO[(h*p.N+i)*e : (h*p.N+i+1)*e]
			var x, dp, delta float64
			for t := range d {
				x += float64(qi[t]) * float64(kj[t])
			}
			for t := range e {
				dp += float64(doi[t]) * float64(vj[t])
				delta += float64(doi[t]) * o[i*e+t]
			}
			pij := math.Exp(p.Scale*x - lse[i])
			ds := pij * (dp - delta)
			for t := range d {
				dk[r*d+t] += p.Scale * ds * float64(qi[t])
			}
			for t := range e {
				dv[r*e+t] += pij * float64(doi[t])
			}
		}
	}
	return dk, dv
}

// gradRow adds query row i's contributions to g (when not nil) and writes
// its dQ row to dq (when not nil).
func gradRow[T attn.Float](p *attn.Problem[T], dO []T, h, i int, g *Grad, dq []float64) {
	d, e := p.D, p.E
	limit := p.KeyLimit(h, i)
	if dq != nil {
		clear(dq)
	}
	if limit == 0 {
		return
	}
	row := h*p.N + i
	q := p.Q[row*d : (row+1)*d]
	do := dO[row*e : (row+1)*e]
	keys := p.K[h*p.M*d:]
	vals := p.V[h*p.M*e:]

	// Softmax row and output, as Row computes them.
	pr := make([]float64, limit)
	mx := math.Inf(-1)
	for j := range limit {
		var x float64
		for t, qt := range q {
			x += float64(qt) * float64(keys[j*d+t])
		}
		pr[j] = p.Scale * x
		mx = max(mx, pr[j])
	}
	var sum float64
	for j := range pr {
		pr[j] = math.Exp(pr[j] - mx)
		sum += pr[j]
	}
	o := make([]float64, e)
	for j := range pr {
		pr[j] /= sum
		for t := range e {
			o[t] += pr[j] * float64(vals[j*e+t])
		}
	}
	var delta float64
	for t := range e {
		delta += float64(do[t]) * o[t]
	}

	if dq == nil {
		dq = g.DQ[row*d : (row+1)*d]
	}
	var magQ []float64
	if g != nil {
		magQ = g.MagQ[row*d : (row+1)*d]
	}
	for j, pj := range pr {
		v := vals[j*e : (j+1)*e]
		var dp float64
		for t := range e {
			dp += float64(do[t]) * float64(v[t])
		}
		ds := pj * (dp - delta)
		mag := pj * (math.Abs(dp) + math.Abs(delta))
		k := keys[j*d : (j+1)*d]
		for t := range d {
			dq[t] += p.Scale * ds * float64(k[t])
		}
		if g == nil {
			continue
		}
		kr := (h*p.M + j) * d
		vr := (h*p.M + j) * e
		for t := range d {
			magQ[t] += p.Scale * mag * math.Abs(float64(k[t]))
			g.DK[kr+t] += p.Scale * ds * float64(q[t])
			g.MagK[kr+t] += p.Scale * mag * math.Abs(float64(q[t]))
		}
		for t := range e {
			g.DV[vr+t] += pj * float64(do[t])
			g.MagV[vr+t] += pj * math.Abs(float64(do[t]))
		}
	}
}
