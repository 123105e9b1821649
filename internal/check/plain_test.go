package check

import (
	"math"
	"strconv"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
	"github.com/fastattn/fastattn/internal/accurate"
)

// TestPlainRowBound: on random and adversarial problems (keys offset by
// up to 1e8, logits in the thousands, near-ties, grouped heads, causal
// masks, windows, key lengths, float32 inputs) the plain reference is
// within its own a priori error (plus the accurate reference's) of the
// accurate reference, and declines what it cannot bound.
func TestPlainRowBound(t *testing.T) {
	cases := plainCases()
	offsets := []float64{0, 1e2, 1e4, 1e8}
	var runs, used int
	worst := 0.0
	for ci, c := range cases {
		for _, off := range offsets {
			p := c.Generate(uint64(ci + 1))
			for x := range p.K {
				p.K[x] += off
			}
			for _, p32 := range []bool{false, true} {
				check := func(pr interface {
					row(h, i int, box headBox, out []float64) (float64, bool)
					box(h int) headBox
					accurate(h, i int, out []float64)
					limit(h, i int) int
				}, heads, n, e int) {
					for h := range heads {
						box := pr.box(h)
						for i := range n {
							got, want := make([]float64, e), make([]float64, e)
							bound, ok := pr.row(h, i, box, got)
							runs++
							if !ok {
								continue
							}
							used++
							pr.accurate(h, i, want)
							for x := range e {
								err := math.Abs(got[x]-want[x]) / box.colMax[x]
								if box.colMax[x] == 0 {
									continue
								}
								if !(err <= bound+accurate.Error(pr.limit(h, i))) {
									t.Fatalf("case %d offset %g float32 %v head %d row %d column %d: |plain - accurate| = %.3g above the plain bound %.3g",
										ci, off, p32, h, i, x, err, bound)
								}
								if bound > 0 {
									worst = max(worst, err/bound)
								}
							}
						}
					}
				}
				if p32 {
					check(probe[float32]{attntest.To32(p)}, p.Heads, p.N, p.E)
				} else {
					check(probe[float64]{p}, p.Heads, p.N, p.E)
				}
			}
		}
	}
	if used < runs/2 {
		t.Errorf("the plain reference served %d of %d rows", used, runs)
	}
	t.Logf("%d rows, %d served by the plain reference, worst |plain - accurate| / plain bound %.3g", runs, used, worst)
}

// probe adapts one problem's rows to the test.
type probe[T attn.Float] struct{ p *attn.Problem[T] }

func (pr probe[T]) box(h int) headBox {
	return newHeadBox(pr.p, h, attn.ColumnMaxAbs(pr.p, h, pr.p.KeyLen(h)))
}
func (pr probe[T]) row(h, i int, box headBox, out []float64) (float64, bool) {
	return plainRow(pr.p, h, i, box, out)
}
func (pr probe[T]) accurate(h, i int, out []float64) { accurate.Row(pr.p, h, i, out) }
func (pr probe[T]) limit(h, i int) int               { return pr.p.KeyLimit(h, i) }

// TestPlainDeclines: masks, finite sinks and huge values go to the
// accurate reference.
func TestPlainDeclines(t *testing.T) {
	p := attntest.Case{Heads: 1, N: 3, M: 10, D: 2, E: 2, Sinks: []float64{0}}.Generate(1)
	out := make([]float64, 2)
	if _, ok := plainRow(p, 0, 0, newHeadBox(p, 0, attn.ColumnMaxAbs(p, 0, p.M)), out); ok {
		t.Error("a finite sink was served")
	}
	p = attntest.Case{Heads: 1, N: 3, M: 10, D: 2, E: 2, VScale: 1e300}.Generate(1)
	if _, ok := plainRow(p, 0, 0, newHeadBox(p, 0, attn.ColumnMaxAbs(p, 0, p.M)), out); ok {
		t.Error("values near the float64 limit were served")
	}
}

// BenchmarkForward times a 16-row check against 2^18 keys, d = 8, with a
// loose bound (the plain reference) and a tight one (the accurate).
func BenchmarkForward(b *testing.B) {
	p := attntest.To32(attntest.Case{Heads: 1, N: 64, M: 1 << 18, D: 8, E: 8}.Generate(1))
	out := attn.NewOutput(p)
	for _, bound := range []float64{1e-3, 1e-12} {
		b.Run("bound="+strconv.FormatFloat(bound, 'g', -1, 64), func(b *testing.B) {
			for b.Loop() {
				// The output is zeros: the check measures and fails, after
				// computing every reference row.
				Forward(p, out, bound, 16)
			}
		})
	}
}

// plainCases are the problems the plain reference is tested on.
func plainCases() []attntest.Case {
	w := &attn.Window{Left: 7, Right: 2}
	return []attntest.Case{
		{Heads: 2, N: 9, M: 300, D: 8, E: 3},
		{Heads: 4, KVHeads: 2, N: 12, M: 200, D: 4, E: 2, Causal: true},
		{Heads: 2, N: 20, M: 40, D: 3, E: 2, Causal: true, CausalAlign: attn.TopLeft, Window: w},
		{Heads: 2, N: 6, M: 50, D: 2, E: 2, KeyLens: []int{50, 17}},
		{Heads: 1, N: 8, M: 100, D: 2, E: 2, QScale: 30, KScale: 30},       // logits in the thousands
		{Heads: 1, N: 8, M: 100, D: 16, E: 5, VScale: 1e-200, Scale: 0.01}, // tiny values
		{Heads: 1, N: 5, M: 40000, D: 8, E: 8, KScale: 3},                  // several tasks of keys
	}
}

// TestPlainRowsBound: the rows plainRows serves (all rows of a head at
// once, keys in blocks shared among the cores) are within their a priori
// error of the accurate reference, on the problems of TestPlainRowBound
// with their key offsets, and it serves every row with a small logit
// bound that plainRow serves.
func TestPlainRowsBound(t *testing.T) {
	var served, total int
	for ci, c := range plainCases() {
		for _, off := range []float64{0, 1e4, 1e8} {
			p := c.Generate(uint64(ci + 1))
			for x := range p.K {
				p.K[x] += off
			}
			p32 := attntest.To32(p)
			for h := range p.Heads {
				box := newHeadBox(p32, h, attn.ColumnMaxAbs(p32, h, p32.KeyLen(h)))
				rows := allRows(p.N)
				out, refErr, ok := make([]float64, p.N*p.E), make([]float64, p.N), make([]bool, p.N)
				plainRows(p32, h, rows, box, out, refErr, ok)
				for i := range p.N {
					one := make([]float64, p.E)
					oneErr, oneOK := plainRow(p32, h, i, box, one)
					q := p32.Q[(h*p.N+i)*p.D : (h*p.N+i+1)*p.D]
					if a, _ := logitBound(p32, q, box); oneOK && a <= plainSmall && !ok[i] {
						t.Errorf("case %d offset %g head %d row %d: plainRow serves it, plainRows does not", ci, off, h, i)
					}
					total++
					if !ok[i] {
						continue
					}
					served++
					if refErr[i] != oneErr {
						t.Errorf("case %d head %d row %d: a priori error %.3g, plainRow's %.3g", ci, h, i, refErr[i], oneErr)
					}
					want := make([]float64, p.E)
					accurate.Row(p32, h, i, want)
					for x := range p.E {
						if box.colMax[x] == 0 {
							continue
						}
						err := math.Abs(out[i*p.E+x]-want[x]) / box.colMax[x]
						if !(err <= refErr[i]+accurate.Error(p32.KeyLimit(h, i))) {
							t.Fatalf("case %d offset %g head %d row %d column %d: |plainRows - accurate| = %.3g above its bound %.3g",
								ci, off, h, i, x, err, refErr[i])
						}
					}
				}
			}
		}
	}
	if served < total/2 {
		t.Errorf("plainRows served %d of %d rows", served, total)
	}
	t.Logf("plainRows served %d of %d rows", served, total)
}
