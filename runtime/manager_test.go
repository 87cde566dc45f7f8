package runtime_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/runtime"
	"github.com/chorus-sh/chorus/runtime/runtimetest"
)

// These tests drive the real PodManager (its workers, goroutines and
// channels) over the in-memory runtime, with a clock they move: the
// kubelet's back-off of minutes passes in milliseconds.

const appID = "default_p_app" // the runtime's id of container app of pod default/p

// startManager starts a PodManager over rt with the kubelet's back-off (10 s
// doubling to 5 min) and clk as its clock; at the end of the test it
// closes it and checks that no goroutine is left.
func startManager(t *testing.T, rt runtime.Runtime, clk *runtimetest.Clock) *runtime.PodManager {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	m := runtime.NewPodManager(rt, runtime.Options{Node: "n1", HostIP: "127.0.0.1", StateDir: t.TempDir(),
		BackoffBase: 10 * time.Second, BackoffMax: 5 * time.Minute, Now: clk.Now,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		m.Close()
		goleak.VerifyNone(t, ignore)
	})
	return m
}

// eventually waits (at most 5 s) until cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not so after 5 s", what)
		}
	}
}

// never checks that cond stays false for a few of the worker's ticks.
func never(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(300 * time.Millisecond); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			t.Fatalf("%s", what)
		}
	}
}

func onePod(policy string, c api.Container) api.Pod {
	c.Name, c.Image = "app", "i:1"
	return api.Pod{Metadata: api.ObjectMeta{Namespace: "default", Name: "p"},
		Spec: api.PodSpec{RestartPolicy: policy, Containers: []api.Container{c}}}
}

func status(m *runtime.PodManager) api.ContainerStatus {
	ps := m.Pods()
	if len(ps) != 1 || len(ps[0].Status.ContainerStatuses) != 1 {
		return api.ContainerStatus{}
	}
	return ps[0].Status.ContainerStatuses[0]
}

func phase(m *runtime.PodManager) string {
	if ps := m.Pods(); len(ps) == 1 {
		return ps[0].Status.Phase
	}
	return ""
}

// A crashing container restarts at the kubelet's back-off, measured on
// the manager's clock: 10 s, then 20 s.
func TestManagerCrashLoopBackOff(t *testing.T) {
	rt, clk := runtimetest.New(), runtimetest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	rt.SetScript(func(runtime.ContainerConfig, int) (int32, bool) { return 1, true })
	m := startManager(t, rt, clk)
	m.Sync([]api.Pod{onePod(api.RestartAlways, api.Container{})})
	for i, wait := range []time.Duration{10 * time.Second, 20 * time.Second} {
		eventually(t, "CrashLoopBackOff", func() bool {
			cs := status(m)
			return cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff" && cs.RestartCount == int32(i+1)
		})
		if cs := status(m); cs.LastState.Terminated == nil || cs.LastState.Terminated.ExitCode != 1 {
			t.Fatalf("lastState %+v", cs.LastState)
		}
		clk.Advance(wait - time.Second)
		never(t, "restarted before its back-off", func() bool { return rt.Starts(appID) > i+1 })
		clk.Advance(time.Second)
		eventually(t, "restarted after its back-off", func() bool { return rt.Starts(appID) == i+2 })
	}
	if p := phase(m); p != api.PodRunning {
		t.Fatalf("phase %s", p)
	}
}

// Under Never a container that failed is not started again: the pod is
// Failed.
func TestManagerRestartNever(t *testing.T) {
	rt, clk := runtimetest.New(), runtimetest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	m := startManager(t, rt, clk)
	m.Sync([]api.Pod{onePod(api.RestartNever, api.Container{})})
	eventually(t, "running", func() bool { return phase(m) == api.PodRunning })
	if err := rt.Exit(appID, 2); err != nil {
		t.Fatal(err)
	}
	eventually(t, "failed", func() bool { return phase(m) == api.PodFailed })
	clk.Advance(time.Hour)
	never(t, "started again under Never", func() bool { return rt.Starts(appID) != 1 })
	if cs := status(m); cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 2 || cs.RestartCount != 0 {
		t.Fatalf("status %+v", cs)
	}
}

// A liveness probe failing failureThreshold times kills the container; it
// restarts after the back-off; readiness follows its probe.
func TestManagerProbes(t *testing.T) {
	rt, clk := runtimetest.New(), runtimetest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	var alive, ready atomic.Bool
	var liveFailures atomic.Int32
	alive.Store(true)
	rt.SetExec(func(_ string, cmd []string) (int, []byte, error) {
		ok := map[string]*atomic.Bool{"alive": &alive, "ready": &ready}[cmd[0]].Load()
		if ok {
			return 0, nil, nil
		}
		if cmd[0] == "alive" {
			liveFailures.Add(1)
		}
		return 1, []byte("no"), nil
	})
	probe := func(cmd string) *api.Probe {
		return &api.Probe{Exec: &api.ExecAction{Command: []string{cmd}}, PeriodSeconds: 10, FailureThreshold: 2, SuccessThreshold: 1, TimeoutSeconds: 1}
	}
	m := startManager(t, rt, clk)
	m.Sync([]api.Pod{onePod(api.RestartAlways, api.Container{LivenessProbe: probe("alive"), ReadinessProbe: probe("ready")})})
	eventually(t, "running, not ready", func() bool { cs := status(m); return cs.State.Running != nil && !cs.Ready })
	ready.Store(true)
	clk.Advance(10 * time.Second)
	eventually(t, "ready", func() bool { return status(m).Ready })

	alive.Store(false)
	clk.Advance(10 * time.Second)
	eventually(t, "one liveness failure", func() bool { return liveFailures.Load() == 1 })
	never(t, "killed after one failure of two", func() bool { return !rt.Running(appID) })
	clk.Advance(10 * time.Second)
	eventually(t, "killed and waiting", func() bool {
		cs := status(m)
		return cs.RestartCount == 1 && cs.State.Waiting != nil && !cs.Ready && cs.LastState.Terminated != nil
	})
	alive.Store(true)
	clk.Advance(10 * time.Second)
	eventually(t, "restarted and ready", func() bool {
		cs := status(m)
		return rt.Starts(appID) == 2 && cs.State.Running != nil && cs.Ready
	})
}

// Removing the pod stops and removes its containers and network.
func TestManagerRemove(t *testing.T) {
	rt, clk := runtimetest.New(), runtimetest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	m := startManager(t, rt, clk)
	m.Sync([]api.Pod{onePod(api.RestartAlways, api.Container{})})
	eventually(t, "running", func() bool { return rt.Running(appID) })
	m.Sync(nil)
	eventually(t, "removed", func() bool { return m.PodCount() == 0 })
	log := strings.Join(rt.Log(), "\n")
	for _, want := range []string{"stop " + appID, "remove " + appID, "teardown default_p"} {
		if !strings.Contains(log, want) {
			t.Errorf("no %q in\n%s", want, log)
		}
	}
}
