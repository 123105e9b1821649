//go:build !race

package anytemp

const raceEnabled = false
