//go:build amd64 && gc && !purego

package kernels

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// withTNModes runs f with the TN products reading B through packed panels
// of 16 and of 24 KiB (tnPanelBytes) and, for float32, in place
// (tnInPlace32), whichever this CPU would choose, naming the mode.
func withTNModes(f func(mode string)) {
	tnSetup.Do(chooseTNModes) // so that it cannot overwrite the modes set here
	defer func(inPlace bool, panel int) { tnInPlace32, tnPanelBytes = inPlace, panel }(tnInPlace32, tnPanelBytes)
	for _, panel := range []int{16 << 10, 24 << 10} {
		tnInPlace32, tnPanelBytes = false, panel
		f(fmt.Sprintf("%d KiB panels", panel>>10))
	}
	tnInPlace32 = true
	f("float32 in place")
}

// BenchmarkGemmTNLongK times float32 TN products over k = 4096 rows (a
// linear layer's weight gradient over 4096 tokens) read in place, in
// slices of tnInPlaceK rows and with k whole, on one core, in GFLOP/s.
func BenchmarkGemmTNLongK(b *testing.B) {
	tnSetup.Do(chooseTNModes)
	defer func(inPlace bool, slice int) { tnInPlace32, tnInPlaceK = inPlace, slice }(tnInPlace32, tnInPlaceK)
	tnInPlace32 = true
	sliced := tnInPlaceK
	r := rand.New(rand.NewPCG(1, 2))
	for _, sh := range [][3]int{{176, 128, 4096}, {64, 352, 4096}, {128, 256, 4096}} {
		m, n, k := sh[0], sh[1], sh[2]
		a, bb, c := to32(randSlice(r, k*m)), to32(randSlice(r, k*n)), make([]float32, m*n)
		for _, slice := range []int{sliced, k} {
			b.Run(fmt.Sprintf("m=%d/n=%d/k=%d/slice=%d", m, n, k, slice), func(b *testing.B) {
				tnInPlaceK = slice
				for b.Loop() {
					GemmTN32(m, n, k, a, m, bb, n, c, n)
				}
				b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
