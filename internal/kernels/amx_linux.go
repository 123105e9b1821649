//go:build linux && amd64 && gc && !purego

package kernels

import (
	"syscall"
	"unsafe"
)

// Linux keeps AMX's 8 KiB of tile data off until a process asks for it
// (arch_prctl ARCH_REQ_XCOMP_PERM); a tile instruction before that is
// SIGILL. The request is per process. The permitted set is read back
// (ARCH_GET_XCOMP_PERM) to check that the tile configuration (bit 17) and
// data (bit 18) are both granted.
const (
	archGetXCompPerm = 0x1022
	archReqXCompPerm = 0x1023
	xfeatureTileData = 18
)

func amxPermit() bool {
	if _, _, e := syscall.RawSyscall(syscall.SYS_ARCH_PRCTL, archReqXCompPerm, xfeatureTileData, 0); e != 0 {
		return false
	}
	var perm uint64
	if _, _, e := syscall.RawSyscall(syscall.SYS_ARCH_PRCTL, archGetXCompPerm, uintptr(unsafe.Pointer(&perm)), 0); e != 0 {
		return false
	}
	const tile = 1<<17 | 1<<18
	return perm&tile == tile
}
