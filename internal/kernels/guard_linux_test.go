//go:build linux

package kernels

import (
	"sync"
	"syscall"
	"unsafe"
)

var (
	guardMu   sync.Mutex
	guardMaps [][]byte
)

// guarded returns a copy of x whose last element is followed directly by
// an unmapped page, so any access past the slice's end faults. The
// mappings are released by releaseGuarded.
func guarded[T float32 | float64 | uint16 | uint32 | uint64](x []T) []T {
	var zero T
	size := int(unsafe.Sizeof(zero))
	page := syscall.Getpagesize()
	nbytes := len(x) * size
	pages := (nbytes+page-1)/page + 1
	mem, err := syscall.Mmap(-1, 0, pages*page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		panic(err)
	}
	if err := syscall.Mprotect(mem[(pages-1)*page:], syscall.PROT_NONE); err != nil {
		panic(err)
	}
	guardMu.Lock()
	guardMaps = append(guardMaps, mem)
	guardMu.Unlock()
	off := (pages-1)*page - nbytes
	y := unsafe.Slice((*T)(unsafe.Pointer(&mem[off])), len(x))
	copy(y, x)
	return y
}

// releaseGuarded unmaps every guarded slice; none may be used afterwards.
func releaseGuarded() {
	guardMu.Lock()
	defer guardMu.Unlock()
	for _, m := range guardMaps {
		syscall.Munmap(m)
	}
	guardMaps = nil
}
