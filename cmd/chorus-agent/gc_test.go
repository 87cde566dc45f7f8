package main

import (
	"runtime/debug"
	"testing"
)

// TestTuneGC: the agent's GOGC is defaultGCPercent unless GOGC is in its
// environment, which the Go runtime then applies as it does for any program.
func TestTuneGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(prev) })

	tuneGC(func(string) string { return "" })
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Fatalf("GOGC unset: GC percent %d, want %d", got, defaultGCPercent)
	}
	tuneGC(func(k string) string {
		if k == "GOGC" {
			return "100"
		}
		return ""
	})
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC=100 in the environment: GC percent %d, want it left as the runtime set it (100)", got)
	}
}
