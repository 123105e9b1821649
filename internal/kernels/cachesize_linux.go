package kernels

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cacheBytes returns the size of CPU 0's cache of the level and type
// ("Data", "Unified") given as Linux reports it in sysfs, or 0 if it does
// not.
func cacheBytes(level int, typ string) int {
	dirs, _ := filepath.Glob("/sys/devices/system/cpu/cpu0/cache/index*")
	for _, dir := range dirs {
		read := func(name string) string {
			b, _ := os.ReadFile(filepath.Join(dir, name))
			return strings.TrimSpace(string(b))
		}
		if read("level") != strconv.Itoa(level) || read("type") != typ {
			continue
		}
		return parseCacheSize(read("size"))
	}
	return 0
}

// parseCacheSize reads sysfs's cache size ("48K", "2048K", "1M"), or 0.
func parseCacheSize(s string) int {
	mult := 1
	switch {
	case strings.HasSuffix(s, "K"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, s[:len(s)-1]
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0
	}
	return n * mult
}
