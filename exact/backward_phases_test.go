package exact

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"

	"github.com/fastattn/fastattn/attn"
	"github.com/fastattn/fastattn/internal/kernels"
)

// BenchmarkBackwardTilePhases times each step of one backward tile as
// keyBlock and queryRows run it (bwdQueryTileFor queries x bwdKeyTileFor keys,
// keys and values packed), next to the two products
// of a forward tile of the same size, as the best of many batches (which
// catch the core alone on a loaded machine). Metrics are microseconds per
// step; "bwd/fwd" is the backward tile's total over the forward products'.
func BenchmarkBackwardTilePhases(b *testing.B) {
	for _, d := range []int{64, 128} {
		rows := bwdQueryTileFor(4)
		b.Run(fmt.Sprintf("float32/d=%d/rows=%d", d, rows), func(b *testing.B) { bwdPhases[float32](b, d, rows) })
		rows = bwdQueryTileFor(8)
		b.Run(fmt.Sprintf("float64/d=%d/rows=%d", d, rows), func(b *testing.B) { bwdPhases[float64](b, d, rows) })
	}
}

func bwdPhases[T attn.Float](b *testing.B, d, rows int) {
	size := int(unsafe.Sizeof(T(0)))
	cols := bwdKeyTileFor(size, d, d, bwdQueryTileFor(size), kernels.L2Bytes())
	ls := cols + bwdStridePad
	r := rand.New(rand.NewPCG(3, 3))
	fill := func(n int) []T {
		x := make([]T, n)
		for i := range x {
			x[i] = T(r.NormFloat64())
		}
		return x
	}
	q, do, keys, vals := fill(rows*d), fill(rows*d), fill(cols*d), fill(cols*d)
	s, ds := make([]T, rows*ls), make([]T, rows*ls)
	dk, dv, dq, pv := make([]T, cols*d), make([]T, cols*d), make([]T, rows*d), make([]T, rows*d)
	k := opsFor[T]()
	tn := k.gemmTN
	kp, vp := newPacker[T](), newPacker[T]()
	kp.Reset(cols, d, keys, d)
	kp.Pack(0, cols)
	vp.Reset(cols, d, vals, d)
	vp.Pack(0, cols)
	scale := 0.125
	fresh := func() {
		kp.GemmNT(rows, 0, cols, q, d, s, ls)
		vp.GemmNT(rows, 0, cols, do, d, ds, ls)
	}
	perRow := func() {
		for i := range rows {
			softmaxGradRow(s[i*ls:i*ls+cols], ds[i*ls:i*ls+cols], scale, 1, 0.5)
		}
	}
	// softmaxGrad is the step as rowBlock runs it on a whole tile: in
	// float32 one kernel call per block of bwdRowBlock rows.
	softmaxGrad := perRow
	if s32, ok := any(s).([]float32); ok {
		lse, delta := make([]float64, bwdRowBlock), make([]float64, bwdRowBlock)
		for i := range lse {
			lse[i], delta[i] = 1, 0.5
		}
		softmaxGrad = func() {
			for r0 := 0; r0 < rows; r0 += bwdRowBlock {
				n := min(bwdRowBlock, rows-r0)
				kernels.SoftmaxGradRows32(s32[r0*ls:], any(ds).([]float32)[r0*ls:], ls, n, cols, scale, lse, delta)
			}
		}
	}
	phases := []struct {
		name string
		f    func()
		prep func()
	}{
		{"S", func() { kp.GemmNT(rows, 0, cols, q, d, s, ls) }, nil},
		{"dP", func() { vp.GemmNT(rows, 0, cols, do, d, ds, ls) }, nil},
		{"softmax-grad", softmaxGrad, fresh},
		{"dV", func() { tn(cols, d, rows, s, ls, do, d, dv, d) }, nil},
		{"dK", func() { tn(cols, d, rows, ds, ls, q, d, dk, d) }, nil},
		{"dQ", func() { k.gemmNN(rows, d, cols, ds, ls, keys, d, dq, d) }, nil},
		// The forward tile's products, for comparison.
		{"fwd-PV", func() { k.gemmNN(rows, d, cols, s, ls, vals, d, pv, d) }, nil},
		// The softmax step one row at a time (causal diagonal tiles).
		{"softmax-grad-per-row", perRow, fresh},
	}
	best := make([]time.Duration, len(phases))
	for b.Loop() {
		for i := range best {
			best[i] = time.Hour
		}
		for range 300 {
			for i, ph := range phases {
				if ph.prep != nil {
					ph.prep()
				}
				t0 := time.Now()
				ph.f()
				best[i] = min(best[i], time.Since(t0))
			}
		}
	}
	var bwd float64
	for i, ph := range phases {
		us := best[i].Seconds() * 1e6
		b.ReportMetric(us, ph.name+"-µs")
		if i < 6 {
			bwd += us
		}
	}
	fwd := best[0].Seconds()*1e6 + best[6].Seconds()*1e6
	b.ReportMetric(bwd/fwd, "bwd/fwd")
}
