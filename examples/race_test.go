//go:build race

package examples_test

// raceEnabled: this test binary runs under the race detector, where compiling a module takes
// ten times as long.
const raceEnabled = true
