// Package anytemp is attention with any temperature for small or low-rank
// head dimension (Gupta, Huang, Saha, Xu & Ye, 2025), with the project's
// entrywise guarantee
//
//	|T_ij - Att_ij| <= eps * max_l |V_lj|
//
// for logits of any size, in float32 and float64.
//
// Per query row: the largest logit by branch and bound on a kd-tree of the
// keys (centred, and projected on the top principal directions of K or Q
// when their numerical rank is lower than d, the truncation charged to the
// budget); keys more than t = ln(L/eps_drop) below it dropped; nodes narrow
// in the query's direction summed through Taylor expansions about their own
// centre (each term provably small, degree chosen per node), evaluated for
// batches of rows node by node with a SIMD kernel of dot products; leaves
// summed directly. One-dimensional rows use the paper's cells of width
// ln(1+eps) over sorted keys with prefix sums when that needs few cells.
// Causal masks decompose each prefix of keys into aligned power-of-two
// blocks with their own trees; sliding windows cover each row's key range
// the same way, as a segment tree would, with short unaligned edges summed
// directly (forward and backward).
//
// Stats.ErrorBound is the certified a priori bound (<= Problem.Eps), from
// the budget documented on type budget; every call also checks sampled rows
// against the accurate reference of internal/check. Method implements
// attn.Planner from a pilot run on a sample.
//
// The backward pass is measured, not certified: its error is stated per
// tensor in units of the magnitude of the terms each entry sums (for dQ,
// max s sum_j P_ij (|dO_i.v_j| + |Delta_i|) |k_jt|), within 2 eps in the
// adversarial suite. A row's window keeps keys whose values are large next
// to its output, and its Delta_i = dO_i.O_i comes from the keys it sums. See docs/anytemp.md for when it pays and the
// measured speed-ups.
package anytemp
