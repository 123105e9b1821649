package accurate

import (
	"math"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/fastattn/fastattn/attn"
)

// bigRow is a 300-bit oracle: logits exactly, exp by its Taylor series
// about the row's maximum (arguments are <= 0; terms until negligible).
func bigRow(p *attn.Problem[float64], h, i int) []float64 {
	const prec = 300
	limit := p.KeyLimit(h, i)
	d, e := p.D, p.E
	x := make([]*big.Float, limit)
	for j := range limit {
		s := new(big.Float).SetPrec(prec)
		for t := range d {
			a := new(big.Float).SetPrec(prec).SetFloat64(p.Q[(h*p.N+i)*d+t])
			a.Mul(a, new(big.Float).SetPrec(prec).SetFloat64(p.K[(h*p.M+j)*d+t]))
			s.Add(s, a)
		}
		x[j] = s.Mul(s, new(big.Float).SetPrec(prec).SetFloat64(p.Scale))
	}
	mx := x[0]
	for _, v := range x {
		if v.Cmp(mx) > 0 {
			mx = v
		}
	}
	den := new(big.Float).SetPrec(prec)
	num := make([]*big.Float, e)
	for c := range num {
		num[c] = new(big.Float).SetPrec(prec)
	}
	for j := range limit {
		y := new(big.Float).SetPrec(prec).Sub(x[j], mx)
		yf, _ := y.Float64()
		var w *big.Float
		if yf < -800 {
			w = new(big.Float).SetPrec(prec)
		} else {
			// exp(y) = exp(y/2^k)^(2^k) with a Taylor series for the small part.
			k := 12
			z := new(big.Float).SetPrec(prec).SetMantExp(y, -k)
			sum := new(big.Float).SetPrec(prec).SetFloat64(1)
			term := new(big.Float).SetPrec(prec).SetFloat64(1)
			for n := 1; n < 60; n++ {
				term.Mul(term, z)
				term.Quo(term, new(big.Float).SetPrec(prec).SetInt64(int64(n)))
				sum.Add(sum, term)
			}
			for range k {
				sum.Mul(sum, sum)
			}
			w = sum
		}
		den.Add(den, w)
		for c := range e {
			num[c].Add(num[c], new(big.Float).SetPrec(prec).Mul(w, new(big.Float).SetPrec(prec).SetFloat64(p.V[(h*p.M+j)*e+c])))
		}
	}
	out := make([]float64, e)
	for c := range e {
		out[c], _ = new(big.Float).SetPrec(prec).Quo(num[c], den).Float64()
	}
	return out
}

func offsetProblem(n, m, d int, offset, scale float64, seed uint64) *attn.Problem[float64] {
	r := rand.New(rand.NewPCG(seed, 3))
	p := &attn.Problem[float64]{Heads: 1, N: n, M: m, D: d, E: 2, Scale: scale,
		Q: make([]float64, n*d), K: make([]float64, m*d), V: make([]float64, m*2)}
	for i := range p.Q {
		p.Q[i] = r.NormFloat64()
	}
	for i := range p.K {
		p.K[i] = offset + r.NormFloat64()
	}
	for i := range p.V {
		p.V[i] = r.NormFloat64()
	}
	return p
}

// TestRowAgainstBig: the reference is within Error of a 300-bit
// computation on inputs where a naive float64 one is not (common key
// offsets up to 1e8, near-ties, huge and subnormal values).
func TestRowAgainstBig(t *testing.T) {
	worst := 0.0
	for _, off := range []float64{0, 1e2, 1e4, 1e6, 1e7, 1e8} {
		for _, scale := range []float64{0.1, 0.5} {
			p := offsetProblem(3, 33, 2, off, scale, uint64(off)+7)
			base := append([]float64(nil), p.V...)
			for _, vs := range []float64{1, 1.7e308 / 4, 1e-310} {
				for x := range p.V {
					p.V[x] = vs * base[x] / 4
				}
				colMax := attn.ColumnMaxAbs(p, 0, p.M)
				for i := range p.N {
					want := bigRow(p, 0, i)
					got := make([]float64, p.E)
					Row(p, 0, i, got)
					for c := range got {
						err := math.Abs(got[c]-want[c]) / colMax[c]
						worst = max(worst, err/Error(p.M))
						if !(err <= Error(p.M)) {
							t.Errorf("offset %g scale %g values %g row %d col %d: error %.3g above Error %.3g", off, scale, vs, i, c, err, Error(p.M))
						}
					}
				}
			}
		}
	}
	t.Logf("worst error / Error: %.3g", worst)
}
