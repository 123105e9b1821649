// Package hugepages makes large buffers that the operating system is asked
// to back with huge pages before they are first written.
//
// A buffer's first write to each page faults: the kernel (and, in a
// virtual machine, the host) finds and zeroes memory for it. On the
// virtual machines this project is measured on, first writes to fresh
// memory ran at about 11 µs per 4 KiB page and 1-6 µs per 4 KiB in 2 MiB
// pages (BenchmarkFirstWrite). A process's first float32 call at
// n = 16384, d = 128 faulted about 4,500 times, mostly for its output and
// packed keys (8 MiB each): one-shot `fastattn run` calls took a median
// 246 ms causal and 441 non-causal with 4 KiB pages, 218 and 428 with
// these buffers in 2 MiB pages (five alternating runs each).
package hugepages

import "unsafe"

// minBytes is the smallest buffer Make aligns and advises.
const minBytes = 4 << 20

// hugePage is the size of a transparent huge page on Linux with 4 KiB base
// pages (amd64, arm64).
const hugePage = 2 << 20

// Make returns a zeroed slice of n elements, len and cap n. When it takes
// at least 4 MiB it starts on a 2 MiB boundary (its allocation reaches on
// to the next one, untouched) and, on Linux with transparent huge pages,
// its pages are advised huge (madvise MADV_HUGEPAGE); elsewhere it is
// make([]T, n). Pages the allocator had already faulted in keep their
// size, and a refused advice is ignored: only the cost of first writes
// changes, never the contents.
func Make[T any](n int) []T {
	size := int(unsafe.Sizeof(*new(T)))
	if !supported || size == 0 || n < minBytes/size {
		return make([]T, n)
	}
	span := (n*size + hugePage - 1) &^ (hugePage - 1)
	s := make([]T, (span+hugePage)/size+1)
	base := unsafe.Pointer(unsafe.SliceData(s))
	off := int((hugePage - uintptr(base)%hugePage) % hugePage)
	if off%size != 0 {
		return s[:n:n] // an element would straddle the boundary
	}
	advise(unsafe.Add(base, off), span)
	return s[off/size : off/size+n : off/size+n]
}
