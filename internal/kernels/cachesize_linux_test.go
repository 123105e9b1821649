//go:build linux && amd64 && gc && !purego

package kernels

import "testing"

func TestParseCacheSize(t *testing.T) {
	for s, want := range map[string]int{"48K": 48 << 10, "2048K": 2 << 20, "1M": 1 << 20, "512": 512, "": 0, "K": 0, "x48K": 0, "-4K": 0} {
		if got := parseCacheSize(s); got != want {
			t.Errorf("parseCacheSize(%q) = %d, want %d", s, got, want)
		}
	}
	tnSetup.Do(chooseTNModes)
	t.Logf("L1 data cache: %d bytes, L2: %d; float32 TN products read B in place: %v", l1DataBytes(), L2Bytes(), tnInPlace32)
}
