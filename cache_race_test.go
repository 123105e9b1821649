//go:build race

package fastattn

// cacheRaceEnabled is true under the race detector, whose instrumentation
// allocates and so inflates allocation counts.
const cacheRaceEnabled = true
