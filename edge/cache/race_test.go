//go:build race

package cache

// raceEnabled: the race detector changes allocation and slows the memory
// tests tenfold; they run in the normal test pass.
const raceEnabled = true
