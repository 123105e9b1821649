package hardness

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/fastattn/fastattn"
)

// Attention is the attention instance a reduction builds, with the rule that
// turns its output into answers. It has one head: Q is Rows x Dim, K is
// Keys x Dim and V is Keys x 1, all row-major float64, and the logits are
// Scale * Q K^T. Query i < Queries answers "yes" exactly when output entry i
// exceeds Threshold; the remaining rows (if any) are padding.
//
// The guarantee: on every query outside the problem's gap, the exact output
// is >= YesLower for a yes-instance and <= NoUpper for a no-instance, and
// Threshold = (YesLower + NoUpper)/2. Any output within Eps = (YesLower -
// NoUpper)/4 of the exact one (the library's error contract, max|V| being 1)
// therefore lands on the right side of Threshold, with as much room again to
// spare for rounding.
type Attention struct {
	Rows, Keys, Dim int
	Q, K, V         []float64
	Scale           float64
	Queries         int
	Threshold       float64
	Eps             float64
	// YesLower and NoUpper bound the exact output of yes and no queries.
	YesLower, NoUpper float64
}

// finish sets Threshold and Eps from YesLower and NoUpper.
func (a *Attention) finish() error {
	if !(a.YesLower > a.NoUpper) || !(a.NoUpper >= 0) {
		return fmt.Errorf("hardness: the reduction does not separate (yes >= %g, no <= %g)", a.YesLower, a.NoUpper)
	}
	a.Threshold = a.NoUpper + (a.YesLower-a.NoUpper)/2
	a.Eps = (a.YesLower - a.NoUpper) / 4
	if !(a.Eps > 0) || !(a.Threshold > 0) {
		return fmt.Errorf("hardness: the decision margin underflows float64 (yes >= %g, no <= %g); use a smaller dimension or a larger distance threshold", a.YesLower, a.NoUpper)
	}
	return nil
}

// Tensors returns Q, K and V as 2-D tensors for fastattn.Attend.
func (a *Attention) Tensors() (q, k, v fastattn.Tensor[float64]) {
	return fastattn.Tensor[float64]{Data: a.Q, Shape: []int{a.Rows, a.Dim}},
		fastattn.Tensor[float64]{Data: a.K, Shape: []int{a.Keys, a.Dim}},
		fastattn.Tensor[float64]{Data: a.V, Shape: []int{a.Keys, 1}}
}

// Decide turns an attention output column (at least Queries entries) into
// answers: true when the entry exceeds Threshold.
func (a *Attention) Decide(out []float64) []bool {
	ans := make([]bool, a.Queries)
	for i := range ans {
		ans[i] = out[i] > a.Threshold
	}
	return ans
}

// Solution is the answer of a reduction computed through attention.
type Solution struct {
	// Answers holds one decision per query.
	Answers []bool
	// Outputs holds the attention output of each query row.
	Outputs []float64
	// Report is the attention call's report.
	Report fastattn.Report
	// Certified is true when the method's a priori error bound is within
	// the reduction's budget Eps, so that every answer outside the gap is
	// guaranteed right.
	Certified bool
}

// Solve computes the attention instance with the named method of the
// library ("" for the default) and error target eps (0 means the
// reduction's budget a.Eps; when exact attention or auto cannot certify
// it, exact attention at the library's default target, uncertified), and
// decides every query.
func (a *Attention) Solve(ctx context.Context, method string, eps float64) (*Solution, error) {
	budget := eps == 0
	if budget {
		eps = a.Eps
	}
	q, k, v := a.Tensors()
	res, err := fastattn.Attend(ctx, q, k, v, fastattn.Options{Scale: a.Scale, Method: method, Eps: eps})
	if budget && errors.Is(err, fastattn.ErrUnsupported) && (method == "" || method == "exact" || method == fastattn.Auto) {
		// The budget is below what any method can certify (it can be
		// below float64's rounding): exact attention at the default
		// target, uncertified.
		res, err = fastattn.Attend(ctx, q, k, v, fastattn.Options{Scale: a.Scale, Method: "exact"})
	}
	if err != nil {
		return nil, err
	}
	return &Solution{
		Answers:   a.Decide(res.Out.Data),
		Outputs:   res.Out.Data[:a.Queries],
		Report:    res.Report,
		Certified: res.Report.ErrorBound <= a.Eps,
	}, nil
}

// EntryBound returns the largest magnitude among the entries of Q and K:
// the B of the papers when Scale is 1/Dim.
func (a *Attention) EntryBound() float64 {
	var b float64
	for _, x := range a.Q {
		b = max(b, math.Abs(x))
	}
	for _, x := range a.K {
		b = max(b, math.Abs(x))
	}
	return b
}
