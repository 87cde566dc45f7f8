package runtime

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/chorus-sh/chorus/api"
)

// This file holds the pod's state machine, as etcd's raft holds its own: the
// state of one pod and its containers, and the transitions the pod worker
// (pods.go) feeds it: a container started or failed to start, a process
// exited, a probe answered, a postStart hook ended, the pod evicted. Every
// transition is given the time (nothing here reads a clock) and returns the
// effects for the worker to carry out (status changed, events, logs,
// containers to kill); planStart and dueProbes say what to start and probe
// at a time, status computes the Kubernetes status. Nothing here does I/O.

// podState is the state of one pod: its spec, network, containers and
// the pod-level facts of its life.
type podState struct {
	key      string // namespace/name
	pod      api.Pod
	nw       PodNetwork
	ctrs     []ctrState
	reason   string
	message  string
	created  time.Time
	stopping bool
	// evicted: an emptyDir outgrew its sizeLimit; the containers are
	// stopped for good and the pod is Failed (reason Evicted), as the
	// kubelet evicts it.
	evicted bool
	// initialized: every init container has done its part; the app
	// containers may run (it stays so).
	initialized bool
	// condSince holds each condition's status and when it took it, for
	// its lastTransitionTime (the autoscaler reads Ready's).
	condSince map[string]condMark

	hostIP string
	policy backoffPolicy
}

// backoffPolicy is the restart back-off: the first restart waits Base,
// each next one twice the previous, at most Max; a container that ran
// longer than 2*Max before it exited starts the count again (the
// kubelet's is 10 s, 5 min, and so 10 min).
type backoffPolicy struct {
	Base, Max time.Duration
}

// delay is the wait before restart number n (1 for the first).
func (b backoffPolicy) delay(n int32) time.Duration { return backoffDelay(b.Base, b.Max, n) }

// resets reports whether a container that ran for ran starts its back-off
// afresh.
func (b backoffPolicy) resets(ran time.Duration) bool { return ran > 2*b.Max }

// condMark is a condition's status since a time.
type condMark struct {
	status string
	since  time.Time
}

// ctrState is the observed state of one container of a pod.
type ctrState struct {
	spec     api.Container
	init     bool   // an init container (sidecars too)
	sidecar  bool   // an init container with restartPolicy Always
	image    string // normalized
	restarts int32  // restartCount: never goes back
	// backoffN is the restarts the back-off counts: as restarts, but back
	// to 0 when the container ran longer than the policy's reset.
	backoffN  int32
	running   bool
	adopt     bool // running when adopted: attach, do not start
	startedAt time.Time
	attempt   int64 // increments at every start, so stale exits are ignored

	waitReason, waitMessage string
	last                    *api.ContainerStateTerminated
	terminated              *api.ContainerStateTerminated // set while not running and not restarting
	nextStart               time.Time

	ready                bool
	readyOK, readyFail   int32
	liveFail             int32
	startupFail          int32
	nextReady, nextLive  time.Time
	nextStartup          time.Time
	probing              [3]bool // readiness, liveness, startup in flight
	everReady            bool    // readiness succeeded once since the start
	startedOnce          bool
	lastProbeFailMessage string

	// postStartDone: the postStart hook of this start ended well (or there
	// is none); startupDone: the startup probe succeeded (or there is
	// none). Both make the container Started.
	postStartDone, startupDone bool
	succeeded                  bool // an init container (not a sidecar) that exited 0
	stopRequested              bool // a sidecar stopped because the app containers ended
	killing                    bool // a kill (probe or hook failure) is under way
}

// started reports whether the container is Started as Kubernetes says:
// running, its postStart hook done and its startup probe passed.
func (c *ctrState) started() bool { return c.running && c.postStartDone && c.startupDone }

// view is what the start decisions (podlife.go) read of c.
func (c *ctrState) view() ctrView {
	return ctrView{Init: c.init, Sidecar: c.sidecar, Running: c.running, Started: c.started(),
		Succeeded: c.succeeded, Terminated: c.terminated != nil && !c.succeeded, StopRequested: c.stopRequested,
		NextStart: c.nextStart}
}

// Probe kinds, the index of ctrState.probing.
const (
	probeReadiness = iota
	probeLiveness
	probeStartup
)

var probeNames = [3]string{"Readiness", "Liveness", "Startup"}

// initialReadinessRetry is how soon readiness is probed again after a
// failure, until its first success.
const initialReadinessRetry = 200 * time.Millisecond

// exitMsg is the end of a container's process.
type exitMsg struct {
	idx     int
	attempt int64
	st      ExitStatus
}

// probeMsg is the result of a probe.
type probeMsg struct {
	idx     int
	attempt int64
	kind    int
	err     error
}

// hookMsg is the end of a postStart hook.
type hookMsg struct {
	idx     int
	attempt int64
	err     error
}

// effectKind says what an effect asks of the pod worker.
type effectKind int

const (
	effChanged effectKind = iota // the pod's status changed
	effEvent                     // record an event (typ, reason, msg)
	effLog                       // log msg with attrs at level
	effKill                      // kill container idx: preStop, SIGTERM, SIGKILL at the grace deadline
)

// effect is one thing a transition asks the pod worker to do, in order.
type effect struct {
	kind             effectKind
	idx              int
	typ, reason, msg string
	level            slog.Level
	attrs            []any
}

func changed() effect { return effect{kind: effChanged} }
func event(typ, reason, msg string) effect {
	return effect{kind: effEvent, typ: typ, reason: reason, msg: msg}
}
func logInfo(msg string, attrs ...any) effect { return effect{kind: effLog, msg: msg, attrs: attrs} }
func kill(i int) effect                       { return effect{kind: effKill, idx: i} }

// newPodState returns the state of pod p before anything ran, created at
// now: every container waiting (PodInitializing until the init containers
// have done their part, ContainerCreating after).
func newPodState(p api.Pod, hostIP string, policy backoffPolicy, now time.Time) podState {
	s := podState{key: podKey(&p), pod: p, created: now, initialized: len(p.Spec.InitContainers) == 0,
		hostIP: hostIP, policy: policy}
	add := func(c api.Container, init bool) {
		img, err := NormalizeImage(c.Image)
		if err != nil {
			img = c.Image
		}
		reason := "ContainerCreating"
		if init || !s.initialized {
			reason = "PodInitializing"
		}
		s.ctrs = append(s.ctrs, ctrState{spec: c, init: init, sidecar: init && c.IsSidecar(), image: img, waitReason: reason})
	}
	for _, c := range p.Spec.InitContainers {
		add(c, true)
	}
	for _, c := range p.Spec.Containers {
		add(c, false)
	}
	return s
}

// planStart decides what starts and stops at now (planStarts, podlife.go)
// and applies its pod-level part: the pod becomes initialized (reported as
// initializedNow) and the sidecars to stop are marked. Nothing starts in an
// evicted pod.
func (s *podState) planStart(now time.Time) (plan startPlan, initializedNow bool) {
	if s.evicted {
		return startPlan{}, false
	}
	views := make([]ctrView, len(s.ctrs))
	for i := range s.ctrs {
		views[i] = s.ctrs[i].view()
	}
	plan = planStarts(views, s.initialized, now)
	initializedNow = plan.Initialized && !s.initialized
	if initializedNow {
		s.initialized = true
		for i := range s.ctrs {
			if c := &s.ctrs[i]; !c.init && c.waitReason == "PodInitializing" {
				c.waitReason = "ContainerCreating"
			}
		}
	}
	for _, i := range plan.StopSidecars {
		s.ctrs[i].stopRequested = true
	}
	return plan, initializedNow
}

// retryAt leaves container i waiting with reason and msg until at, when it
// is tried again (nothing was made; no restart counted).
func (s *podState) retryAt(i int, reason, msg string, at time.Time) {
	c := &s.ctrs[i]
	c.waitReason, c.waitMessage = reason, msg
	c.nextStart = at
}

// startFailed applies a container that the runtime could not start: it
// counts as a crash (a restart, with its back-off from now).
func (s *podState) startFailed(i int, err error, now time.Time) {
	c := &s.ctrs[i]
	c.restarts++
	c.backoffN++
	c.waitReason, c.waitMessage = "RunContainerError", err.Error()
	c.nextStart = now.Add(s.policy.delay(c.backoffN))
}

// started applies container i's process running from now (adopt: one
// found running after an agent restart, whose start time is kept): a new
// attempt, readiness and probes from the start (each after its initial
// delay). It returns the attempt and the postStart hook to run (none for
// an adopted container).
func (s *podState) started(i int, adopt bool, now time.Time) (attempt int64, postStart *api.LifecycleHandler) {
	c := &s.ctrs[i]
	c.attempt++
	c.running = true
	if !adopt || c.startedAt.IsZero() {
		c.startedAt = now
	}
	c.adopt = false
	c.startedOnce = true
	c.waitReason, c.waitMessage = "", ""
	c.ready = c.spec.ReadinessProbe == nil
	c.readyOK, c.readyFail, c.liveFail, c.startupFail = 0, 0, 0, 0
	c.everReady = false
	c.terminated = nil
	delay := func(p *api.Probe) time.Time {
		if p == nil {
			return time.Time{}
		}
		return now.Add(time.Duration(p.InitialDelaySeconds) * time.Second)
	}
	c.nextReady, c.nextLive, c.nextStartup = delay(c.spec.ReadinessProbe), delay(c.spec.LivenessProbe), delay(c.spec.StartupProbe)
	c.startupDone = c.spec.StartupProbe == nil
	if l := c.spec.Lifecycle; l != nil && !adopt {
		postStart = l.PostStart
	}
	c.postStartDone = postStart == nil
	return c.attempt, postStart
}

// postStarted applies the end of a postStart hook: the container is
// Started, or killed (and restarted per its policy) when the hook failed.
// A hook of an earlier attempt is ignored.
func (s *podState) postStarted(h hookMsg) []effect {
	c := &s.ctrs[h.idx]
	if h.attempt != c.attempt || !c.running {
		return nil
	}
	if h.err == nil {
		c.postStartDone = true
		return []effect{changed()}
	}
	name := c.spec.Name
	return []effect{
		logInfo("postStart hook failed; killing container", "container", name, "err", h.err),
		event("Warning", "FailedPostStartHook", fmt.Sprintf("PostStartHook failed for container %s: %v", name, h.err)),
		kill(h.idx),
	}
}

// restartContainer decides, as the kubelet does, whether a container that
// exited with code starts again under the pod's restartPolicy: Always (the
// default) whatever the code, OnFailure only after a failure, Never never.
// A container not restarted has ended for good; when all have, the pod is
// Succeeded (every code 0) or Failed.
func restartContainer(policy string, code int32) bool {
	switch policy {
	case api.RestartNever:
		return false
	case api.RestartOnFailure:
		return code != 0
	}
	return true
}

// exited applies the end of a container's process at now: its last state,
// and either a restart after the back-off (CrashLoopBackOff meanwhile) or
// its end for good, by the kind of container and the pod's restartPolicy.
// An exit of an earlier attempt is ignored.
func (s *podState) exited(e exitMsg, now time.Time) []effect {
	c := &s.ctrs[e.idx]
	if e.attempt != c.attempt || !c.running {
		return nil
	}
	fin := e.st.Finished.UTC()
	if fin.IsZero() || fin.Year() < 2000 {
		fin = now.UTC()
	}
	started := c.startedAt
	term := &api.ContainerStateTerminated{ExitCode: e.st.Code, Signal: e.st.Signal, StartedAt: &started, FinishedAt: &fin}
	switch {
	case e.st.Code == 0:
		term.Reason = "Completed"
	case e.st.Code == 137 && c.liveFail > 0:
		term.Reason = "Error"
	case e.st.Code == 137 && c.spec.Resources.Limits["memory"] != "":
		term.Reason = "OOMKilled"
	default:
		term.Reason = "Error"
	}
	c.running, c.ready = false, false
	c.last = term
	var restart bool
	switch {
	case s.evicted:
	case c.sidecar:
		// A sidecar restarts whatever the pod's policy, until the app
		// containers have all ended.
		restart = !c.stopRequested && !s.stopping
	case c.init && e.st.Code == 0:
		c.succeeded = true
	case c.init:
		// A failed init container runs again unless the pod's policy is
		// Never (then the pod has failed).
		restart = s.pod.Spec.RestartPolicy != api.RestartNever
	default:
		restart = restartContainer(s.pod.Spec.RestartPolicy, e.st.Code)
	}
	name := c.spec.Name
	if restart {
		if s.policy.resets(now.Sub(started)) {
			c.backoffN = 0
		}
		c.restarts++
		c.backoffN++
		d := s.policy.delay(c.backoffN)
		c.nextStart = now.Add(d)
		c.waitReason = "CrashLoopBackOff"
		c.waitMessage = fmt.Sprintf("back-off %s restarting failed container=%s pod=%s", d, name, s.pod.Metadata.Name)
		if e.st.Code == 0 {
			c.waitReason = "Completed"
		}
	} else {
		c.terminated = term
	}
	eff := []effect{changed(), logInfo("container exited", "container", name, "code", e.st.Code, "restart", restart)}
	if restart {
		eff = append(eff, event("Warning", "BackOff", fmt.Sprintf("Container %s exited with code %d; restarting (restart %d)", name, e.st.Code, c.restarts)))
	}
	return eff
}

// probeReq is a probe to run now.
type probeReq struct {
	idx     int
	attempt int64
	kind    int
	probe   *api.Probe
}

// dueProbes returns the probes to run at now (one of each kind at a time
// per container, see probesDue) and marks them in flight, each next due a
// period later. Containers not running or being killed are not probed.
func (s *podState) dueProbes(now time.Time) []probeReq {
	var out []probeReq
	for i := range s.ctrs {
		c := &s.ctrs[i]
		if !c.running || c.killing {
			continue
		}
		for k, p := range probesDue(c, now) {
			if p == nil {
				continue
			}
			c.probing[k] = true
			*c.probeNext(k) = now.Add(time.Duration(max(p.PeriodSeconds, 1)) * time.Second)
			out = append(out, probeReq{idx: i, attempt: c.attempt, kind: k, probe: p})
		}
	}
	return out
}

func (c *ctrState) probeNext(kind int) *time.Time {
	switch kind {
	case probeLiveness:
		return &c.nextLive
	case probeStartup:
		return &c.nextStartup
	}
	return &c.nextReady
}

// probesDue returns, by kind, the probes of a running container to run at
// now (nil for none): the startup probe until it has succeeded, then
// readiness and liveness, each when its time has come and none of its
// kind is in flight.
func probesDue(c *ctrState, now time.Time) [3]*api.Probe {
	var due [3]*api.Probe
	probes := [3]*api.Probe{c.spec.ReadinessProbe, c.spec.LivenessProbe, c.spec.StartupProbe}
	for k, p := range probes {
		gated := k != probeStartup && !c.startupDone || k == probeStartup && c.startupDone
		if p == nil || gated || c.probing[k] || now.Before(*c.probeNext(k)) {
			continue
		}
		due[k] = p
	}
	return due
}

// probed applies a probe result at now: readiness sets ready (after
// successThreshold successes; unset after failureThreshold failures); the
// startup probe succeeding once makes the container Started; liveness (or
// the startup probe) failing failureThreshold times in a row kills the
// container, which restarts it. A result of an earlier attempt is ignored.
func (s *podState) probed(p probeMsg, now time.Time) []effect {
	c := &s.ctrs[p.idx]
	c.probing[p.kind] = false
	if p.attempt != c.attempt || !c.running {
		return nil
	}
	name := c.spec.Name
	var doKill, change bool
	var warn string
	switch p.kind {
	case probeLiveness, probeStartup:
		pr, fails := c.spec.LivenessProbe, &c.liveFail
		if p.kind == probeStartup {
			pr, fails = c.spec.StartupProbe, &c.startupFail
		}
		if p.err == nil {
			*fails = 0
			if p.kind == probeStartup {
				c.startupDone = true
				// Liveness and readiness start now (their initial delays
				// count from here).
				c.nextLive = laterOf(c.nextLive, now)
				c.nextReady = laterOf(c.nextReady, now)
				change = true
			}
		} else {
			*fails++
			warn = probeNames[p.kind] + " probe failed: " + p.err.Error()
			if *fails >= max(pr.FailureThreshold, 1) {
				doKill = true
			}
		}
	default:
		pr := c.spec.ReadinessProbe
		was := c.ready
		if p.err == nil {
			c.readyFail = 0
			c.readyOK++
			if c.readyOK >= max(pr.SuccessThreshold, 1) {
				c.ready = true
				c.everReady = true
			}
		} else {
			c.readyOK = 0
			c.readyFail++
			if c.everReady || c.readyFail%10 == 0 {
				warn = "Readiness probe failed: " + p.err.Error()
			}
			if !c.everReady {
				// Until the first success, probe again soon: a container
				// that starts listening a moment after it starts should not
				// wait a whole period to become Ready.
				if soon := now.Add(initialReadinessRetry); c.nextReady.After(soon) {
					c.nextReady = soon
				}
			}
			if c.readyFail >= max(pr.FailureThreshold, 1) {
				c.ready = false
			}
		}
		change = was != c.ready
	}
	var eff []effect
	if change {
		eff = append(eff, changed())
	}
	if warn != "" {
		eff = append(eff, event("Warning", "Unhealthy", warn))
	}
	if doKill {
		kind := strings.ToLower(probeNames[p.kind])
		eff = append(eff, logInfo(kind+" probe failed; restarting container", "container", name),
			event("Normal", "Killing", "Container "+name+" failed "+kind+" probe, will be restarted"),
			kill(p.idx))
	}
	return eff
}

func laterOf(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// evict stops every container of the pod for good: the pod is Failed with
// reason Evicted and msg, as the kubelet evicts a pod. A pod evicted
// already is left as it is.
func (s *podState) evict(msg string) []effect {
	if s.evicted {
		return nil
	}
	s.evicted = true
	s.reason, s.message = "Evicted", msg
	eff := []effect{{kind: effLog, level: slog.LevelWarn, msg: "pod evicted", attrs: []any{"reason", msg}},
		event("Warning", "Evicted", msg)}
	for i := range s.ctrs {
		eff = append(eff, kill(i))
	}
	return append(eff, changed())
}

// status computes the pod's Kubernetes status at now: the containers'
// states (running, waiting with a reason, terminated; the last
// termination), restart counts, readiness, the phase and the conditions,
// each with the time it took its status (kept in condSince).
func (s *podState) status(now time.Time) api.PodStatus {
	st := api.PodStatus{HostIP: s.hostIP, PodIP: s.nw.IP, Reason: s.reason, Message: s.message}
	if !s.created.IsZero() {
		t := s.created
		st.StartTime = &t
	}
	allReady, anyRunning, allStartedOnce := true, false, true
	allTerminated, anyFailed, initFailed, apps := true, false, false, 0
	for i := range s.ctrs {
		c := &s.ctrs[i]
		started := c.started()
		cs := api.ContainerStatus{Name: c.spec.Name, Image: c.spec.Image, RestartCount: c.restarts, Ready: started && c.ready,
			ContainerID: "containerd://" + containerID(s.key, c.spec.Name)}
		cs.Started = &started
		switch {
		case c.running:
			t := c.startedAt
			cs.State.Running = &api.ContainerStateRunning{StartedAt: &t}
		case c.terminated != nil:
			cs.State.Terminated = c.terminated
		default:
			cs.State.Waiting = &api.ContainerStateWaiting{Reason: c.waitReason, Message: c.waitMessage}
		}
		if c.last != nil && c.last != c.terminated {
			cs.LastState.Terminated = c.last
		}
		if c.init {
			if !c.sidecar {
				// A Completed init container is not ready (as the kubelet reports it).
				cs.Ready = false
				initFailed = initFailed || c.terminated != nil && !c.succeeded
			} else if !cs.Ready {
				allReady = false
			}
			st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
			continue
		}
		apps++
		if !cs.Ready {
			allReady = false
		}
		if c.running {
			anyRunning = true
		}
		if !c.startedOnce {
			allStartedOnce = false
		}
		if c.terminated == nil {
			allTerminated = false
		} else if c.terminated.ExitCode != 0 {
			anyFailed = true
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	switch {
	case s.evicted:
		st.Phase = api.PodFailed
	case initFailed:
		st.Phase = api.PodFailed
	case !s.initialized:
		st.Phase = api.PodPending
	case apps > 0 && allTerminated && anyFailed:
		st.Phase = api.PodFailed
	case apps > 0 && allTerminated:
		st.Phase = api.PodSucceeded
	case allStartedOnce && (anyRunning || apps > 0):
		st.Phase = api.PodRunning
	default:
		st.Phase = api.PodPending
	}
	cond := func(typ string, ok bool) api.PodCondition {
		s := "False"
		if ok {
			s = "True"
		}
		return api.PodCondition{Type: typ, Status: s}
	}
	initCond := cond("Initialized", s.initialized)
	if !s.initialized {
		initCond.Reason = "ContainersNotInitialized"
		var pending []string
		for _, c := range s.ctrs {
			if c.init && !c.succeeded && !(c.sidecar && c.started()) {
				pending = append(pending, c.spec.Name)
			}
		}
		initCond.Message = "containers with incomplete status: [" + strings.Join(pending, " ") + "]"
	}
	st.Conditions = []api.PodCondition{
		cond("PodScheduled", true),
		initCond,
		cond("ContainersReady", allReady && apps > 0),
		cond("Ready", allReady && apps > 0 && !s.stopping),
	}
	if s.condSince == nil {
		s.condSince = map[string]condMark{}
	}
	at := now.UTC().Truncate(time.Second)
	for i := range st.Conditions {
		c := &st.Conditions[i]
		m, ok := s.condSince[c.Type]
		if !ok || m.status != c.Status {
			m = condMark{c.Status, at}
			s.condSince[c.Type] = m
		}
		t := m.since
		c.LastTransitionTime = &t
	}
	return st
}
