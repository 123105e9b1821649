//go:build race

package anytemp

// raceEnabled is true under the race detector, whose instrumentation slows
// the Go loops the planner times at start-up (tree walks, expansions)
// several times more than the assembly kernels (direct sums).
const raceEnabled = true
