//go:build amd64 && gc && !purego

package kernels

// withTNModes runs f with the float32 TN products reading B through
// packed panels and in place (tnInPlace32), whichever this CPU would
// choose, naming the mode.
func withTNModes(f func(mode string)) {
	defer func(v bool) { tnInPlace32 = v }(tnInPlace32)
	for _, inPlace := range []bool{false, true} {
		tnInPlace32 = inPlace
		mode := "panels"
		if inPlace {
			mode = "in place"
		}
		f(mode)
	}
}
