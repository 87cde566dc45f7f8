package runtime

import "time"

// This file holds the pure decisions of a pod's life, as the kubelet makes
// them: which container starts next (init containers one after the other,
// sidecars, then the app containers), when sidecars stop, and the restart
// back-off. They read a view of the containers and the time given; the pod
// worker (pods.go) acts on what they return.

// ctrView is what the start decisions read of one container of a pod.
type ctrView struct {
	Init    bool // an init container (a sidecar too)
	Sidecar bool // an init container with restartPolicy Always
	Running bool
	// Started: running, its postStart hook done and its startup probe (if
	// any) passed. The next init container waits for a sidecar to be
	// Started.
	Started bool
	// Succeeded: an init container (not a sidecar) that exited 0.
	Succeeded bool
	// Terminated: ended for good (not restarted under the restart policy).
	Terminated bool
	// StopRequested: a sidecar being stopped because the app containers
	// have all ended.
	StopRequested bool
	NextStart     time.Time // back-off: not started before
}

// startPlan is what the pod worker does next.
type startPlan struct {
	Start        []int // containers to start now, in order
	StopSidecars []int // running sidecars to stop (every app container has ended)
	Initialized  bool  // every init container has done its part (it stays so)
}

// nextInit returns the init container the init sequence waits for: the
// first that has not done its part (an init container done is one that
// succeeded, a sidecar done is one Started), and done when there is none.
// Containers after the init containers are ignored.
func nextInit(cs []ctrView) (next int, done bool) {
	for i, c := range cs {
		switch {
		case !c.Init:
			return -1, true
		case c.Sidecar && c.Started, !c.Sidecar && c.Succeeded:
			continue
		}
		return i, false
	}
	return -1, true
}

// planStarts decides which containers start at now. Until the pod is
// initialized, only the init container the sequence waits for may start
// (once its back-off has passed); an init container that failed for good
// (Terminated, not Succeeded) stops the sequence there, and the running
// sidecars (the pod has failed). Once initialized,
// every app container and sidecar that is not running, has not ended for
// good and whose back-off has passed starts; when every app container has
// ended for good, the running sidecars are stopped instead and none starts
// again.
func planStarts(cs []ctrView, initialized bool, now time.Time) startPlan {
	p := startPlan{Initialized: initialized}
	due := func(c ctrView) bool { return !c.Running && !c.Terminated && !now.Before(c.NextStart) }
	if !initialized {
		next, done := nextInit(cs)
		if !done {
			if cs[next].Terminated {
				// Failed for good: the pod has failed, its sidecars stop.
				p.StopSidecars = runningSidecars(cs)
			} else if due(cs[next]) {
				p.Start = append(p.Start, next)
			}
			return p
		}
		p.Initialized = true
	}
	appsDone, apps := true, 0
	for _, c := range cs {
		if !c.Init {
			apps++
			appsDone = appsDone && c.Terminated
		}
	}
	if appsDone && apps > 0 {
		p.StopSidecars = runningSidecars(cs)
		return p
	}
	for i, c := range cs {
		if (!c.Init || c.Sidecar) && due(c) {
			p.Start = append(p.Start, i)
		}
	}
	return p
}

// runningSidecars returns the sidecars running and not yet being stopped.
func runningSidecars(cs []ctrView) []int {
	var out []int
	for i, c := range cs {
		if c.Sidecar && c.Running && !c.StopRequested {
			out = append(out, i)
		}
	}
	return out
}

// backoffDelay is the wait before restart number restarts (1 for the
// first): base, doubled for each restart after the first, at most max.
func backoffDelay(base, max time.Duration, restarts int32) time.Duration {
	d := base
	for i := int32(1); i < restarts && d < max; i++ {
		d *= 2
	}
	return min(d, max)
}
