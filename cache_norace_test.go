//go:build !race

package fastattn

const cacheRaceEnabled = false
