//go:build race

package cache

// raceEnabled: the race detector slows the memory tests tenfold, so they
// do less under it.
const raceEnabled = true
