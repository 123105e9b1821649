package kernels

import (
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// BenchmarkReread reads a 24 MiB buffer again after a pause in which the
// core spins without touching memory, from Go heap memory (4 KiB pages)
// and from memory mapped in 2 MiB pages (madvise MADV_HUGEPAGE, where
// transparent huge pages are on request), and reports the milliseconds per
// read, best and mean. It measures what makes the first passes over memory
// a call has not touched for a while slow on a shared machine (see
// docs/PERFORMANCE.md, "Memory left alone").
func BenchmarkReread(b *testing.B) {
	const n = 6 << 20 // float32: 24 MiB
	for _, pause := range []time.Duration{0, 30 * time.Millisecond, time.Second} {
		for _, huge := range []bool{false, true} {
			var mem []byte
			var x []float32
			name := "4KiB"
			if huge {
				mem, x = mapHuge(b, n)
				name = "2MiB"
			} else {
				x = make([]float32, n)
			}
			for i := range x {
				x[i] = 1 // an untouched page reads as the shared zero page
			}
			b.Run(fmt.Sprintf("pause=%v/%s", pause, name), func(b *testing.B) {
				reread(x)
				best, total := time.Hour, time.Duration(0)
				for b.Loop() {
					for t0 := time.Now(); time.Since(t0) < pause; {
					}
					t0 := time.Now()
					reread(x)
					el := time.Since(t0)
					best, total = min(best, el), total+el
				}
				b.ReportMetric(best.Seconds()*1e3, "best-ms")
				b.ReportMetric(total.Seconds()*1e3/float64(b.N), "mean-ms")
			})
			runtime.KeepAlive(x)
			if mem != nil {
				syscall.Munmap(mem)
			}
		}
	}
}

// mapHuge maps n float32 aligned to 2 MiB and asks for huge pages; it
// returns the mapping (to unmap) and the floats.
func mapHuge(b *testing.B, n int) ([]byte, []float32) {
	const huge = 2 << 20
	size := (4*n + huge - 1) &^ (huge - 1)
	mem, err := syscall.Mmap(-1, 0, size+huge, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		b.Fatal(err)
	}
	off := (huge - int(uintptr(unsafe.Pointer(&mem[0]))%huge)) % huge
	if err := syscall.Madvise(mem[off:off+size], syscall.MADV_HUGEPAGE); err != nil {
		b.Skip("no transparent huge pages:", err)
	}
	return mem, unsafe.Slice((*float32)(unsafe.Pointer(&mem[off])), n)
}

var rereadSink float32

// reread reads one float of every 64-byte line of x, in four independent
// sums.
func reread(x []float32) {
	var s0, s1, s2, s3 float32
	for i := 0; i+64 <= len(x); i += 64 {
		s0 += x[i]
		s1 += x[i+16]
		s2 += x[i+32]
		s3 += x[i+48]
	}
	rereadSink += s0 + s1 + s2 + s3
}
