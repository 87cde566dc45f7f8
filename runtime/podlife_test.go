package runtime

import (
	"testing"
	"time"

	"pgregory.net/rapid"
)

func TestNextInit(t *testing.T) {
	ini := ctrView{Init: true}
	done := ctrView{Init: true, Succeeded: true}
	side := ctrView{Init: true, Sidecar: true}
	sideUp := ctrView{Init: true, Sidecar: true, Running: true, Started: true}
	app := ctrView{}
	for _, c := range []struct {
		name string
		cs   []ctrView
		next int
		done bool
	}{
		{"no init containers", []ctrView{app}, -1, true},
		{"first to run", []ctrView{ini, ini, app}, 0, false},
		{"second after the first succeeded", []ctrView{done, ini, app}, 1, false},
		{"all succeeded", []ctrView{done, done, app}, -1, true},
		{"sidecar not started yet blocks", []ctrView{side, ini, app}, 0, false},
		{"running sidecar not Started (startup probe) blocks", []ctrView{{Init: true, Sidecar: true, Running: true}, ini, app}, 0, false},
		{"started sidecar lets the next run", []ctrView{sideUp, ini, app}, 1, false},
		{"started sidecar and done", []ctrView{done, sideUp, app}, -1, true},
		{"failed for good stays next", []ctrView{done, {Init: true, Terminated: true}, app}, 1, false},
	} {
		next, d := nextInit(c.cs)
		if next != c.next || d != c.done {
			t.Errorf("%s: nextInit = %d, %t; want %d, %t", c.name, next, d, c.next, c.done)
		}
	}
}

func TestPlanStarts(t *testing.T) {
	now := time.Unix(1000, 0)
	later := now.Add(time.Second)
	ini := ctrView{Init: true}
	side := ctrView{Init: true, Sidecar: true, Running: true, Started: true}
	app := ctrView{}
	// Init container 0 runs alone; the apps wait.
	if p := planStarts([]ctrView{ini, app}, false, now); len(p.Start) != 1 || p.Start[0] != 0 || p.Initialized {
		t.Errorf("first init: %+v", p)
	}
	// An init container in back-off is not started, nor anything after it.
	if p := planStarts([]ctrView{{Init: true, NextStart: later}, app}, false, now); len(p.Start) != 0 || p.Initialized {
		t.Errorf("init in back-off: %+v", p)
	}
	// Every init container done: initialized, the apps start together.
	p := planStarts([]ctrView{{Init: true, Succeeded: true, Terminated: false}, side, app, app}, false, now)
	if !p.Initialized || len(p.Start) != 2 || p.Start[0] != 2 || p.Start[1] != 3 {
		t.Errorf("initialized: %+v", p)
	}
	// Once initialized, an exited sidecar starts again next to the apps.
	p = planStarts([]ctrView{{Init: true, Sidecar: true}, {Running: true}}, true, now)
	if len(p.Start) != 1 || p.Start[0] != 0 {
		t.Errorf("sidecar restart: %+v", p)
	}
	// Apps all ended for good: running sidecars stop, none starts.
	p = planStarts([]ctrView{side, {Init: true, Sidecar: true}, {Terminated: true}}, true, now)
	if len(p.Start) != 0 || len(p.StopSidecars) != 1 || p.StopSidecars[0] != 0 {
		t.Errorf("apps ended: %+v", p)
	}
}

// genViews draws a pod's containers: some init containers (sidecars among
// them) then at least one app container, in any state.
func genViews(t *rapid.T) []ctrView {
	nInit := rapid.IntRange(0, 4).Draw(t, "init")
	nApp := rapid.IntRange(1, 3).Draw(t, "apps")
	var cs []ctrView
	for i := 0; i < nInit+nApp; i++ {
		c := ctrView{Init: i < nInit}
		c.Sidecar = c.Init && rapid.Bool().Draw(t, "sidecar")
		c.Running = rapid.Bool().Draw(t, "running")
		c.Started = c.Running && rapid.Bool().Draw(t, "started")
		if !c.Running {
			c.Succeeded = c.Init && !c.Sidecar && rapid.Bool().Draw(t, "succeeded")
			c.Terminated = !c.Succeeded && rapid.IntRange(0, 3).Draw(t, "terminated") == 0
		}
		c.StopRequested = c.Sidecar && c.Running && rapid.Bool().Draw(t, "stopRequested")
		c.NextStart = time.Unix(int64(rapid.IntRange(0, 2).Draw(t, "nextStart")), 0)
		cs = append(cs, c)
	}
	return cs
}

// The laws of the start plan, whatever the containers' states.
func TestPlanStartsProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cs := genViews(t)
		initialized := rapid.Bool().Draw(t, "initialized")
		now := time.Unix(1, 0)
		p := planStarts(cs, initialized, now)
		if initialized && !p.Initialized {
			t.Fatal("initialized went back to false")
		}
		seen := map[int]bool{}
		for _, i := range p.Start {
			c := cs[i]
			if seen[i] {
				t.Fatalf("container %d started twice", i)
			}
			seen[i] = true
			if c.Running || c.Terminated || now.Before(c.NextStart) {
				t.Fatalf("started container %d in state %+v", i, c)
			}
			if !p.Initialized && !c.Init {
				t.Fatalf("app container %d started before the pod is initialized", i)
			}
			if p.Initialized && c.Init && !c.Sidecar {
				t.Fatalf("init container %d started after the pod is initialized", i)
			}
			if c.Sidecar && containsInt(p.StopSidecars, i) {
				t.Fatalf("sidecar %d both started and stopped", i)
			}
		}
		if !p.Initialized {
			if len(p.Start) > 1 {
				t.Fatalf("%d init containers started at once", len(p.Start))
			}
			// Everything before the one started has done its part.
			for _, i := range p.Start {
				for j := 0; j < i; j++ {
					if c := cs[j]; !(c.Sidecar && c.Started) && !(!c.Sidecar && c.Succeeded) {
						t.Fatalf("init container %d started while %d (%+v) has not done its part", i, j, c)
					}
				}
			}
		}
		if !initialized && p.Initialized {
			if _, done := nextInit(cs); !done {
				t.Fatal("initialized while an init container has not done its part")
			}
		}
		for _, i := range p.StopSidecars {
			if !cs[i].Sidecar || !cs[i].Running || cs[i].StopRequested {
				t.Fatalf("stopping %d in state %+v", i, cs[i])
			}
		}
	})
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func TestBackoffDelay(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		base := time.Duration(rapid.Int64Range(1, int64(time.Minute)).Draw(t, "base"))
		maxD := time.Duration(rapid.Int64Range(int64(base), int64(time.Hour)).Draw(t, "max"))
		n := rapid.Int32Range(1, 100).Draw(t, "restarts")
		d, next := backoffDelay(base, maxD, n), backoffDelay(base, maxD, n+1)
		if d < base || d > maxD {
			t.Fatalf("delay %s outside [%s, %s]", d, base, maxD)
		}
		if next < d || (d < maxD && next != min(2*d, maxD)) {
			t.Fatalf("restart %d waits %s, the next %s: want doubling up to %s", n, d, next, maxD)
		}
	})
	if got := backoffDelay(time.Second, 5*time.Minute, 1); got != time.Second {
		t.Errorf("first restart waits %s", got)
	}
	if got := backoffDelay(10*time.Second, 5*time.Minute, 6); got != 5*time.Minute {
		t.Errorf("sixth restart (Kubernetes: 10s, 20s, 40s, 80s, 160s, 300s) waits %s", got)
	}
}
