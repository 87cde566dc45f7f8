package main

import "runtime/debug"

// defaultGCPercent is the agent's GOGC when its environment sets none. The
// Go default, 100, lets the heap grow to twice what is live between two
// collections; the agent's live heap is small (about 11 MB with 50 pods),
// so collecting at half that growth saves resident memory: with api.Clone,
// 69.8 MiB instead of 76.4 with 50 pods for 140 millicores instead of
// 136.5, one run each (docs/BENCHMARKS.md, "Binary size and agent memory").
const defaultGCPercent = 50

// tuneGC sets the agent's garbage collection defaults where its
// environment (getenv: os.Getenv) sets none: GOGC and GOMEMLIMIT keep
// their meaning for the Go runtime.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
}
