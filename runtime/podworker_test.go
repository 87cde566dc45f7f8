package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
)

// fakeRuntime is an in-memory Runtime for the PodManager: each started
// container runs until its program (by container name) says it exits, or
// until it is stopped. It records what happens, in order.
type fakeRuntime struct {
	mu      sync.Mutex
	log     []string
	exits   map[string]chan ExitStatus // by container id: the current process
	program func(name string) (code int32, after time.Duration, exits bool)
	images  map[string]bool
}

func newFakeRuntime(program func(name string) (int32, time.Duration, bool)) *fakeRuntime {
	return &fakeRuntime{exits: map[string]chan ExitStatus{}, program: program, images: map[string]bool{}}
}

func (f *fakeRuntime) record(s string) {
	f.mu.Lock()
	f.log = append(f.log, s)
	f.mu.Unlock()
}

func (f *fakeRuntime) events() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

// name is the container name of an id "<ns>_<pod>_<name>".
func name(id string) string { return id[strings.LastIndexByte(id, '_')+1:] }

func (f *fakeRuntime) ImportImage(context.Context, io.Reader) ([]Image, error) { return nil, nil }
func (f *fakeRuntime) Images(context.Context) ([]Image, error)                 { return nil, nil }
func (f *fakeRuntime) HasImage(_ context.Context, ref string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !strings.Contains(ref, "absent") || f.images[ref], nil
}
func (f *fakeRuntime) SetupNetwork(context.Context, string) (PodNetwork, error) {
	return PodNetwork{NetNSPath: "/fake", IP: "127.0.0.1"}, nil
}
func (f *fakeRuntime) TeardownNetwork(context.Context, string, PodNetwork) error { return nil }

func (f *fakeRuntime) StartContainer(_ context.Context, cfg ContainerConfig) error {
	n := name(cfg.ID)
	ch := make(chan ExitStatus, 1)
	f.mu.Lock()
	f.exits[cfg.ID] = ch
	f.log = append(f.log, "start "+n)
	f.mu.Unlock()
	if code, after, exits := f.program(n); exits {
		go func() {
			time.Sleep(after)
			f.record(fmt.Sprintf("exit %s %d", n, code))
			ch <- ExitStatus{Code: code, Finished: time.Now()}
		}()
	}
	return nil
}

func (f *fakeRuntime) Wait(_ context.Context, id string) (<-chan ExitStatus, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ch, ok := f.exits[id]
	if !ok {
		return nil, errors.New("no such container")
	}
	return ch, nil
}

func (f *fakeRuntime) StopContainer(_ context.Context, id string, grace time.Duration) error {
	f.mu.Lock()
	ch, ok := f.exits[id]
	delete(f.exits, id)
	f.mu.Unlock()
	if ok {
		f.record("stop " + name(id))
		select {
		case ch <- ExitStatus{Code: 143, Signal: 15, Finished: time.Now()}:
		default:
		}
	}
	return nil
}

func (f *fakeRuntime) RemoveContainer(ctx context.Context, id string) error {
	return f.StopContainer(ctx, id, 0)
}
func (f *fakeRuntime) SetLabels(context.Context, string, map[string]string) error { return nil }
func (f *fakeRuntime) Exec(_ context.Context, id string, cmd []string) (int, []byte, error) {
	f.record("exec " + name(id) + " " + strings.Join(cmd, " "))
	return 0, nil, nil
}
func (f *fakeRuntime) ExecStream(context.Context, string, []string, io.Reader, io.Writer, io.Writer) (int, error) {
	return 0, nil
}
func (f *fakeRuntime) Containers(context.Context) ([]ContainerRecord, error) { return nil, nil }
func (f *fakeRuntime) ContainerStats(context.Context, string) (ContainerStats, error) {
	return ContainerStats{}, nil
}

func startManager(t *testing.T, rt Runtime, opts Options) *PodManager {
	t.Helper()
	opts.StateDir = t.TempDir()
	opts.BackoffBase = 50 * time.Millisecond
	opts.BackoffMax = 200 * time.Millisecond
	opts.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	m := NewPodManager(rt, opts)
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after 10 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func sidecarPod() api.Pod {
	always := api.RestartAlways
	exec := func(args ...string) *api.LifecycleHandler {
		return &api.LifecycleHandler{Exec: &api.ExecAction{Command: args}}
	}
	grace := int64(5)
	return api.Pod{Metadata: api.ObjectMeta{Name: "p", Namespace: "default"}, Spec: api.PodSpec{
		RestartPolicy:                 api.RestartAlways,
		TerminationGracePeriodSeconds: &grace,
		InitContainers: []api.Container{
			{Name: "init1", Image: "i:1"},
			{Name: "side", Image: "i:1", RestartPolicy: &always,
				Lifecycle: &api.Lifecycle{PostStart: exec("poststart"), PreStop: exec("prestop")}},
			{Name: "init2", Image: "i:1"},
		},
		Containers: []api.Container{
			{Name: "app", Image: "i:1", Lifecycle: &api.Lifecycle{PreStop: exec("prestop")}},
		},
	}}
}

// The pod worker runs the init containers in order, waits for the
// sidecar's postStart hook before the next, starts the app after them; on
// removal the app's preStop hook runs and it stops before the sidecar's
// preStop hook and stop.
func TestPodWorkerInitOrderAndTeardown(t *testing.T) {
	rt := newFakeRuntime(func(n string) (int32, time.Duration, bool) {
		if strings.HasPrefix(n, "init") {
			return 0, 20 * time.Millisecond, true
		}
		return 0, 0, false
	})
	m := startManager(t, rt, Options{})
	m.Sync([]api.Pod{sidecarPod()})
	waitUntil(t, "the app runs", func() bool {
		ps := m.Pods()
		return len(ps) == 1 && ps[0].Status.Phase == api.PodRunning
	})
	want := []string{"start init1", "exit init1 0", "start side", "exec side poststart", "start init2", "exit init2 0", "start app"}
	if got := rt.events(); !slices.Equal(got, want) {
		t.Fatalf("start sequence\n got %q\nwant %q", got, want)
	}
	if n := m.PodCount(); n != 1 {
		t.Fatalf("PodCount() = %d with one pod", n)
	}
	p := m.Pods()[0]
	if len(p.Status.InitContainerStatuses) != 3 || len(p.Status.ContainerStatuses) != 1 {
		t.Fatalf("statuses %+v", p.Status)
	}
	if s := p.Status.InitContainerStatuses[1]; s.State.Running == nil || s.Started == nil || !*s.Started {
		t.Errorf("sidecar status %+v", s)
	}
	if s := p.Status.InitContainerStatuses[0]; s.State.Terminated == nil || s.State.Terminated.Reason != "Completed" {
		t.Errorf("init1 status %+v", s)
	}

	m.Sync(nil)
	waitUntil(t, "the pod is removed", func() bool { return len(m.Pods()) == 0 })
	if n := m.PodCount(); n != 0 {
		t.Fatalf("PodCount() = %d with no pod", n)
	}
	got := rt.events()[len(want):]
	order := []string{"exec app prestop", "stop app", "exec side prestop", "stop side"}
	i := 0
	for _, e := range got {
		if i < len(order) && e == order[i] {
			i++
		}
	}
	if i != len(order) {
		t.Fatalf("teardown %q: want %q in that order", got, order)
	}
}

// A failing init container is restarted with back-off (CrashLoopBackOff)
// under restartPolicy Always, and the app never starts; under Never the
// pod fails.
func TestPodWorkerFailingInit(t *testing.T) {
	for _, policy := range []string{api.RestartAlways, api.RestartNever} {
		t.Run(policy, func(t *testing.T) {
			rt := newFakeRuntime(func(n string) (int32, time.Duration, bool) {
				if n == "init1" {
					return 1, 10 * time.Millisecond, true
				}
				return 0, 0, false
			})
			m := startManager(t, rt, Options{})
			p := sidecarPod()
			p.Spec.RestartPolicy = policy
			m.Sync([]api.Pod{p})
			if policy == api.RestartNever {
				waitUntil(t, "the pod fails", func() bool { return m.Pods()[0].Status.Phase == api.PodFailed })
				time.Sleep(100 * time.Millisecond)
				if n := strings.Count(strings.Join(rt.events(), "\n"), "start init1"); n != 1 {
					t.Errorf("init1 started %d times under Never", n)
				}
			} else {
				waitUntil(t, "init1 restarted twice", func() bool {
					return m.Pods()[0].Status.InitContainerStatuses[0].RestartCount >= 2
				})
			}
			for _, e := range rt.events() {
				if e == "start app" || e == "start side" {
					t.Fatalf("%s although init1 fails: %q", e, rt.events())
				}
			}
			st := m.Pods()[0].Status
			if c := st.Conditions[1]; c.Type != "Initialized" || c.Status != "False" {
				t.Errorf("condition %+v", c)
			}
			if r := st.ContainerStatuses[0].State.Waiting; r == nil || r.Reason != "PodInitializing" {
				t.Errorf("app state %+v", st.ContainerStatuses[0].State)
			}
		})
	}
}

// fetchHost is a Host whose EnsureImage is the function.
type fetchHost func(ctx context.Context, ref string) error

func (f fetchHost) PodEvent(*api.Pod, string, string, string)         {}
func (f fetchHost) PodsChanged()                                      {}
func (f fetchHost) ResolvConf(string) string                          { return "" }
func (f fetchHost) EnsureImage(ctx context.Context, ref string) error { return f(ctx, ref) }

// imagePullPolicy Never: an image this peer lacks is never fetched; the
// container waits with ErrImageNeverPull and starts once the image is here.
func TestPodWorkerImageNeverPull(t *testing.T) {
	rt := newFakeRuntime(func(string) (int32, time.Duration, bool) { return 0, 0, false })
	var mu sync.Mutex
	fetched := 0
	m := startManager(t, rt, Options{Host: fetchHost(func(context.Context, string) error {
		mu.Lock()
		fetched++
		mu.Unlock()
		return nil
	})})
	m.Sync([]api.Pod{{Metadata: api.ObjectMeta{Name: "n", Namespace: "default"}, Spec: api.PodSpec{
		Containers: []api.Container{{Name: "app", Image: "absent:1", ImagePullPolicy: api.PullNever}}}}})
	waitUntil(t, "ErrImageNeverPull", func() bool {
		ps := m.Pods()
		w := ps[0].Status.ContainerStatuses[0].State.Waiting
		return w != nil && w.Reason == "ErrImageNeverPull" && strings.Contains(w.Message, "pull policy of Never")
	})
	rt.mu.Lock()
	rt.images["docker.io/library/absent:1"] = true
	rt.mu.Unlock()
	waitUntil(t, "started once the image is here", func() bool { return m.Pods()[0].Status.Phase == api.PodRunning })
	mu.Lock()
	defer mu.Unlock()
	if fetched != 0 {
		t.Errorf("EnsureImage called %d times for a Never image", fetched)
	}
}

// Liveness and readiness wait for the startup probe; the startup probe
// stops once it has succeeded; probes of a kind in flight are not doubled.
func TestProbesDue(t *testing.T) {
	now := time.Unix(100, 0)
	probe := &api.Probe{Exec: &api.ExecAction{Command: []string{"x"}}}
	c := &ctrState{spec: api.Container{ReadinessProbe: probe, LivenessProbe: probe, StartupProbe: probe}}
	if due := probesDue(c, now); due[probeStartup] == nil || due[probeLiveness] != nil || due[probeReadiness] != nil {
		t.Fatalf("before startup: %v", due)
	}
	c.probing[probeStartup] = true
	if due := probesDue(c, now); due != [3]*api.Probe{} {
		t.Fatalf("startup in flight: %v", due)
	}
	c.probing[probeStartup], c.startupDone = false, true
	if due := probesDue(c, now); due[probeStartup] != nil || due[probeLiveness] == nil || due[probeReadiness] == nil {
		t.Fatalf("after startup: %v", due)
	}
	c.nextLive = now.Add(time.Second)
	if due := probesDue(c, now); due[probeLiveness] != nil || due[probeReadiness] == nil {
		t.Fatalf("liveness not yet due: %v", due)
	}
	// No startup probe: Started from the start.
	c = &ctrState{spec: api.Container{LivenessProbe: probe}, startupDone: true}
	if due := probesDue(c, now); due[probeLiveness] == nil {
		t.Fatalf("no startup probe: %v", due)
	}
}

// A disk emptyDir that outgrows its sizeLimit evicts the pod: its
// containers stop for good, the pod is Failed with the kubelet's reason and
// message, and it is not restarted (restartPolicy Always).
func TestPodWorkerEvictsOnEmptyDirLimit(t *testing.T) {
	rt := newFakeRuntime(func(string) (int32, time.Duration, bool) { return 0, 0, false })
	m := startManager(t, rt, Options{VolumeRefresh: 50 * time.Millisecond})
	m.Sync([]api.Pod{{Metadata: api.ObjectMeta{Name: "big", Namespace: "default"}, Spec: api.PodSpec{
		RestartPolicy: api.RestartAlways,
		Volumes:       []api.Volume{{Name: "scratch", EmptyDir: &api.EmptyDirVolumeSource{SizeLimit: "64Ki"}}},
		Containers:    []api.Container{{Name: "app", Image: "i:1", VolumeMounts: []api.VolumeMount{{Name: "scratch", MountPath: "/s"}}}}}}})
	waitUntil(t, "running", func() bool { return m.Pods()[0].Status.Phase == api.PodRunning })
	dir := filepath.Join(m.volumeRoot("default/big"), "scratch")
	if err := os.WriteFile(filepath.Join(dir, "small"), make([]byte, 16<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if p := m.Pods()[0]; p.Status.Phase != api.PodRunning {
		t.Fatalf("under the limit: %s %s", p.Status.Phase, p.Status.Reason)
	}
	if err := os.WriteFile(filepath.Join(dir, "big"), bytes.Repeat([]byte{1}, 128<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "evicted", func() bool {
		p := m.Pods()[0]
		return p.Status.Phase == api.PodFailed && p.Status.Reason == "Evicted" &&
			p.Status.Message == `Usage of EmptyDir volume "scratch" exceeds the limit "64Ki".`
	})
	time.Sleep(300 * time.Millisecond)
	starts := 0
	for _, e := range rt.events() {
		if strings.HasPrefix(e, "start app") {
			starts++
		}
	}
	if p := m.Pods()[0]; starts != 1 || p.Status.Phase != api.PodFailed {
		t.Fatalf("after eviction: %d starts, phase %s; events %v", starts, p.Status.Phase, rt.events())
	}
}
