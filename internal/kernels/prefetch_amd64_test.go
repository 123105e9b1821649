//go:build amd64 && gc && !purego

package kernels

import (
	"testing"
	"unsafe"
)

// TestPrefetcherCovers checks that the steps of a prefetcher cover every
// cache line of its region once, within the calls it is given.
func TestPrefetcherCovers(t *testing.T) {
	buf := make([]byte, 1<<16)
	for _, c := range [][2]int{{1, 1}, {63, 5}, {64, 5}, {65, 5}, {4096, 48}, {65536, 48}, {65536, 7}, {100, 1000}} {
		bytes, calls := c[0], c[1]
		f := newPrefetcher(unsafe.Pointer(&buf[0]), bytes, calls)
		steps := 0
		for range calls {
			if f.off < f.bytes {
				steps++
			}
			f.step()
		}
		if f.off < bytes || f.off >= bytes+64 {
			t.Errorf("%d bytes over %d calls: %d bytes prefetched", bytes, calls, f.off)
		}
		f.step() // past the end: nothing
		if f.off >= bytes+64 || steps > calls {
			t.Errorf("%d bytes over %d calls: ran on to %d", bytes, calls, f.off)
		}
	}
}
