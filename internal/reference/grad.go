package reference

import (
	"math"

	"github.com/fastattn/fastattn/attn"
)

// Grad is the gradient of a loss with respect to Q, K, V and the sinks, in
// float64, shaped like the inputs. Next to each entry it holds the
// magnitude of the terms the entry sums, e.g. for
// dQ_it = s sum_j P_ij (dP_ij - Delta_i) K_jt
//
//	MagQ_it = s sum_j P_ij (|dP_ij| + |Delta_i|) |K_jt|
//
// which is the scale against which rounding errors of any way of computing
// the entry are measured: an entry that is a cancellation of large terms
// cannot be known to better than a few ulps of its magnitude.
type Grad struct {
	DQ, DK, DV       []float64
	MagQ, MagK, MagV []float64
	// DSinks and MagSinks are like p.Sinks (nil without sinks).
	DSinks, MagSinks []float64
}

// Gradient computes the gradient of the loss whose gradient with respect to
// the output is dO (heads*n*e), the obvious way, one query row at a time:
// with P_i = softmax of row i over its keys (and sink), O_i = P_i V,
// Delta_i = dO_i . O_i, dP_ij = dO_i . V_j and dS_ij = P_ij (dP_ij - Delta_i),
//
//	dQ_i = s sum_j dS_ij K_j,  dK_j = s sum_i dS_ij Q_i,  dV_j = sum_i P_ij dO_i,
//	dsink_h = -sum_i P_i,sink Delta_i
//
// (dK, dV summed over the query heads of a key/value head, dsink over the
// rows of the heads sharing the sink). Masked keys and rows without a
// valid key get zeros.
func Gradient[T attn.Float](p *attn.Problem[T], dO []T) *Grad {
	nk, nv := p.KVHeadCount()*p.M*p.D, p.KVHeadCount()*p.M*p.E
	g := &Grad{
		DQ: make([]float64, len(p.Q)), DK: make([]float64, nk), DV: make([]float64, nv),
		MagQ: make([]float64, len(p.Q)), MagK: make([]float64, nk), MagV: make([]float64, nv),
	}
	if p.Sinks != nil {
		g.DSinks = make([]float64, len(p.Sinks))
		g.MagSinks = make([]float64, len(p.Sinks))
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

// GradientKeyRows returns rows (keys of key/value head kh) of dK and dV:
// len(rows)*d and len(rows)*e values. They depend on the log-sum-exp and
// output of every query row of the heads sharing kh: lse (Group()*n
// values) and o (Group()*n*e values) give them, query head after query
// head, e.g. from an exact forward pass; nil means compute them here, in
// O(n m d) time.
func GradientKeyRows[T attn.Float](p *attn.Problem[T], dO []T, kh int, lse, o []float64, rows []int) (dk, dv []float64) {
	d, e, g := p.D, p.E, p.Group()
	if lse == nil || o == nil {
		lse = make([]float64, g*p.N)
		o = make([]float64, g*p.N*e)
		for x := range g * p.N {
			Row(p, kh*g+x/p.N, x%p.N, o[x*e:(x+1)*e], &lse[x])
		}
	}
	dk = make([]float64, len(rows)*d)
	dv = make([]float64, len(rows)*e)
	kj, vj := make([]float64, d), make([]float64, e)
	for r, j := range rows {
		p.Key(kh, j, kj)
		p.Value(kh, j, vj)
		for x := range g * p.N {
			h, i := kh*g+x/p.N, x%p.N
			lo, hi := p.KeyRange(h, i)
			if j < lo || j >= hi || math.IsInf(lse[x], -1) {
				continue
			}
			l := 0.0
			if p.Mask != nil {
				if l = p.Mask.Logit(h, i, j); math.IsInf(l, -1) {
					continue
				}
			}
			qi := p.Q[(h*p.N+i)*d : (h*p.N+i+1)*d]
			doi := dO[(h*p.N+i)*e : (h*p.N+i+1)*e]
			var s, dp, delta float64
			for t := range d {
				s += float64(qi[t]) * kj[t]
			}
			for t := range e {
				dp += float64(doi[t]) * vj[t]
				delta += float64(doi[t]) * o[x*e+t]
			}
			pij := math.Exp(p.Scale*s + l - lse[x])
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
	if dq != nil {
		clear(dq)
	}
	lo, pr, sinkP, lse := Probabilities(p, h, i)
	if math.IsInf(lse, -1) {
		return
	}
	row := h*p.N + i
	kh := p.KVHead(h)
	q := p.Q[row*d : (row+1)*d]
	do := dO[row*e : (row+1)*e]
	// The row's keys and values, in float64.
	keys, vals := make([]float64, len(pr)*d), make([]float64, len(pr)*e)
	for j := range pr {
		p.Key(kh, lo+j, keys[j*d:(j+1)*d])
		p.Value(kh, lo+j, vals[j*e:(j+1)*e])
	}

	o := make([]float64, e)
	for j, pj := range pr {
		for t := range e {
			o[t] += pj * vals[j*e+t]
		}
	}
	var delta float64
	for t := range e {
		delta += float64(do[t]) * o[t]
	}
	if g != nil && g.DSinks != nil {
		x := h % len(p.Sinks)
		g.DSinks[x] -= sinkP * delta
		g.MagSinks[x] += sinkP * math.Abs(delta)
	}

	if dq == nil {
		dq = g.DQ[row*d : (row+1)*d]
	}
	var magQ []float64
	if g != nil {
		magQ = g.MagQ[row*d : (row+1)*d]
	}
	for j, pj := range pr {
		if pj == 0 {
			continue
		}
		v := vals[j*e : (j+1)*e]
		var dp float64
		for t := range e {
			dp += float64(do[t]) * v[t]
		}
		ds := pj * (dp - delta)
		mag := pj * (math.Abs(dp) + math.Abs(delta))
		k := keys[j*d : (j+1)*d]
		for t := range d {
			dq[t] += p.Scale * ds * k[t]
		}
		if g == nil {
			continue
		}
		kr := (kh*p.M + lo + j) * d
		vr := (kh*p.M + lo + j) * e
		for t := range d {
			magQ[t] += p.Scale * mag * math.Abs(k[t])
			g.DK[kr+t] += p.Scale * ds * float64(q[t])
			g.MagK[kr+t] += p.Scale * mag * math.Abs(float64(q[t]))
		}
		for t := range e {
			g.DV[vr+t] += pj * float64(do[t])
			g.MagV[vr+t] += pj * math.Abs(float64(do[t]))
		}
	}
}
