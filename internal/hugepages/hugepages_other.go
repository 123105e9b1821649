//go:build !linux

package hugepages

import "unsafe"

// supported says whether advise can do anything here.
const supported = false

// advise does nothing where transparent huge pages are not Linux's.
func advise(p unsafe.Pointer, n int) {}
