//go:build race

package repairtree_test

// raceEnabled is set under the race detector, which slows the scale
// simulation about eightfold: TestScale then runs one seed per case.
const raceEnabled = true
