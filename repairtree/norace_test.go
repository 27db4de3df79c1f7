//go:build !race

package repairtree_test

// raceEnabled is set under the race detector (race_test.go).
const raceEnabled = false
