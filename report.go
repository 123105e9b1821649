package fastattn

import (
	"runtime/debug"
	"sync"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/kernels"
)

// CallReport holds what every report says about one call: what ran, on
// what, how fast, and the build that ran it. Report and GradReport embed it,
// so its fields appear at the top level of both, in Go and in JSON.
type CallReport struct {
	Method string `json:"method"`
	DType  string `json:"dtype"`
	// Batch is the product of the leading dimensions (batch*heads).
	Batch  int     `json:"batch_heads"`
	N      int     `json:"n"`
	M      int     `json:"m"`
	D      int     `json:"d"`
	E      int     `json:"e"`
	Scale  float64 `json:"scale"`
	Causal bool    `json:"causal"`
	// KVHeads is the number of key/value heads (batch * kv heads) when
	// fewer than Batch (grouped-query attention), else 0.
	KVHeads     int     `json:"kv_heads,omitempty"`
	CausalAlign string  `json:"causal_align,omitempty"` // "top-left" when not the default
	Window      *Window `json:"window,omitempty"`
	Mask        bool    `json:"mask,omitempty"`         // a mask tensor was applied
	Sinks       bool    `json:"sinks,omitempty"`        // attention sinks were in the softmax
	KVFormat    string  `json:"kv_format,omitempty"`    // "float16" or "bfloat16" for 16-bit keys and values
	QOFormat    string  `json:"q_out_format,omitempty"` // the same when the queries and output are 16-bit too (AttendHalf)
	Eps         float64 `json:"eps"`
	// Seconds is the call's wall time. Flops is the number of floating-point
	// operations the method itself performed (multiply and add counted
	// separately), and GFlops is Flops / Seconds / 1e9: the method's own
	// throughput, not a comparison between methods (for that, divide one
	// method's flop count, for example exact attention's, by each time).
	Seconds float64 `json:"seconds"`
	Flops   float64 `json:"flops"`
	GFlops  float64 `json:"gflops_per_second"`
	// ExactFlops is exact attention's forward flop count on this input,
	// 2 (d + e) per (query, key) pair inside the rows' key ranges (padding,
	// causal mask, window): one scale on which to compare methods' times
	// (the command line prints ExactFlops / Seconds as GFLOP/s).
	ExactFlops float64 `json:"exact_flops"`
	// Reason says why this method was chosen.
	Reason string `json:"reason,omitempty"`
	// Note says what the caller may want to know about an explicitly
	// chosen method, such as that it was predicted slower than exact
	// attention on this input.
	Note string `json:"note,omitempty"`
	// PredictedSlowerThanExact is set when the method was named explicitly
	// and the planners predicted it slower than exact attention; it ran
	// anyway, and Note gives both predictions.
	PredictedSlowerThanExact bool `json:"predicted_slower_than_exact,omitempty"`
	// Details holds method-specific facts (degree, rank, tree depth, ...).
	Details map[string]any `json:"details,omitempty"`
	// Version is this library's version (see Version) and Kernels the code
	// path of the SIMD kernels used: "avx512", "avx2" or "go".
	Version string `json:"version"`
	Kernels string `json:"kernels"`
}

// newCallReport fills the fields that come from the problem and the build.
func newCallReport[T Float](method string, p *attn.Problem[T], secs float64, st attn.Stats) CallReport {
	r := CallReport{
		Method: method, DType: attn.DTypeName[T](),
		Batch: p.Heads, N: p.N, M: p.M, D: p.D, E: p.E,
		Scale: p.Scale, Causal: p.Causal, Eps: p.Eps,
		Seconds: secs, Flops: st.Flops, GFlops: st.Flops / secs / 1e9,
		ExactFlops: 2 * float64(p.D+p.E) * pairs(p),
		Details:    st.Details, Version: Version(), Kernels: kernels.Implementation(),
	}
	recordOptions(&r, p)
	return r
}

// pairs counts the (query, key) pairs inside the rows' key ranges.
func pairs[T Float](p *attn.Problem[T]) float64 {
	var total float64
	for h := range p.Heads {
		if !p.Causal && p.Window == nil {
			total += float64(p.N) * float64(p.KeyLen(h))
			continue
		}
		for i := range p.N {
			lo, hi := p.KeyRange(h, i)
			total += float64(hi - lo)
		}
	}
	return total
}

// Version returns the library's version: the module version when fastattn
// is built as a dependency, or "devel" followed by the commit (and
// "+dirty" for uncommitted changes) when it is built from its own source
// tree, when the build recorded one.
func Version() string { return version() }

var version = sync.OnceValue(func() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	const path = "github.com/fastattn/fastattn"
	for _, dep := range info.Deps {
		if dep.Path == path && dep.Version != "" && dep.Version != "(devel)" {
			return dep.Version
		}
	}
	if info.Main.Path == path && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	v, dirty := "devel", ""
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v += " " + s.Value[:min(len(s.Value), 12)]
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	return v + dirty
})
