package hugepages

import (
	"syscall"
	"unsafe"
)

// supported says whether advise can do anything here.
const supported = true

// advise asks for transparent huge pages for the n bytes at p (both
// multiples of 2 MiB), ignoring errors: a kernel without them leaves the
// pages as they were.
func advise(p unsafe.Pointer, n int) {
	_ = syscall.Madvise(unsafe.Slice((*byte)(p), n), syscall.MADV_HUGEPAGE)
}
