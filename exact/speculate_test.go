package exact

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/attn/attntest"
)

// TestSpeculatedMatchesPlanned checks certified calls computed in one pass
// (speculated) against the same calls planned first: the same output and
// log-sum-exp bits, bound and details, or the same error; that the pass
// is taken where the statistics ask for nothing (else the comparison
// would be vacuous) and not where they ask for centring, scaling, more
// precision, or meet a NaN or an Inf, leaving the output as it was; and
// that calls that are not decoding-shaped are not computed that way. With
// 16-bit keys and values (float32 queries) the planned call is the one on
// their widened copies.
func TestSpeculatedMatchesPlanned(t *testing.T) {
	offset := func(x float64) func(*rand.Rand, *attn.Problem[float64]) {
		return func(_ *rand.Rand, p *attn.Problem[float64]) {
			for i := range p.K {
				p.K[i] += x
			}
		}
	}
	setFirst := func(x float64, keys bool) func(*rand.Rand, *attn.Problem[float64]) {
		return func(_ *rand.Rand, p *attn.Problem[float64]) {
			if keys {
				p.K[len(p.K)/2] = x
			} else {
				p.V[len(p.V)/3] = x
			}
		}
	}
	type specCase struct {
		c            attntest.Case
		eps          float64
		want, want64 bool // the one pass is kept in float32, in float64
	}
	cases := []specCase{
		{attntest.Case{Heads: 1, N: 1, M: 5000, D: 64, E: 64}, 0, true, true},
		{attntest.Case{Heads: 8, KVHeads: 2, N: 1, M: 3000, D: 128, E: 128}, 0, true, true},
		{attntest.Case{Heads: 4, KVHeads: 2, N: 3, M: 700, D: 16, E: 8, Causal: true}, 0, true, true},
		{attntest.Case{Heads: 4, KVHeads: 1, N: 2, M: 900, D: 32, E: 16, KeyLens: []int{900, 500, 700, 1}}, 0, true, true},
		{attntest.Case{Heads: 2, N: 1, M: 600, D: 8, E: 8, Sinks: []float64{0.5, -1}}, 0, true, true},
		{attntest.Case{Heads: 2, N: 4, M: 300, D: 8, E: 4, Mask: &attntest.MaskSpec{Additive: true, Heads: true, Rows: true, Keys: true}}, 0, true, true},
		{attntest.Case{Heads: 2, N: 1, M: 300, D: 8, E: 4, Mask: &attntest.MaskSpec{Keys: true}}, 0, true, true},
		{attntest.Case{Heads: 1, N: 1, M: 2000, D: 32, E: 32}, 1e-3, true, true},
		// A width whose 32 KiB of keys is not a whole number of 8-key
		// blocks (scanKeysChunk), and tiles ending in ragged blocks.
		{attntest.Case{Heads: 2, N: 1, M: 1001, D: 96, E: 8}, 0, true, true},
		{attntest.Case{Heads: 4, KVHeads: 2, N: 3, M: 777, D: 200, E: 8}, 0, true, true},
		// Keys far from the origin: centred.
		{attntest.Case{Heads: 2, N: 1, M: 1000, D: 16, E: 16, Shape: offset(300)}, 0, false, false},
		// Values beyond float32's comfortable range: scaled.
		{attntest.Case{Heads: 1, N: 1, M: 400, D: 16, E: 16, VScale: 1e36}, 0, false, true},
		// A target float32's bound misses: promoted.
		{attntest.Case{Heads: 1, N: 1, M: 2000, D: 32, E: 32, KScale: 30}, 1e-7, false, true},
		// NaN and Inf among the keys and the values: errors.
		{attntest.Case{Heads: 1, N: 1, M: 300, D: 8, E: 8, Shape: setFirst(math.NaN(), true)}, 0, false, false},
		{attntest.Case{Heads: 1, N: 1, M: 300, D: 8, E: 8, Shape: setFirst(math.Inf(1), false)}, 0, false, false},
		// Not decoding-shaped: a window (tiles that do not read every key
		// measured), and a prefill.
		{attntest.Case{Heads: 1, N: 1, M: 1000, D: 8, E: 8, Causal: true, Window: &attn.Window{Left: 100, Right: -1}}, 0, false, false},
		{attntest.Case{Heads: 1, N: 400, M: 400, D: 8, E: 8}, 0, false, false},
	}
	// A value only the last key has, beyond float32's range: scaled.
	cases = append(cases, specCase{attntest.Case{Heads: 1, N: 1, M: 700, D: 16, E: 16, Shape: func(_ *rand.Rand, p *attn.Problem[float64]) { p.V[len(p.V)-3] = 1e36 }}, 0, false, true})
	for x, tc := range cases {
		p64 := tc.c.Generate(uint64(x + 1))
		p64.Eps = tc.eps
		t.Run(fmt.Sprintf("%d/float32", x), func(t *testing.T) { checkSpeculated(t, attntest.To32(p64), tc.want) })
		// 16-bit keys and values (widened a tile at a time) against the
		// planned call on their widened copies (skipped where a value
		// would overflow the format).
		for _, f := range []attn.HalfFormat{attn.Float16, attn.BFloat16} {
			if ph := attntest.ToHalfKV(attntest.To32(p64), f); ph != nil {
				t.Run(fmt.Sprintf("%d/%v", x, f), func(t *testing.T) { checkSpeculated(t, ph, tc.want) })
			}
			// 16-bit queries as well, into a 16-bit output and a float32
			// one (speculatedHalf).
			if ph := attntest.ToHalf(attntest.To32(p64), f); ph != nil {
				t.Run(fmt.Sprintf("%d/%v-qo", x, f), func(t *testing.T) { checkSpeculatedHalf(t, ph, true, tc.want) })
				t.Run(fmt.Sprintf("%d/%v-q", x, f), func(t *testing.T) { checkSpeculatedHalf(t, ph, false, tc.want) })
			}
		}
		t.Run(fmt.Sprintf("%d/float64", x), func(t *testing.T) { checkSpeculated(t, p64, tc.want64) })
	}
}

func checkSpeculated[T attn.Float](t *testing.T, p *attn.Problem[T], want bool) {
	t.Helper()
	ctx := context.Background()
	// The one pass alone: taken or not, and the output untouched if not.
	out := attn.NewOutput(p)
	for i := range out.O {
		out.O[i] = 7
	}
	st, ok, err := speculated(ctx, 0, p, out)
	if ok != want {
		t.Fatalf("one pass kept: %v, want %v (err %v)", ok, want, err)
	}
	if !ok {
		for i, v := range out.O {
			if v != 7 {
				t.Fatalf("output %d = %v after a pass not kept", i, v)
			}
		}
	}
	// The pass's statistics are the planned call's.
	if decodingShaped(p) {
		_, stats, _ := scannedForward(ctx, 0, p, attn.NewOutput(p))
		measured := p // the planned call measures 16-bit keys and values widened
		if p32, ok := any(p).(*attn.Problem[float32]); ok && p32.KVFormat != attn.NoHalf {
			wp, release := widened(p32, 0)
			defer release()
			measured = any(wp).(*attn.Problem[T])
		}
		if want := headKeyStats(ctx, measured, 0); !reflect.DeepEqual(stats, want) {
			t.Fatalf("key statistics of the pass %+v, measured first %+v", stats, want)
		}
	}
	// Against the planned call.
	testNoSpeculation = true
	ref := attn.NewOutput(p)
	stRef, errRef := attn.Forward(ctx, Method{}, p, ref)
	testNoSpeculation = false
	if !ok {
		st, err = attn.Forward(ctx, Method{}, p, out)
	}
	if (err == nil) != (errRef == nil) || (err != nil && err.Error() != errRef.Error()) {
		t.Fatalf("error %v, planned %v", err, errRef)
	}
	if err == nil {
		checkSameCall(t, out, ref, st, stRef)
	}
}

// checkSameCall fails t unless out and st are the planned call's ref and
// stRef, bit for bit.
func checkSameCall[T attn.Float](t *testing.T, out, ref *attn.Output[T], st, stRef attn.Stats) {
	t.Helper()
	if !slices.Equal(out.O16, ref.O16) {
		t.Fatal("16-bit output differs from the planned call's")
	}
	for i := range ref.O {
		if math.Float64bits(float64(out.O[i])) != math.Float64bits(float64(ref.O[i])) {
			t.Fatalf("O[%d] = %v, planned %v", i, out.O[i], ref.O[i])
		}
	}
	for i := range ref.LSE {
		if math.Float64bits(out.LSE[i]) != math.Float64bits(ref.LSE[i]) {
			t.Fatalf("LSE[%d] = %v, planned %v", i, out.LSE[i], ref.LSE[i])
		}
	}
	if st.ErrorBound != stRef.ErrorBound || st.Flops != stRef.Flops || !reflect.DeepEqual(st.Details, stRef.Details) {
		t.Fatalf("stats %+v, planned %+v", st, stRef)
	}
}

// checkSpeculatedHalf is checkSpeculated for 16-bit queries, keys and
// values, with the output in 16 bits (half) or float32: speculatedHalf
// against the planned call on the widened problem.
func checkSpeculatedHalf(t *testing.T, p *attn.Problem[float32], half, want bool) {
	t.Helper()
	ctx := context.Background()
	newOut := func() *attn.Output[float32] {
		if half {
			return &attn.Output[float32]{O16: make([]uint16, p.Heads*p.N*p.E), LSE: make([]float64, p.Heads*p.N)}
		}
		return attn.NewOutput(p)
	}
	out := newOut()
	for i := range out.O16 {
		out.O16[i] = 7
	}
	for i := range out.O {
		out.O[i] = 7
	}
	st, ok, err := speculatedHalf(ctx, 0, p, out)
	if ok != want {
		t.Fatalf("one pass kept: %v, want %v (err %v)", ok, want, err)
	}
	if !ok && (slices.ContainsFunc(out.O16, func(x uint16) bool { return x != 7 }) || slices.ContainsFunc(out.O, func(x float32) bool { return x != 7 })) {
		t.Fatal("output written by a pass not kept")
	}
	// The planned call, on the float32 path (bfloat16 products compute otherwise).
	testNoSpeculation, testNoBF16Tiles = true, true
	ref := newOut()
	stRef, errRef := attn.Forward(ctx, Method{}, p, ref)
	testNoSpeculation, testNoBF16Tiles = false, false
	if !ok {
		testNoBF16Tiles = true
		st, err = attn.Forward(ctx, Method{}, p, out)
		testNoBF16Tiles = false
	}
	if (err == nil) != (errRef == nil) || (err != nil && err.Error() != errRef.Error()) {
		t.Fatalf("error %v, planned %v", err, errRef)
	}
	if err == nil {
		checkSameCall(t, out, ref, st, stRef)
	}
}
