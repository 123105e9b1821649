package hugepages

import (
	"fmt"
	"runtime/debug"
	"testing"
	"time"
	"unsafe"
)

// TestMake checks lengths, capacities, zeroing and, where huge pages are
// asked for, the 2 MiB alignment, for small and large slices of several
// element sizes, including one that cannot align (12-byte elements).
func TestMake(t *testing.T) {
	type triple [3]float32
	check := func(name string, n int, data unsafe.Pointer, length, capacity int, zero func() bool, size int) {
		t.Helper()
		if length != n || capacity != n {
			t.Errorf("%s: len %d cap %d, want %d", name, length, capacity, n)
		}
		if !zero() {
			t.Errorf("%s: not zeroed", name)
		}
		if large := n*size >= minBytes; supported && large && size%4 == 0 && size&(size-1) == 0 && uintptr(data)%hugePage != 0 {
			t.Errorf("%s: %d bytes start at %#x, not on a 2 MiB boundary", name, n*size, uintptr(data))
		}
	}
	for _, n := range []int{0, 1, 1000, minBytes/4 - 1, minBytes / 4, 3<<20 + 5} {
		f := Make[float32](n)
		for i := range f {
			f[i] = 1 // written once and read back whole below
		}
		ones := func() bool {
			for _, x := range f {
				if x != 1 {
					return false
				}
			}
			return true
		}
		check(fmt.Sprintf("float32 x %d (after writes)", n), n, unsafe.Pointer(unsafe.SliceData(f)), len(f), cap(f), ones, 4)
		g := Make[float64](n)
		check(fmt.Sprintf("float64 x %d", n), n, unsafe.Pointer(unsafe.SliceData(g)), len(g), cap(g), func() bool {
			for _, x := range g {
				if x != 0 {
					return false
				}
			}
			return true
		}, 8)
		h := Make[triple](n / 3)
		check(fmt.Sprintf("[3]float32 x %d", n/3), n/3, unsafe.Pointer(unsafe.SliceData(h)), len(h), cap(h), func() bool {
			for _, x := range h {
				if x != (triple{}) {
					return false
				}
			}
			return true
		}, 12)
	}
}

// BenchmarkFirstWrite writes one byte of every 4 KiB page of a fresh
// 64 MiB slice, made by make and by Make, and reports microseconds per
// 4 KiB: what first writes cost the first call of a process. The heap is
// returned to the system before each slice is made, so that its pages are
// new.
func BenchmarkFirstWrite(b *testing.B) {
	const n = 64 << 20
	for _, c := range []struct {
		name string
		make func() []byte
	}{
		{"make", func() []byte { return make([]byte, n) }},
		{"hugepages.Make", func() []byte { return Make[byte](n) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			var total time.Duration
			for b.Loop() {
				debug.FreeOSMemory()
				s := c.make()
				start := time.Now()
				for i := 0; i < len(s); i += 4096 {
					s[i] = 1
				}
				total += time.Since(start)
			}
			b.ReportMetric(total.Seconds()*1e6/float64(b.N*n/4096), "µs/4KiB")
		})
	}
}
