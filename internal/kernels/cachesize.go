package kernels

import "sync"

// L2Bytes returns the size of CPU 0's level-2 cache as the operating
// system reports it (Linux's sysfs), or 0 where it does not. It is read
// at the first call, which takes tens of microseconds, and kept.
func L2Bytes() int { return l2Bytes() }

var l2Bytes = sync.OnceValue(func() int { return cacheBytes(2, "Unified") })

// l1DataBytes returns the size of CPU 0's level-1 data cache, or 0 if it
// is unknown.
func l1DataBytes() int { return cacheBytes(1, "Data") }
