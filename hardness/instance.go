package hardness

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fastattn/fastattn/internal/npyfile"
	"github.com/fastattn/fastattn/internal/outfile"
)

// An instance directory holds one instance of either kind:
//
//	a.npy, b.npy          the vectors a_i and b_j, float64 0/1, one per row
//	q.npy, k.npy, v.npy   the attention instance, float64, 2-D
//	instance.json         the problem's parameters (t and eps, or tau and
//	                      gap), the reduction's (beta or lambda, scale,
//	                      threshold, attention_eps) and the planted pairs
//
// WriteInstance writes one, ReadInstance reads it back and Instance.Check
// answers it by brute force.

// InstanceFiles are the files of an instance directory; instance.json is
// written last.
var InstanceFiles = []string{"a.npy", "b.npy", "q.npy", "k.npy", "v.npy", "instance.json"}

// ErrBadInstance is wrapped by every error about the contents of an
// instance directory (as opposed to a failure to write one).
var ErrBadInstance = errors.New("invalid instance")

// InstanceInfo is what instance.json holds for every kind.
type InstanceInfo struct {
	Kind        string `json:"kind"`
	Description string `json:"description"`
	N           int    `json:"n"`
	M           int    `json:"m"`
	Dim         int    `json:"dim"`
	Seed        uint64 `json:"seed"`
	// The attention instance and its decision rule.
	Rows         int     `json:"rows"`
	Keys         int     `json:"keys"`
	AttentionDim int     `json:"attention_dim"`
	Queries      int     `json:"queries"`
	Scale        float64 `json:"scale"`
	EntryBound   float64 `json:"entry_bound"`
	Threshold    float64 `json:"threshold"`
	AttentionEps float64 `json:"attention_eps"`
	YesLower     float64 `json:"yes_lower"`
	NoUpper      float64 `json:"no_upper"`
}

// ANNFile is instance.json for a Gap-ANN instance.
type ANNFile struct {
	InstanceInfo
	T           int            `json:"t"`
	Eps         float64        `json:"eps"`
	FarDistance int            `json:"far_distance"`
	Beta        float64        `json:"beta"`
	Gamma       float64        `json:"gamma"`
	Ratio       float64        `json:"ratio"`
	Planted     []ANNPair      `json:"planted"`
	Decoys      []ANNPair      `json:"decoys"`
	Counts      map[string]int `json:"counts"`
}

// MaxIPFile is instance.json for a maximum inner product instance.
type MaxIPFile struct {
	InstanceInfo
	Tau     int            `json:"tau"`
	Gap     float64        `json:"gap"`
	Density float64        `json:"density"`
	Lambda  float64        `json:"lambda"`
	Planted []MaxIPPair    `json:"planted"`
	Decoys  []MaxIPPair    `json:"decoys"`
	Counts  map[string]int `json:"counts"`
}

func info(kind, desc string, a, b Vectors, seed uint64, att *Attention) InstanceInfo {
	return InstanceInfo{
		Kind: kind, Description: desc, N: a.N, M: b.N, Dim: a.Dim, Seed: seed,
		Rows: att.Rows, Keys: att.Keys, AttentionDim: att.Dim, Queries: att.Queries,
		Scale: att.Scale, EntryBound: att.EntryBound(), Threshold: att.Threshold, AttentionEps: att.Eps,
		YesLower: att.YesLower, NoUpper: att.NoUpper,
	}
}

// NewANNFile describes a generated Gap-ANN instance and its reduction,
// counting its yes, no and in-the-gap queries by brute force.
func NewANNFile(inst *ANNInstance, red *ANNReduction, seed uint64) *ANNFile {
	p := inst.Problem
	counts := map[string]int{"yes": 0, "no": 0, "gap": 0}
	for _, h := range p.Nearest() {
		switch {
		case h <= p.T:
			counts["yes"]++
		case p.InGap(h):
			counts["gap"]++
		default:
			counts["no"]++
		}
	}
	return &ANNFile{
		InstanceInfo: info("ann", "Gap approximate Hamming nearest neighbour: is some b_j within Hamming distance t of a_i (yes), or all farther than (1+eps) t (no)? Attention per Alman & Song, Lemma 4.7.",
			p.A, p.B, seed, &red.Attention),
		T: p.T, Eps: p.Eps, FarDistance: red.Far, Beta: red.Beta, Gamma: red.Gamma, Ratio: red.Ratio,
		Planted: nonNil(inst.Planted), Decoys: nonNil(inst.Decoys), Counts: counts,
	}
}

// NewMaxIPFile describes a generated maximum inner product instance and its
// reduction, counting its yes and no queries by brute force.
func NewMaxIPFile(inst *MaxIPInstance, red *MaxIPReduction, seed uint64, density float64) *MaxIPFile {
	p := inst.Problem
	yes := 0
	for _, a := range p.BruteForce() {
		if a {
			yes++
		}
	}
	return &MaxIPFile{
		InstanceInfo: info("maxip", "Maximum inner product: does some b_j have <a_i, b_j> >= tau (yes), or do all have <a_i, b_j> <= tau - gap (no)? Attention per Gupta et al. (docs/ALGORITHMS.md section 6).",
			p.A, p.B, seed, &red.Attention),
		Tau: int(p.Tau), Gap: p.Gap, Density: density, Lambda: red.Lambda,
		Planted: nonNil(inst.Planted), Decoys: nonNil(inst.Decoys),
		Counts: map[string]int{"yes": yes, "no": p.A.N - yes, "gap": 0},
	}
}

func nonNil[T any](x []T) []T {
	if x == nil {
		return []T{}
	}
	return x
}

// WriteInstance writes an instance directory (created if missing): the
// vectors, the attention tensors and meta as instance.json (an *ANNFile or
// *MaxIPFile). Every file is complete before any is put in place, so a
// failure leaves dir as it was.
func WriteInstance(dir string, a, b Vectors, att *Attention, meta any) error {
	js, err := outfile.JSONFile("instance.json", meta)
	if err != nil {
		return err
	}
	npy := func(name string, shape []int, data []float64) outfile.File {
		return outfile.File{Path: name, Fill: func(w io.Writer) error { return npyfile.Encode(w, shape, data) }}
	}
	return outfile.WriteDir(dir, []outfile.File{
		npy("a.npy", []int{a.N, a.Dim}, a.Data),
		npy("b.npy", []int{b.N, b.Dim}, b.Data),
		npy("q.npy", []int{att.Rows, att.Dim}, att.Q),
		npy("k.npy", []int{att.Keys, att.Dim}, att.K),
		npy("v.npy", []int{att.Keys, 1}, att.V),
		js,
	})
}

// Instance is an instance directory read back: its attention problem and
// the parameters Check needs.
type Instance struct {
	Dir       string
	Info      InstanceInfo
	Attention *Attention
	// Exactly one group is set, by Info.Kind.
	T   int     // ann
	Eps float64 // ann
	Tau float64 // maxip
	Gap float64 // maxip
}

// instanceHeader is what ReadInstance takes from instance.json.
type instanceHeader struct {
	InstanceInfo
	T   *int     `json:"t"`
	Eps *float64 `json:"eps"`
	Tau *float64 `json:"tau"`
	Gap *float64 `json:"gap"`
}

// ReadInstance loads instance.json and the attention tensors of dir and
// checks that they agree. Errors about the directory's contents wrap
// ErrBadInstance.
func ReadInstance(dir string) (*Instance, error) {
	jsonPath := filepath.Join(dir, "instance.json")
	raw, err := os.ReadFile(jsonPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not an instance directory: %v", ErrBadInstance, dir, err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrBadInstance, jsonPath, fmt.Sprintf(format, args...))
	}
	var h instanceHeader
	if err := json.Unmarshal(raw, &h); err != nil {
		return nil, bad("%v", err)
	}
	in := &Instance{Dir: dir, Info: h.InstanceInfo}
	switch h.Kind {
	case "ann":
		if h.T == nil || h.Eps == nil {
			return nil, bad("an ann instance needs t and eps")
		}
		in.T, in.Eps = *h.T, *h.Eps
	case "maxip":
		if h.Tau == nil || h.Gap == nil {
			return nil, bad("a maxip instance needs tau and gap")
		}
		in.Tau, in.Gap = *h.Tau, *h.Gap
	default:
		return nil, bad("unknown kind %q (want ann or maxip)", h.Kind)
	}
	finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
	switch {
	case !(h.Scale > 0) || !finite(h.Scale):
		return nil, bad("scale must be positive, got %g", h.Scale)
	case !finite(h.Threshold) || !(h.AttentionEps > 0) || !finite(h.AttentionEps):
		return nil, bad("threshold (%g) and attention_eps (%g) must be finite and attention_eps positive", h.Threshold, h.AttentionEps)
	case h.Queries < 1 || h.Queries > h.Rows:
		return nil, bad("queries (%d) must be in [1, rows = %d]", h.Queries, h.Rows)
	}
	att := &Attention{Rows: h.Rows, Keys: h.Keys, Dim: h.AttentionDim, Queries: h.Queries,
		Scale: h.Scale, Threshold: h.Threshold, Eps: h.AttentionEps, YesLower: h.YesLower, NoUpper: h.NoUpper}
	for _, f := range []struct {
		name  string
		dst   *[]float64
		shape []int
	}{{"q.npy", &att.Q, []int{h.Rows, h.AttentionDim}}, {"k.npy", &att.K, []int{h.Keys, h.AttentionDim}}, {"v.npy", &att.V, []int{h.Keys, 1}}} {
		path := filepath.Join(dir, f.name)
		arr, err := npyfile.Read(path)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadInstance, err)
		}
		if arr.F64 == nil {
			return nil, fmt.Errorf("%w: %s is %s; the instance is float64", ErrBadInstance, path, arr.DType())
		}
		if !slices.Equal(arr.Shape, f.shape) {
			return nil, fmt.Errorf("%w: %s has shape %v but instance.json says %v", ErrBadInstance, path, arr.Shape, f.shape)
		}
		*f.dst = arr.F64
	}
	in.Attention = att
	return in, nil
}

// Check compares answers with brute force on a.npy and b.npy.
type Check struct {
	BruteForce         []bool `json:"brute_force"`
	Agree              int    `json:"agree"`
	InGap              int    `json:"in_gap"`
	DisagreeOutsideGap int    `json:"disagree_outside_gap"`
}

// Check answers the instance by brute force from its vectors and compares
// with answers (one per query). Errors about the directory's contents wrap
// ErrBadInstance.
func (in *Instance) Check(answers []bool) (*Check, error) {
	vecs := make([]Vectors, 2)
	for i, name := range []string{"a.npy", "b.npy"} {
		path := filepath.Join(in.Dir, name)
		arr, err := npyfile.Read(path)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadInstance, err)
		}
		if arr.F64 == nil || len(arr.Shape) != 2 {
			return nil, fmt.Errorf("%w: %s must be a 2-D float64 array, got %s %v", ErrBadInstance, path, arr.DType(), arr.Shape)
		}
		if vecs[i], err = NewVectors(arr.F64, arr.Shape[0], arr.Shape[1]); err != nil {
			return nil, fmt.Errorf("%w: %s: %s", ErrBadInstance, path, strings.TrimPrefix(err.Error(), "hardness: "))
		}
	}
	if vecs[0].N != len(answers) {
		return nil, fmt.Errorf("%w: a.npy has %d vectors but the instance has %d queries", ErrBadInstance, vecs[0].N, len(answers))
	}
	c := &Check{}
	var gap func(i int) bool
	switch in.Info.Kind {
	case "ann":
		p := &ANN{A: vecs[0], B: vecs[1], T: in.T, Eps: in.Eps}
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadInstance, err)
		}
		near := p.Nearest()
		c.BruteForce = p.BruteForce()
		gap = func(i int) bool { return p.InGap(near[i]) }
	case "maxip":
		p := &MaxIP{A: vecs[0], B: vecs[1], Tau: in.Tau, Gap: in.Gap}
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadInstance, err)
		}
		best := p.MaxInner()
		c.BruteForce = p.BruteForce()
		gap = func(i int) bool { return p.InGap(best[i]) }
	default:
		return nil, fmt.Errorf("%w: unknown kind %q", ErrBadInstance, in.Info.Kind)
	}
	for i, a := range answers {
		switch {
		case gap(i):
			c.InGap++
		case a == c.BruteForce[i]:
			c.Agree++
		default:
			c.DisagreeOutsideGap++
		}
	}
	return c, nil
}
