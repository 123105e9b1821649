//go:build race

package exact

// raceEnabled is true under the race detector, whose instrumentation
// allocates and so inflates the allocation counts the memory tests check.
const raceEnabled = true
