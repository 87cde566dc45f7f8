package runtime

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"github.com/chorus-sh/chorus/api"
)

// kubelet is the kubelet's restart back-off: 10 s doubling to 5 min, reset
// after 10 min of running.
var kubelet = backoffPolicy{Base: 10 * time.Second, Max: 5 * time.Minute}

var start0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// sim drives a podState as the pod worker does, with no runtime, no
// goroutine and a clock it moves itself: every container started succeeds
// at once, a postStart hook ends well at once, a kill ends the process
// with SIGTERM (143) at once.
type sim struct {
	t      fataler
	s      podState
	now    time.Time
	starts map[string][]time.Time // by container: when each start happened
	events []string               // "reason: message" of the events asked for
}

// fataler is what sim needs of a *testing.T or a *rapid.T.
type fataler interface {
	Fatalf(format string, args ...any)
}

func newSim(t fataler, p api.Pod, policy backoffPolicy) *sim {
	if p.Metadata.Name == "" {
		p.Metadata = api.ObjectMeta{Namespace: "default", Name: "p"}
	}
	x := &sim{t: t, now: start0, starts: map[string][]time.Time{}}
	x.s = newPodState(p, "10.0.0.1", policy, start0)
	x.step()
	return x
}

func pod(policy string, cs ...api.Container) api.Pod {
	return api.Pod{Metadata: api.ObjectMeta{Namespace: "default", Name: "p"},
		Spec: api.PodSpec{RestartPolicy: policy, Containers: cs}}
}

func (x *sim) idx(name string) int {
	for i, c := range x.s.ctrs {
		if c.spec.Name == name {
			return i
		}
	}
	x.t.Fatalf("no container %q", name)
	return -1
}

// apply carries out the effects a transition returned.
func (x *sim) apply(eff []effect) {
	for _, e := range eff {
		switch e.kind {
		case effEvent:
			x.events = append(x.events, e.reason+": "+e.msg)
		case effKill:
			c := &x.s.ctrs[e.idx]
			if c.running {
				x.apply(x.s.exited(exitMsg{idx: e.idx, attempt: c.attempt, st: ExitStatus{Code: 143, Signal: 15}}, x.now))
			}
		}
	}
}

// step starts what is due now, as the worker's tick does.
func (x *sim) step() {
	plan, _ := x.s.planStart(x.now)
	for _, i := range plan.StopSidecars {
		x.apply([]effect{kill(i)})
	}
	for _, i := range plan.Start {
		attempt, postStart := x.s.started(i, false, x.now)
		x.starts[x.s.ctrs[i].spec.Name] = append(x.starts[x.s.ctrs[i].spec.Name], x.now)
		if postStart != nil {
			x.apply(x.s.postStarted(hookMsg{idx: i, attempt: attempt}))
		}
	}
}

// advance moves the clock by d, a second at a time, starting what is due.
func (x *sim) advance(d time.Duration) {
	for end := x.now.Add(d); x.now.Before(end); {
		x.now = minTime(x.now.Add(time.Second), end)
		x.step()
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// exit ends the running process of container name with code.
func (x *sim) exit(name string, code int32) {
	i := x.idx(name)
	c := &x.s.ctrs[i]
	if !c.running {
		x.t.Fatalf("exit of %s, which is not running", name)
	}
	x.apply(x.s.exited(exitMsg{idx: i, attempt: c.attempt, st: ExitStatus{Code: code, Finished: x.now}}, x.now))
	x.step()
}

// probe runs the due probes of kind on container name with result err
// and reports whether one was due.
func (x *sim) probe(name string, kind int, err error) bool {
	i := x.idx(name)
	ran := false
	for _, r := range x.s.dueProbes(x.now) {
		res := error(nil)
		if r.idx == i && r.kind == kind {
			res, ran = err, true
		}
		x.apply(x.s.probed(probeMsg{idx: r.idx, attempt: r.attempt, kind: r.kind, err: res}, x.now))
	}
	x.step()
	return ran
}

func (x *sim) status() api.PodStatus { return x.s.status(x.now) }

func (x *sim) ctr(name string) api.ContainerStatus {
	for _, cs := range append(x.status().InitContainerStatuses, x.status().ContainerStatuses...) {
		if cs.Name == name {
			return cs
		}
	}
	x.t.Fatalf("no status of %q", name)
	return api.ContainerStatus{}
}

func cond(st api.PodStatus, typ string) string {
	for _, c := range st.Conditions {
		if c.Type == typ {
			return c.Status
		}
	}
	return ""
}

// A container's exit under each restartPolicy: whether it starts again,
// and the pod's phase, the container's state, restartCount and lastState.
func TestPodStateRestartPolicy(t *testing.T) {
	for _, c := range []struct {
		policy  string
		code    int32
		restart bool
		phase   string
		reason  string // waiting reason when restarted, terminated reason when not
	}{
		{api.RestartAlways, 0, true, api.PodRunning, "Completed"},
		{api.RestartAlways, 1, true, api.PodRunning, "CrashLoopBackOff"},
		{api.RestartOnFailure, 0, false, api.PodSucceeded, "Completed"},
		{api.RestartOnFailure, 2, true, api.PodRunning, "CrashLoopBackOff"},
		{api.RestartNever, 0, false, api.PodSucceeded, "Completed"},
		{api.RestartNever, 3, false, api.PodFailed, "Error"},
	} {
		t.Run(fmt.Sprintf("%s/%d", c.policy, c.code), func(t *testing.T) {
			x := newSim(t, pod(c.policy, api.Container{Name: "app", Image: "i:1"}), kubelet)
			if st := x.status(); st.Phase != api.PodRunning || cond(st, "Ready") != "True" {
				t.Fatalf("started: phase %s, Ready %s", st.Phase, cond(st, "Ready"))
			}
			x.advance(time.Minute)
			x.exit("app", c.code)
			st, cs := x.status(), x.ctr("app")
			if st.Phase != c.phase {
				t.Errorf("phase %s, want %s", st.Phase, c.phase)
			}
			if cond(st, "Ready") != "False" {
				t.Errorf("Ready %s after the exit", cond(st, "Ready"))
			}
			if c.restart {
				if cs.State.Waiting == nil || cs.State.Waiting.Reason != c.reason || cs.RestartCount != 1 {
					t.Errorf("state %+v, restartCount %d: want waiting %s, 1", cs.State, cs.RestartCount, c.reason)
				}
				if l := cs.LastState.Terminated; l == nil || l.ExitCode != c.code || !l.StartedAt.Equal(start0) || !l.FinishedAt.Equal(x.now) {
					t.Errorf("lastState %+v", cs.LastState)
				}
			} else {
				if tm := cs.State.Terminated; tm == nil || tm.Reason != c.reason || tm.ExitCode != c.code || cs.RestartCount != 0 {
					t.Errorf("state %+v, restartCount %d: want terminated %s", cs.State, cs.RestartCount, c.reason)
				}
				if cs.LastState.Terminated != nil {
					t.Errorf("lastState %+v of a container that ran once", cs.LastState)
				}
			}
			x.advance(time.Hour)
			want := 1
			if c.restart {
				want = 2
			}
			if n := len(x.starts["app"]); n != want {
				t.Errorf("started %d times in an hour, want %d", n, want)
			}
		})
	}
}

// CrashLoopBackOff as the kubelet times it: a container that crashes at
// once waits 10 s, 20 s, 40 s, 80 s, 160 s, then 300 s each time; once it
// has run more than 10 min the wait starts again from 10 s.
func TestPodStateCrashLoopBackOff(t *testing.T) {
	x := newSim(t, pod(api.RestartAlways, api.Container{Name: "app", Image: "i:1"}), kubelet)
	for i, want := range []time.Duration{10, 20, 40, 80, 160, 300, 300, 300} {
		want *= time.Second
		x.exit("app", 1)
		cs := x.ctr("app")
		if w := cs.State.Waiting; w == nil || w.Reason != "CrashLoopBackOff" ||
			w.Message != fmt.Sprintf("back-off %s restarting failed container=app pod=p", want) {
			t.Fatalf("crash %d: state %+v", i+1, cs.State)
		}
		if cs.RestartCount != int32(i+1) {
			t.Fatalf("crash %d: restartCount %d", i+1, cs.RestartCount)
		}
		crashed := x.now
		x.advance(want - time.Second)
		if n := len(x.starts["app"]); n != i+1 {
			t.Fatalf("crash %d: started again %s after, before its back-off of %s", i+1, x.now.Sub(crashed), want)
		}
		x.advance(time.Second)
		if n := len(x.starts["app"]); n != i+2 || !x.starts["app"][i+1].Equal(crashed.Add(want)) {
			t.Fatalf("crash %d: starts %v, want the next at %s", i+1, x.starts["app"], crashed.Add(want))
		}
	}
	// Ten minutes and a second of running: the back-off starts again.
	x.advance(10*time.Minute + time.Second)
	x.exit("app", 1)
	if w := x.ctr("app").State.Waiting; w == nil || !strings.HasPrefix(w.Message, "back-off 10s ") {
		t.Fatalf("after 10 min running: %+v", w)
	}
	// The restart count goes on (as the kubelet's, it never goes back).
	if n := x.ctr("app").RestartCount; n != 9 {
		t.Fatalf("restartCount %d after the back-off's reset, want 9", n)
	}
	// Less than ten minutes: it goes on doubling.
	x.advance(10*time.Second + 5*time.Minute)
	x.exit("app", 1)
	if w := x.ctr("app").State.Waiting; w == nil || !strings.HasPrefix(w.Message, "back-off 20s ") {
		t.Fatalf("after 5 min running: %+v", w)
	}
}

// A container the runtime cannot start counts as a crash: RunContainerError
// with the back-off.
func TestPodStateStartFailed(t *testing.T) {
	s := newPodState(pod(api.RestartAlways, api.Container{Name: "app", Image: "i:1"}), "", kubelet, start0)
	s.startFailed(0, errors.New("no such file"), start0)
	cs := s.status(start0).ContainerStatuses[0]
	if w := cs.State.Waiting; w == nil || w.Reason != "RunContainerError" || w.Message != "no such file" || cs.RestartCount != 1 {
		t.Fatalf("status %+v", cs)
	}
	if p, _ := s.planStart(start0.Add(9 * time.Second)); len(p.Start) != 0 {
		t.Fatalf("started during its back-off: %+v", p)
	}
	if p, _ := s.planStart(start0.Add(10 * time.Second)); len(p.Start) != 1 {
		t.Fatalf("not started after its back-off: %+v", p)
	}
}

func execProbe(period, failures int32) *api.Probe {
	return &api.Probe{Exec: &api.ExecAction{Command: []string{"check"}}, PeriodSeconds: period, FailureThreshold: failures, SuccessThreshold: 1}
}

// Liveness: failureThreshold failures in a row kill the container, which
// restarts (with the back-off); a success between failures starts the count
// again. The probe runs every period.
func TestPodStateLiveness(t *testing.T) {
	x := newSim(t, pod(api.RestartAlways, api.Container{Name: "app", Image: "i:1", LivenessProbe: execProbe(10, 3)}), kubelet)
	fail := errors.New("exit 1")
	if !x.probe("app", probeLiveness, fail) {
		t.Fatal("liveness not due at the start")
	}
	if x.probe("app", probeLiveness, fail) {
		t.Fatal("liveness due again before its period")
	}
	x.advance(10 * time.Second)
	if !x.probe("app", probeLiveness, nil) {
		t.Fatal("liveness not due after its period")
	}
	for i := range 2 {
		x.advance(10 * time.Second)
		if !x.probe("app", probeLiveness, fail) {
			t.Fatalf("liveness not due after its period (%d)", i)
		}
	}
	if !x.s.ctrs[0].running {
		t.Fatal("killed after 2 failures in a row (a success between)")
	}
	x.advance(10 * time.Second)
	x.probe("app", probeLiveness, fail)
	cs := x.ctr("app")
	if cs.State.Waiting == nil || cs.RestartCount != 1 || cs.LastState.Terminated == nil || cs.LastState.Terminated.ExitCode != 143 {
		t.Fatalf("after 3 failures: %+v", cs)
	}
	if got := strings.Join(x.events, "\n"); !strings.Contains(got, "Killing: Container app failed liveness probe, will be restarted") ||
		strings.Count(got, "Unhealthy: Liveness probe failed: exit 1") != 4 {
		t.Fatalf("events:\n%s", got)
	}
	x.advance(10 * time.Second)
	if n := len(x.starts["app"]); n != 2 {
		t.Fatalf("started %d times, want 2 (restarted after the kill)", n)
	}
	if !x.probe("app", probeLiveness, nil) {
		t.Fatal("liveness not probed after the restart")
	}
}

// Readiness flips Ready: true after successThreshold successes, false
// after failureThreshold failures; until its first success, a failure is
// probed again soon.
func TestPodStateReadiness(t *testing.T) {
	probe := execProbe(10, 2)
	probe.SuccessThreshold = 2
	x := newSim(t, pod(api.RestartAlways, api.Container{Name: "app", Image: "i:1", ReadinessProbe: probe}), kubelet)
	ready := func() string { return cond(x.status(), "Ready") }
	if ready() != "False" {
		t.Fatal("Ready before any probe")
	}
	x.probe("app", probeReadiness, errors.New("refused"))
	x.now = x.now.Add(initialReadinessRetry)
	if !x.probe("app", probeReadiness, nil) {
		t.Fatal("readiness not probed again soon before its first success")
	}
	if ready() != "False" {
		t.Fatal("Ready after 1 success of 2")
	}
	x.advance(10 * time.Second)
	x.probe("app", probeReadiness, nil)
	if ready() != "True" || cond(x.status(), "ContainersReady") != "True" || !x.ctr("app").Ready {
		t.Fatalf("not Ready after 2 successes: %+v", x.status().Conditions)
	}
	since := *x.status().Conditions[3].LastTransitionTime
	x.advance(10 * time.Second)
	x.probe("app", probeReadiness, errors.New("503"))
	if ready() != "True" {
		t.Fatal("not Ready after 1 failure of 2")
	}
	if !x.status().Conditions[3].LastTransitionTime.Equal(since) {
		t.Fatal("Ready's lastTransitionTime moved with no transition")
	}
	x.advance(10 * time.Second)
	x.probe("app", probeReadiness, errors.New("503"))
	if ready() != "False" || x.ctr("app").Ready {
		t.Fatal("Ready after 2 failures")
	}
	if at := *x.status().Conditions[3].LastTransitionTime; !at.Equal(x.now.Truncate(time.Second)) {
		t.Fatalf("Ready's lastTransitionTime %s, want %s", at, x.now)
	}
	if !x.s.ctrs[0].running {
		t.Fatal("readiness failures killed the container")
	}
}

// The startup probe gates liveness and readiness; the container is not
// Started (nor Ready) until it succeeds; failing failureThreshold times
// kills the container.
func TestPodStateStartupProbe(t *testing.T) {
	c := api.Container{Name: "app", Image: "i:1", StartupProbe: execProbe(5, 2),
		LivenessProbe: execProbe(10, 1), ReadinessProbe: execProbe(10, 1)}
	x := newSim(t, pod(api.RestartAlways, c), kubelet)
	for _, r := range x.s.dueProbes(x.now) {
		if r.kind != probeStartup {
			t.Fatalf("%s probe due before the startup probe succeeded", probeNames[r.kind])
		}
		x.apply(x.s.probed(probeMsg{idx: r.idx, attempt: r.attempt, kind: r.kind}, x.now))
	}
	if !x.s.ctrs[0].startupDone || x.s.ctrs[0].probing != [3]bool{} {
		t.Fatal("startup probe did not pass")
	}
	if cs := x.ctr("app"); !*cs.Started || cs.Ready {
		t.Fatalf("after startup: started %t ready %t", *cs.Started, cs.Ready)
	}
	if due := probesDue(&x.s.ctrs[0], x.now); due[probeStartup] != nil || due[probeLiveness] == nil || due[probeReadiness] == nil {
		t.Fatalf("after startup: due %v", due)
	}

	// A startup probe that keeps failing kills the container.
	x = newSim(t, pod(api.RestartAlways, c), kubelet)
	x.probe("app", probeStartup, errors.New("not yet"))
	if cs := x.ctr("app"); *cs.Started || x.s.ctrs[0].restarts != 0 {
		t.Fatalf("after 1 startup failure: %+v", cs)
	}
	x.advance(5 * time.Second)
	x.probe("app", probeStartup, errors.New("not yet"))
	if cs := x.ctr("app"); cs.RestartCount != 1 || cs.State.Waiting == nil {
		t.Fatalf("after 2 startup failures: %+v", cs)
	}
}

// Results and exits of an earlier attempt change nothing.
func TestPodStateStaleMessages(t *testing.T) {
	x := newSim(t, pod(api.RestartAlways, api.Container{Name: "app", Image: "i:1", LivenessProbe: execProbe(10, 1)}), kubelet)
	x.exit("app", 1)
	x.advance(10 * time.Second)
	before := x.s.ctrs[0]
	if eff := x.s.exited(exitMsg{idx: 0, attempt: 1, st: ExitStatus{Code: 1}}, x.now); eff != nil {
		t.Fatalf("stale exit: %+v", eff)
	}
	if eff := x.s.probed(probeMsg{idx: 0, attempt: 1, kind: probeLiveness, err: errors.New("x")}, x.now); eff != nil {
		t.Fatalf("stale probe: %+v", eff)
	}
	if eff := x.s.postStarted(hookMsg{idx: 0, attempt: 1, err: errors.New("x")}); eff != nil {
		t.Fatalf("stale hook: %+v", eff)
	}
	if c := x.s.ctrs[0]; !c.running || c.restarts != before.restarts || c.liveFail != 0 {
		t.Fatalf("state changed by stale messages: %+v", c)
	}
}

// A failing postStart hook kills the container (FailedPostStartHook).
func TestPodStatePostStartFailed(t *testing.T) {
	p := pod(api.RestartAlways, api.Container{Name: "app", Image: "i:1",
		Lifecycle: &api.Lifecycle{PostStart: &api.LifecycleHandler{Exec: &api.ExecAction{Command: []string{"x"}}}}})
	s := newPodState(p, "", kubelet, start0)
	s.planStart(start0)
	attempt, hook := s.started(0, false, start0)
	if hook == nil || s.ctrs[0].started() {
		t.Fatal("Started before its postStart hook ended")
	}
	eff := s.postStarted(hookMsg{idx: 0, attempt: attempt, err: errors.New("exit 2")})
	if len(eff) != 3 || eff[1].reason != "FailedPostStartHook" || eff[2].kind != effKill || eff[2].idx != 0 {
		t.Fatalf("effects %+v", eff)
	}
}

// Eviction stops every container for good: Failed, Evicted, no restart.
func TestPodStateEvict(t *testing.T) {
	x := newSim(t, pod(api.RestartAlways, api.Container{Name: "a", Image: "i:1"}, api.Container{Name: "b", Image: "i:1"}), kubelet)
	x.apply(x.s.evict("too big"))
	if eff := x.s.evict("again"); eff != nil {
		t.Fatalf("evicted twice: %+v", eff)
	}
	x.advance(time.Hour)
	st := x.status()
	if st.Phase != api.PodFailed || st.Reason != "Evicted" || st.Message != "too big" || len(x.starts["a"]) != 1 || len(x.starts["b"]) != 1 {
		t.Fatalf("after eviction: %s %s %q, starts %v", st.Phase, st.Reason, st.Message, x.starts)
	}
}

// The laws of restarts, whatever the exits, their codes and their times:
// a container waits at least the base and at most the cap of the back-off
// between a crash and its next start; under Never no container starts
// twice; under OnFailure none starts again after exiting 0; restartCount
// counts the restarts.
func TestPodStateRestartProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		policy := rapid.SampledFrom([]string{api.RestartAlways, api.RestartOnFailure, api.RestartNever}).Draw(t, "policy")
		base := time.Duration(rapid.IntRange(1, 20).Draw(t, "base")) * time.Second
		backoff := backoffPolicy{Base: base, Max: base * time.Duration(rapid.IntRange(1, 40).Draw(t, "maxFactor"))}
		names := []string{"a", "b"}
		var cs []api.Container
		for _, n := range names {
			cs = append(cs, api.Container{Name: n, Image: "i:1"})
		}
		x := newSim(t, pod(policy, cs...), backoff)
		exitedAt := map[string]time.Time{}
		exitedOK := map[string]bool{}
		for range rapid.IntRange(1, 30).Draw(t, "steps") {
			if rapid.Bool().Draw(t, "exit") {
				n := rapid.SampledFrom(names).Draw(t, "who")
				if !x.s.ctrs[x.idx(n)].running {
					continue
				}
				code := rapid.SampledFrom([]int32{0, 1, 137}).Draw(t, "code")
				before := len(x.starts[n])
				exitedAt[n], exitedOK[n] = x.now, code == 0
				x.exit(n, code)
				if len(x.starts[n]) != before {
					t.Fatalf("%s started again at once after exiting", n)
				}
				if c := &x.s.ctrs[x.idx(n)]; c.terminated == nil {
					if wait := c.nextStart.Sub(x.now); wait < backoff.Base || wait > backoff.Max {
						t.Fatalf("%s waits %s, outside [%s, %s]", n, wait, backoff.Base, backoff.Max)
					}
				}
				continue
			}
			before := map[string]int{}
			for _, n := range names {
				before[n] = len(x.starts[n])
			}
			x.advance(time.Duration(rapid.IntRange(1, 600).Draw(t, "advance")) * time.Second)
			for _, n := range names {
				if before := before[n]; len(x.starts[n]) > before {
					if wait := x.starts[n][before].Sub(exitedAt[n]); wait > backoff.Max+time.Second {
						t.Fatalf("%s restarted %s after its exit: more than the cap %s", n, wait, backoff.Max)
					}
				}
			}
		}
		for _, n := range names {
			starts := len(x.starts[n])
			cs := x.ctr(n)
			switch {
			case policy == api.RestartNever && starts != 1:
				t.Fatalf("%s started %d times under Never", n, starts)
			case policy == api.RestartOnFailure && exitedOK[n] && (cs.State.Terminated == nil || x.s.ctrs[x.idx(n)].running):
				t.Fatalf("%s runs again after exiting 0 under OnFailure: %+v", n, cs.State)
			case cs.RestartCount != int32(starts) && cs.RestartCount != int32(starts-1):
				t.Fatalf("%s: restartCount %d with %d starts", n, cs.RestartCount, starts)
			}
		}
	})
}

// The laws of the status, whatever happens in whatever order (exits,
// probe results of every kind, time passing): a Ready pod has every app
// container running, Started and ready; a container is never Ready unless
// Started; restartCount never goes back; a pod that ended (Succeeded or
// Failed) under OnFailure or Never stays so and starts nothing again.
func TestPodStateStatusProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		policy := rapid.SampledFrom([]string{api.RestartAlways, api.RestartOnFailure, api.RestartNever}).Draw(t, "policy")
		var cs []api.Container
		for i := range rapid.IntRange(1, 3).Draw(t, "containers") {
			c := api.Container{Name: fmt.Sprintf("c%d", i), Image: "i:1"}
			if rapid.Bool().Draw(t, "liveness") {
				c.LivenessProbe = execProbe(int32(rapid.IntRange(1, 20).Draw(t, "period")), int32(rapid.IntRange(1, 3).Draw(t, "failures")))
			}
			if rapid.Bool().Draw(t, "readiness") {
				c.ReadinessProbe = execProbe(int32(rapid.IntRange(1, 20).Draw(t, "period")), int32(rapid.IntRange(1, 3).Draw(t, "failures")))
			}
			if rapid.Bool().Draw(t, "startup") {
				c.StartupProbe = execProbe(int32(rapid.IntRange(1, 20).Draw(t, "period")), int32(rapid.IntRange(1, 3).Draw(t, "failures")))
			}
			cs = append(cs, c)
		}
		x := newSim(t, pod(policy, cs...), kubelet)
		restarts := map[string]int32{}
		ended := ""
		for range rapid.IntRange(1, 40).Draw(t, "steps") {
			switch rapid.IntRange(0, 2).Draw(t, "what") {
			case 0:
				n := rapid.SampledFrom(cs).Draw(t, "who").Name
				if x.s.ctrs[x.idx(n)].running {
					x.exit(n, rapid.SampledFrom([]int32{0, 1}).Draw(t, "code"))
				}
			case 1:
				for _, r := range x.s.dueProbes(x.now) {
					var err error
					if rapid.Bool().Draw(t, "probeFails") {
						err = errors.New("fail")
					}
					x.apply(x.s.probed(probeMsg{idx: r.idx, attempt: r.attempt, kind: r.kind, err: err}, x.now))
				}
				x.step()
			default:
				x.advance(time.Duration(rapid.IntRange(1, 400).Draw(t, "seconds")) * time.Second)
			}
			st := x.status()
			if cond(st, "Ready") == "True" {
				for i, c := range x.s.ctrs {
					if !c.running || !c.started() || !c.ready {
						t.Fatalf("pod Ready while %s is running %t, started %t, ready %t", st.ContainerStatuses[i].Name, c.running, c.started(), c.ready)
					}
				}
			}
			for _, c := range st.ContainerStatuses {
				if c.Ready && !*c.Started {
					t.Fatalf("%s Ready but not Started", c.Name)
				}
				if c.RestartCount < restarts[c.Name] {
					t.Fatalf("%s: restartCount went back from %d to %d", c.Name, restarts[c.Name], c.RestartCount)
				}
				restarts[c.Name] = c.RestartCount
			}
			if policy != api.RestartAlways {
				if ended != "" && st.Phase != ended {
					t.Fatalf("phase went from %s to %s", ended, st.Phase)
				}
				if st.Phase == api.PodSucceeded || st.Phase == api.PodFailed {
					ended = st.Phase
				}
			}
		}
		if ended != "" {
			before := fmt.Sprint(x.starts)
			x.advance(time.Hour)
			if after := fmt.Sprint(x.starts); after != before {
				t.Fatalf("a pod that ended (%s) started containers: %s, then %s", ended, before, after)
			}
		}
	})
}
