//go:build amd64 && gc && !purego

package kernels

import "fmt"

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
