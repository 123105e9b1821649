package attntest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/reference"
)

// This file is the gradient conformance suite every attn.Differentiable
// runs. It checks, for float64 and float32 on the forward cases (Cases) and
// on small cases for every option (GradCases):
//
//   - against the float64 reference gradient (reference.Gradient): for each
//     head and each of dQ, dK, dV,
//
//     max |G - G_ref| <= Tol * max Mag
//
//     over the head's entries, where Mag_x is the magnitude of the terms
//     entry x of the gradient sums (reference.Grad). Mag is the honest
//     denominator of a relative error: it is of the size of the gradient
//     unless the gradient is a cancellation of large terms (a one-hot
//     softmax, where dQ and dK are rounding noise), where no computation
//     can do better than a few ulps of Mag;
//   - against central finite differences of the method's own Forward64, in
//     float64, on GradCases: the backward must be the derivative of the
//     forward the method computes (for an approximate method, the exact
//     gradient of its approximation);
//   - structural zeros: keys no query sees (padding, causal) get exactly
//     zero dK and dV, rows with no valid key exactly zero dQ;
//   - that Backward overwrites every entry of the gradients, leaves its
//     inputs unchanged and stops on a cancelled context.

// GradConfig says how a method's gradients are judged.
type GradConfig struct {
	// Eps is passed to the method as Problem.Eps (0 for exact methods).
	Eps float64
	// Tol64 and Tol32 bound the error against the float64 reference
	// gradient, relative to the head's largest term magnitude (see above).
	// Zero values mean 1e-9 and 2e-5: what an exact method must meet. An
	// approximate method states its own, of the order of its Eps.
	Tol64, Tol32 float64
	// FDTol bounds the disagreement between Backward64 and central finite
	// differences of Forward64, relative to the same scale, on top of the
	// differences' own rounding noise. Zero means 1e-6. A negative value
	// skips the finite differences, for a method whose forward pass is not
	// differentiable (piecewise choices that move under a step of 1e-5);
	// say why where you set it.
	FDTol float64
	// FDReference, if set, takes the finite differences of the float64
	// reference attention instead of the method's own forward: the
	// backward is then checked to be close to the true gradient, with
	// tolerance FDTol. Use it for methods whose Backward is not the
	// derivative of their Forward.
	FDReference bool
	// AllowUnsupported lets the method decline a case with an error
	// wrapping attn.ErrUnsupported (from Forward or Backward); the case is
	// then logged, not failed.
	AllowUnsupported bool
}

func (c GradConfig) tols() (tol64, tol32, fd float64) {
	tol64, tol32, fd = c.Tol64, c.Tol32, c.FDTol
	if tol64 == 0 {
		tol64 = 1e-9
	}
	if tol32 == 0 {
		tol32 = 2e-5
	}
	if fd == 0 {
		fd = 1e-6
	}
	return tol64, tol32, fd
}

// GradCases are small inputs, one or more per option, on which every entry
// of the gradient is checked by finite differences.
func GradCases() []Case {
	return []Case{
		{Name: "fd-1x1x1", Heads: 1, N: 1, M: 1, D: 1, E: 1},
		{Name: "fd-square", Heads: 1, N: 6, M: 6, D: 4, E: 3},
		{Name: "fd-cross", Heads: 1, N: 3, M: 9, D: 5, E: 2},
		{Name: "fd-more-queries", Heads: 1, N: 9, M: 3, D: 3, E: 2},
		{Name: "fd-batched", Heads: 3, N: 4, M: 5, D: 3, E: 3},
		{Name: "fd-causal", Heads: 2, N: 6, M: 6, D: 3, E: 3, Causal: true},
		{Name: "fd-causal-decode", Heads: 1, N: 3, M: 8, D: 3, E: 2, Causal: true},
		{Name: "fd-causal-more-queries", Heads: 1, N: 8, M: 5, D: 3, E: 2, Causal: true},
		{Name: "fd-padding", Heads: 3, N: 4, M: 6, D: 3, E: 2, KeyLens: []int{6, 1, 0}},
		{Name: "fd-padding-causal", Heads: 2, N: 5, M: 6, D: 3, E: 2, Causal: true, KeyLens: []int{4, 6}},
		{Name: "fd-paper-scale", Heads: 1, N: 5, M: 7, D: 4, E: 3, Scale: 1.0 / 4},
		{Name: "fd-large-scale", Heads: 1, N: 5, M: 7, D: 4, E: 3, Scale: 3},
		{Name: "fd-tiny-scale", Heads: 1, N: 5, M: 7, D: 4, E: 3, Scale: 1e-4},
		{Name: "fd-large-values", Heads: 1, N: 5, M: 7, D: 4, E: 3, VScale: 1e3},
		{Name: "fd-tiles", Heads: 1, N: 70, M: 140, D: 2, E: 2, Causal: true},
		{Name: "fd-gqa", Heads: 4, KVHeads: 2, N: 3, M: 5, D: 3, E: 2},
		{Name: "fd-mqa-causal", Heads: 3, KVHeads: 1, N: 4, M: 6, D: 3, E: 2, Causal: true},
		{Name: "fd-top-left", Heads: 1, N: 4, M: 7, D: 3, E: 2, Causal: true, CausalAlign: attn.TopLeft},
		{Name: "fd-top-left-tall", Heads: 1, N: 7, M: 4, D: 3, E: 2, Causal: true, CausalAlign: attn.TopLeft},
		{Name: "fd-window", Heads: 2, N: 6, M: 8, D: 3, E: 2, Window: &attn.Window{Left: 2, Right: 1}},
		{Name: "fd-window-causal-padding", Heads: 2, N: 5, M: 8, D: 3, E: 2, Causal: true, Window: &attn.Window{Left: 1, Right: -1}, KeyLens: []int{8, 3}},
		{Name: "fd-mask-bool", Heads: 2, N: 5, M: 6, D: 3, E: 2, Mask: &MaskSpec{Heads: true, Rows: true, Keys: true, FullyMaskedRows: true}},
		{Name: "fd-mask-additive", Heads: 2, N: 5, M: 6, D: 3, E: 2, Causal: true, Mask: &MaskSpec{Additive: true, Rows: true, Keys: true}},
		{Name: "fd-sinks", Heads: 2, N: 4, M: 5, D: 3, E: 2, Sinks: []float64{0.3, 2}},
		{Name: "fd-sinks-gqa-padding", Heads: 4, Batch: 2, KVHeads: 2, N: 4, M: 5, D: 3, E: 2, Causal: true, KeyLens: []int{5, 5, 0, 0}, Sinks: []float64{-1, 1}},
		{Name: "fd-sinks-offset-keys", Heads: 2, N: 4, M: 6, D: 3, E: 2, Sinks: []float64{0.5, -1}, Shape: offsetKeys},
		{Name: "fd-tiles-gqa-window", Heads: 2, KVHeads: 1, N: 70, M: 300, D: 2, E: 2, Causal: true, Window: &attn.Window{Left: 140, Right: 0}, Sinks: []float64{1, -1}},
	}
}

// GradError is what one comparison measured, per gradient.
type GradError struct {
	// Rel is max |G - G_ref| / max Mag over each head, the quantity the
	// tolerances bound, maximised over heads.
	Rel [3]float64
	// Plain is max |G - G_ref| / max |G_ref| over each head, maximised over
	// heads whose gradient is not a cancellation (max |G_ref| >= 1e-3 max Mag);
	// it is the figure people usually quote.
	Plain [3]float64
}

func (e *GradError) merge(o GradError) {
	for x := range 3 {
		e.Rel[x] = max(e.Rel[x], o.Rel[x])
		e.Plain[x] = max(e.Plain[x], o.Plain[x])
	}
}

func (e GradError) String() string {
	return fmt.Sprintf("dQ %.2g dK %.2g dV %.2g (plain relative: %.2g %.2g %.2g)",
		e.Rel[0], e.Rel[1], e.Rel[2], e.Plain[0], e.Plain[1], e.Plain[2])
}

// GradSummary is the worst of every case RunGrad checked.
type GradSummary struct {
	Ref64, Ref32 GradError // against the reference gradient
	FD           GradError // Backward64 against finite differences
}

var gradNames = [3]string{"dQ", "dK", "dV"}

// RunGrad runs the gradient conformance suite and returns the largest
// errors it saw, for the method's tests to log or record.
func RunGrad(t *testing.T, m attn.Differentiable, cfg GradConfig) GradSummary {
	tol64, tol32, fdTol := cfg.tols()
	var sum GradSummary
	for _, c := range append(append(Cases(), OptionCases()...), GradCases()...) {
		t.Run(c.Name, func(t *testing.T) {
			p64 := c.Generate(1)
			p64.Eps = cfg.Eps
			if err := p64.Validate(); err != nil {
				t.Fatalf("case %s is invalid: %v", c.Name, err)
			}
			dO := GradOutput(p64, 2)
			e, err := CheckGrad(m, p64, dO, tol64, cfg.AllowUnsupported)
			if err != nil {
				t.Errorf("float64: %v", err)
			}
			sum.Ref64.merge(e)
			t.Logf("float64 vs reference: %v", e)
			e, err = CheckGrad(m, To32(p64), to32(dO), tol32, cfg.AllowUnsupported)
			if err != nil {
				t.Errorf("float32: %v", err)
			}
			sum.Ref32.merge(e)
			t.Logf("float32 vs reference: %v", e)
			for _, f := range []attn.HalfFormat{attn.Float16, attn.BFloat16} {
				// 16-bit keys and values, float32 gradients: against the
				// reference on the rounded values.
				if ph := ToHalfKV(To32(p64), f); ph != nil {
					e, err := CheckGrad(m, ph, to32(dO), tol32, cfg.AllowUnsupported)
					if err != nil {
						t.Errorf("%v keys and values: %v", f, err)
					}
					sum.Ref32.merge(e)
				}
			}
			if fdTol > 0 && len(c.Name) > 3 && c.Name[:3] == "fd-" {
				e, err := CheckGradFD(m, p64, dO, fdTol, cfg.FDReference, cfg.AllowUnsupported)
				if err != nil {
					t.Errorf("finite differences: %v", err)
				}
				sum.FD.merge(e)
				t.Logf("float64 vs finite differences: %v", e)
			}
		})
	}
	t.Run("cancelled", func(t *testing.T) { checkGradCancelled(t, m, cfg) })
	t.Logf("%s gradients, worst over all cases:\n  float64 vs reference: %v\n  float32 vs reference: %v\n  float64 vs finite differences: %v",
		m.Name(), sum.Ref64, sum.Ref32, sum.FD)
	return sum
}

// GradOutput returns a random loss gradient dO for p (Heads*N*E standard
// normal entries).
func GradOutput(p *attn.Problem[float64], seed uint64) []float64 {
	r := rand.New(rand.NewPCG(seed, 0xd0))
	dO := make([]float64, p.Heads*p.N*p.E)
	for i := range dO {
		dO[i] = r.NormFloat64()
	}
	return dO
}

func to32(x []float64) []float32 {
	y := make([]float32, len(x))
	for i, v := range x {
		y[i] = float32(v)
	}
	return y
}

// CheckGrad runs m's forward and backward on p with loss gradient dO and
// compares the gradients with the float64 reference (see the top of this
// file for the measure tol bounds). It also checks structural zeros, that
// every output entry is written and that the inputs are left unchanged.
// An ErrUnsupported passes when allowUnsupported is set.
func CheckGrad[T attn.Float](m attn.Differentiable, p *attn.Problem[T], dO []T, tol float64, allowUnsupported bool) (GradError, error) {
	ctx := context.Background()
	out := attn.NewOutput(p)
	_, err := attn.Forward(ctx, m, p, out)
	if missing := p.Features() &^ attn.SupportedFeatures(m, false); missing != 0 {
		return GradError{}, checkDeclined(m, err, missing)
	}
	if err != nil {
		if allowUnsupported && errors.Is(err, attn.ErrUnsupported) {
			return GradError{}, nil
		}
		return GradError{}, fmt.Errorf("%s forward failed: %w", m.Name(), err)
	}
	g := attn.NewGradients(p)
	nan := T(math.NaN())
	for _, x := range [][]T{g.DQ, g.DK, g.DV} {
		for i := range x {
			x[i] = nan
		}
	}
	before := [][]T{slices.Clone(p.Q), slices.Clone(p.K), slices.Clone(p.V), slices.Clone(out.O), slices.Clone(dO)}
	lseBefore := slices.Clone(out.LSE)
	_, err = attn.Backward(ctx, m, p, out, dO, g)
	if missing := p.Features() &^ attn.SupportedFeatures(m, true); missing != 0 {
		return GradError{}, checkDeclined(m, err, missing)
	}
	if err != nil {
		if allowUnsupported && errors.Is(err, attn.ErrUnsupported) {
			return GradError{}, nil
		}
		return GradError{}, fmt.Errorf("%s backward failed: %w", m.Name(), err)
	}
	for x, now := range [][]T{p.Q, p.K, p.V, out.O, dO} {
		if !slices.Equal(before[x], now) {
			return GradError{}, fmt.Errorf("backward modified its input %s", []string{"Q", "K", "V", "O", "dO"}[x])
		}
	}
	if !slices.Equal(lseBefore, out.LSE) {
		return GradError{}, fmt.Errorf("backward modified the log-sum-exp")
	}
	ref := reference.Gradient(p, dO)
	if err := checkStructuralZeros(p, g); err != nil {
		return GradError{}, err
	}
	if err := compareSinks(g.DSinks, ref.DSinks, ref.MagSinks, nil, tol, "reference"); err != nil {
		return GradError{}, err
	}
	return compareGrad(p, [3][]T{g.DQ, g.DK, g.DV}, ref, tol, "reference")
}

// compareSinks checks the sinks' gradient against want within tol times
// the largest magnitude plus noise (entrywise, may be nil).
func compareSinks(got, want, mag, noise []float64, tol float64, against string) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d sink gradients, want %d", len(got), len(want))
	}
	var maxMag float64
	for _, m := range mag {
		maxMag = max(maxMag, m)
	}
	for x := range want {
		allowed := tol * maxMag
		if noise != nil {
			allowed += noise[x]
		}
		if d := math.Abs(got[x] - want[x]); !(d <= allowed) {
			return fmt.Errorf("dSinks[%d]: got %g, %s %g: error %.3g > %.3g", x, got[x], against, want[x], d, allowed)
		}
	}
	return nil
}

// checkStructuralZeros checks that keys no query of their group sees
// (padding, causal mask, window, mask tensor) and rows with no valid key
// have exactly zero gradients.
func checkStructuralZeros[T attn.Float](p *attn.Problem[T], g *attn.Gradients[T]) error {
	seen := make([]bool, p.KVHeadCount()*p.M)
	for h := range p.Heads {
		kh := p.KVHead(h)
		for i := range p.N {
			lo, hi := p.KeyRange(h, i)
			any := false
			for j := lo; j < hi; j++ {
				if p.Mask == nil || !math.IsInf(p.Mask.Logit(h, i, j), -1) {
					seen[kh*p.M+j], any = true, true
				}
			}
			if any {
				continue
			}
			for t, v := range g.DQ[(h*p.N+i)*p.D : (h*p.N+i+1)*p.D] {
				if v != 0 {
					return fmt.Errorf("head %d row %d has no valid key but dQ[%d] = %g, want 0", h, i, t, v)
				}
			}
		}
	}
	for x, s := range seen {
		if s {
			continue
		}
		for t, v := range g.DK[x*p.D : (x+1)*p.D] {
			if v != 0 {
				return fmt.Errorf("key/value head %d key %d is masked for every query but dK[%d] = %g, want 0", x/p.M, x%p.M, t, v)
			}
		}
		for t, v := range g.DV[x*p.E : (x+1)*p.E] {
			if v != 0 {
				return fmt.Errorf("key/value head %d key %d is masked for every query but dV[%d] = %g, want 0", x/p.M, x%p.M, t, v)
			}
		}
	}
	return nil
}

// compareGrad measures got against want head by head and fails if any
// error exceeds tol times the head's largest magnitude.
func compareGrad[T attn.Float](p *attn.Problem[T], got [3][]T, want *reference.Grad, tol float64, against string) (GradError, error) {
	var res GradError
	refs := [3][]float64{want.DQ, want.DK, want.DV}
	mags := [3][]float64{want.MagQ, want.MagK, want.MagV}
	rowLen := [3]int{p.N * p.D, p.M * p.D, p.M * p.E}
	cols := [3]int{p.D, p.D, p.E}
	heads := [3]int{p.Heads, p.KVHeadCount(), p.KVHeadCount()}
	var firstErr error
	for x := range 3 {
		for h := range heads[x] {
			lo, hi := h*rowLen[x], (h+1)*rowLen[x]
			var maxMag, maxRef, maxErr float64
			worst := -1
			for i := lo; i < hi; i++ {
				maxMag = max(maxMag, mags[x][i])
				maxRef = max(maxRef, math.Abs(refs[x][i]))
				d := math.Abs(float64(got[x][i]) - refs[x][i])
				if !(d <= maxErr) { // NaN counts as the worst
					maxErr, worst = d, i
					if math.IsNaN(d) {
						maxErr = math.Inf(1)
					}
				}
			}
			if worst < 0 {
				continue
			}
			rel := maxErr / maxMag
			if maxMag == 0 {
				rel = 0
				if maxErr > 0 {
					rel = math.Inf(1)
				}
			}
			res.Rel[x] = max(res.Rel[x], rel)
			if maxRef >= 1e-3*maxMag && maxRef > 0 {
				res.Plain[x] = max(res.Plain[x], maxErr/maxRef)
			}
			if !(rel <= tol) && firstErr == nil {
				i := worst - lo
				firstErr = fmt.Errorf("%s head %d [%d, %d]: got %g, %s %g: error %.3g > %.3g * max magnitude %.3g (relative %.3g)",
					gradNames[x], h, i/cols[x], i%cols[x], float64(got[x][worst]), against, refs[x][worst], maxErr, tol, maxMag, rel)
			}
		}
	}
	return res, firstErr
}

// CheckGradFD compares m's Backward64 on p (float64) with central finite
// differences of the loss sum(dO o O) through m's own Forward64 (or the
// reference attention, if ofReference), entry by entry of Q, K and V. The
// allowed error is tol times the head's largest term magnitude plus the
// differences' rounding noise.
func CheckGradFD(m attn.Differentiable, p *attn.Problem[float64], dO []float64, tol float64, ofReference, allowUnsupported bool) (GradError, error) {
	ctx := context.Background()
	out := attn.NewOutput(p)
	if p.Features()&^attn.SupportedFeatures(m, true) != 0 {
		return GradError{}, nil // CheckGrad checks the decline
	}
	if _, err := m.Forward64(ctx, p, out); err != nil {
		if allowUnsupported && errors.Is(err, attn.ErrUnsupported) {
			return GradError{}, nil
		}
		return GradError{}, fmt.Errorf("%s forward failed: %w", m.Name(), err)
	}
	g := attn.NewGradients(p)
	if _, err := m.Backward64(ctx, p, out, dO, g); err != nil {
		if allowUnsupported && errors.Is(err, attn.ErrUnsupported) {
			return GradError{}, nil
		}
		return GradError{}, fmt.Errorf("%s backward failed: %w", m.Name(), err)
	}
	// The perturbed problem: copies, so p is untouched.
	q := *p
	q.Q, q.K, q.V = slices.Clone(p.Q), slices.Clone(p.K), slices.Clone(p.V)
	qOut := attn.NewOutput(&q)
	var fdErr error
	loss := func() (l, labs float64) {
		o := qOut.O
		if ofReference {
			o, _ = reference.Attention(&q)
		} else if _, err := m.Forward64(ctx, &q, qOut); err != nil && fdErr == nil {
			fdErr = fmt.Errorf("%s forward failed on a perturbed input: %w", m.Name(), err)
		}
		for i, v := range o {
			l += dO[i] * v
			labs += math.Abs(dO[i] * v)
		}
		return l, labs
	}
	fd := reference.Grad{
		DQ: make([]float64, len(p.Q)), DK: make([]float64, len(p.K)), DV: make([]float64, len(p.V)),
	}
	ref := reference.Gradient(p, dO)
	noise := [3][]float64{make([]float64, len(p.Q)), make([]float64, len(p.K)), make([]float64, len(p.V))}
	step := func(v float64) float64 { return 1e-4 * max(1, math.Abs(v)) }
	for x, in := range [][]float64{q.Q, q.K, q.V} {
		dst := [][]float64{fd.DQ, fd.DK, fd.DV}[x]
		for i, v := range in {
			// The five-point stencil: truncation error O(step^4), so that
			// what remains is the rounding of the losses.
			var l [4]float64
			var labs float64
			for s, k := range [4]float64{2, 1, -1, -2} {
				in[i] = v + k*step(v)
				l[s], labs = loss()
			}
			in[i] = v
			h := step(v)
			dst[i] = (8*(l[1]-l[2]) - (l[0] - l[3])) / (12 * h)
			// Each loss is a sum rounded to about 1e-16 of its terms'
			// magnitudes, plus the forward's own rounding; 64 ulps each is
			// ample, and the stencil's weights sum to 18/12.
			noise[x][i] = 64 * 0x1p-52 * labs * 18 / (12 * h)
		}
	}
	if q.Sinks != nil {
		q.Sinks = slices.Clone(p.Sinks)
		fdSinks := make([]float64, len(q.Sinks))
		noiseSinks := make([]float64, len(q.Sinks))
		for x, v := range q.Sinks {
			if math.IsInf(v, -1) {
				continue // no sink: its gradient is 0
			}
			var l [4]float64
			var labs float64
			for s, k := range [4]float64{2, 1, -1, -2} {
				q.Sinks[x] = v + k*step(v)
				l[s], labs = loss()
			}
			q.Sinks[x] = v
			h := step(v)
			fdSinks[x] = (8*(l[1]-l[2]) - (l[0] - l[3])) / (12 * h)
			noiseSinks[x] = 64 * 0x1p-52 * labs * 18 / (12 * h)
		}
		if err := compareSinks(g.DSinks, fdSinks, ref.MagSinks, noiseSinks, tol, "finite difference"); err != nil {
			return GradError{}, err
		}
	}
	if fdErr != nil {
		return GradError{}, fdErr
	}
	// Finite differences are the reference here; their magnitudes come
	// from the reference gradient, with the noise floor added entrywise
	// through the per-head maximum.
	fd.MagQ, fd.MagK, fd.MagV = ref.MagQ, ref.MagK, ref.MagV
	res, err := compareGradFD(p, [3][]float64{g.DQ, g.DK, g.DV}, &fd, noise, tol)
	return res, err
}

// compareGradFD is compareGrad with an entrywise noise allowance.
func compareGradFD(p *attn.Problem[float64], got [3][]float64, fd *reference.Grad, noise [3][]float64, tol float64) (GradError, error) {
	var res GradError
	refs := [3][]float64{fd.DQ, fd.DK, fd.DV}
	mags := [3][]float64{fd.MagQ, fd.MagK, fd.MagV}
	rowLen := [3]int{p.N * p.D, p.M * p.D, p.M * p.E}
	cols := [3]int{p.D, p.D, p.E}
	heads := [3]int{p.Heads, p.KVHeadCount(), p.KVHeadCount()}
	for x := range 3 {
		for h := range heads[x] {
			lo, hi := h*rowLen[x], (h+1)*rowLen[x]
			var maxMag float64
			for i := lo; i < hi; i++ {
				maxMag = max(maxMag, mags[x][i])
			}
			for i := lo; i < hi; i++ {
				d := math.Abs(got[x][i] - refs[x][i])
				allowed := tol*maxMag + noise[x][i]
				if maxMag > 0 {
					res.Rel[x] = max(res.Rel[x], d/maxMag)
				}
				if !(d <= allowed) {
					j := i - lo
					return res, fmt.Errorf("%s head %d [%d, %d]: backward %g, finite difference %g: error %.3g > %.3g * max magnitude %.3g + noise %.3g",
						gradNames[x], h, j/cols[x], j%cols[x], got[x][i], refs[x][i], d, tol, maxMag, noise[x][i])
				}
			}
		}
	}
	return res, nil
}

func checkGradCancelled(t *testing.T, m attn.Differentiable, cfg GradConfig) {
	p := Case{Heads: 4, N: 256, M: 256, D: 8, E: 8}.Generate(3)
	p.Eps = cfg.Eps
	out := attn.NewOutput(p)
	if _, err := m.Forward64(context.Background(), p, out); err != nil {
		if cfg.AllowUnsupported && errors.Is(err, attn.ErrUnsupported) {
			t.Skipf("forward declined: %v", err)
		}
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := m.Backward64(ctx, p, out, GradOutput(p, 1), attn.NewGradients(p))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("with a cancelled context %s's backward returned %v, want context.Canceled", m.Name(), err)
	}
}
