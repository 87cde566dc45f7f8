package runtime

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chorus-sh/chorus/api"
)

// Labels chorus stores on containers, to adopt them after a restart.
const (
	labelPod          = "chorus.io/pod"
	labelContainer    = "chorus.io/container"
	labelRestartCount = "chorus.io/restart-count"
	labelStartedAt    = "chorus.io/started-at"
)

// Host is what the pod manager asks of the peer it runs for. Calls come
// from the pods' workers, concurrently; none may block long but
// EnsureImage.
type Host interface {
	// PodEvent records what happened to a pod: typ is Normal or Warning.
	PodEvent(pod *api.Pod, typ, reason, message string)
	// PodsChanged is told, without blocking, that a pod's status changed:
	// started, exited, readiness, removed.
	PodsChanged()
	// ResolvConf returns the resolv.conf file for pods of a namespace
	// ("": the image's own).
	ResolvConf(namespace string) string
	// EnsureImage gets an image this peer lacks (from other peers, or its
	// registry) before a container of it starts.
	EnsureImage(ctx context.Context, ref string) error
}

// noHost is the Host of a pod manager given none: no events, no
// resolv.conf, and an image that is missing stays missing.
type noHost struct{}

func (noHost) PodEvent(*api.Pod, string, string, string) {}
func (noHost) PodsChanged()                              {}
func (noHost) ResolvConf(string) string                  { return "" }
func (noHost) EnsureImage(_ context.Context, ref string) error {
	return fmt.Errorf("image %q is not on this peer and nothing here fetches images; load it with 'chorus image load'", ref)
}

// Options configure a PodManager.
type Options struct {
	Node        string        // this peer's name, written to spec.nodeName
	HostIP      string        // this peer's address, written to status.hostIP
	StateDir    string        // pod records and container logs live here
	BackoffBase time.Duration // first restart delay (default 1s); doubles per restart
	BackoffMax  time.Duration // longest restart delay (default 5m)
	Log         *slog.Logger
	// Host is the peer the pods run for: events, status changes, DNS
	// settings and images (nil: none of them).
	Host Host
	// Config gives the ConfigMaps and Secrets that env and volumes of pods
	// read (nil: none exist).
	Config ConfigSource
	// NodeCPUMilli and NodeMemBytes are this peer's capacity, which a
	// resourceFieldRef of an unset limit reads.
	NodeCPUMilli int64
	NodeMemBytes int64
	// AllowedHostPaths are the path prefixes hostPath volumes may mount
	// (none: hostPath volumes are refused).
	AllowedHostPaths []string
	// VolumeRefresh is how often the files of configMap, secret and
	// downwardAPI volumes are brought up to date (default 10s).
	VolumeRefresh time.Duration
	// Now is the clock every decision of a pod's life reads: restart
	// back-off, probe periods, start and finish times, condition
	// transitions (default time.Now). Tests move a fake one; the worker
	// still paces itself on real timers (a tick every 200 ms).
	Now func() time.Time
}

// PodManager keeps the pods assigned to this peer running: the kubelet of
// chorus. Sync gives it the desired pods; it starts, restarts, probes and
// removes containers to match, and reports Kubernetes-shaped statuses.
type PodManager struct {
	rt   Runtime
	opts Options

	mu      sync.Mutex
	workers map[string]*podWorker // by namespace/name
	synced  bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewPodManager returns a PodManager driving rt. Call Start before Sync.
func NewPodManager(rt Runtime, opts Options) *PodManager {
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = time.Second
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = 5 * time.Minute
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Host == nil {
		opts.Host = noHost{}
	}
	if opts.Config == nil {
		opts.Config = noConfig{}
	}
	if opts.VolumeRefresh <= 0 {
		opts.VolumeRefresh = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &PodManager{rt: rt, opts: opts, workers: map[string]*podWorker{}}
}

// ErrPodNotHere is returned for a pod this peer does not run.
var ErrPodNotHere = errors.New("not running on this peer")

// podRecord is what the manager keeps on disk for each pod it runs, so a
// restarted agent adopts the pod instead of starting a duplicate.
type podRecord struct {
	Pod     api.Pod    `json:"pod"`
	Network PodNetwork `json:"network"`
}

func (m *PodManager) recordDir() string { return filepath.Join(m.opts.StateDir, "pods") }

func (m *PodManager) recordPath(key string) string {
	return filepath.Join(m.recordDir(), strings.ReplaceAll(key, "/", "_")+".json")
}

func (m *PodManager) logDir(key string) string {
	return filepath.Join(m.opts.StateDir, "logs", strings.ReplaceAll(key, "/", "_"))
}

// Start adopts the pods recorded by an earlier run and removes containers
// that belong to no recorded pod. Adopted pods keep running until a Sync
// says they are not wanted.
func (m *PodManager) Start(ctx context.Context) error {
	m.ctx, m.cancel = context.WithCancel(context.WithoutCancel(ctx))
	if err := os.MkdirAll(m.recordDir(), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", m.recordDir(), err)
	}
	ents, err := os.ReadDir(m.recordDir())
	if err != nil {
		return fmt.Errorf("read %s: %w", m.recordDir(), err)
	}
	recs := map[string]podRecord{}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(m.recordDir(), e.Name()))
		var rec podRecord
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		if err != nil {
			m.opts.Log.Warn("dropping unreadable pod record", "file", e.Name(), "err", err)
			_ = os.Remove(filepath.Join(m.recordDir(), e.Name()))
			continue
		}
		recs[podKey(&rec.Pod)] = rec
	}
	ctrs, err := m.rt.Containers(ctx)
	if err != nil {
		return err
	}
	counts := map[string]map[string]ContainerRecord{}
	for _, c := range ctrs {
		key := c.Labels[labelPod]
		if _, ok := recs[key]; !ok {
			m.opts.Log.Info("removing container of no known pod", "container", c.ID, "pod", key)
			if err := m.rt.RemoveContainer(ctx, c.ID); err != nil {
				m.opts.Log.Warn("remove stray container", "container", c.ID, "err", err)
			}
			continue
		}
		if counts[key] == nil {
			counts[key] = map[string]ContainerRecord{}
		}
		counts[key][c.Labels[labelContainer]] = c
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for key, rec := range recs {
		w := m.newWorker(rec.Pod)
		w.nw = rec.Network
		for i := range w.ctrs {
			if c, ok := counts[key][w.ctrs[i].spec.Name]; ok {
				n, _ := strconv.Atoi(c.Labels[labelRestartCount])
				w.ctrs[i].restarts = int32(n)
				w.ctrs[i].backoffN = int32(n)
				if t, err := time.Parse(time.RFC3339Nano, c.Labels[labelStartedAt]); err == nil {
					w.ctrs[i].startedAt = t
				}
				w.ctrs[i].adopt = c.Running
				if !w.ctrs[i].init {
					// An app container exists: the init containers ran.
					w.initialized = true
				}
			}
		}
		if w.initialized {
			for i := range w.ctrs {
				c := &w.ctrs[i]
				switch {
				case c.init && !c.sidecar:
					// They ran to completion before the apps started.
					c.succeeded = true
					c.terminated = &api.ContainerStateTerminated{ExitCode: 0, Reason: "Completed"}
				case c.waitReason == "PodInitializing" && !c.init:
					c.waitReason = "ContainerCreating"
				}
			}
		}
		m.opts.Log.Info("adopted pod", "pod", key, "ip", rec.Network.IP)
		m.workers[key] = w
		m.run(w)
	}
	return nil
}

// Close stops watching pods; their containers keep running for the next
// agent to adopt.
func (m *PodManager) Close() {
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
}

// Sync makes the set of pods this peer runs equal to desired: new pods start,
// pods not in desired are stopped and removed. It returns at once; the work
// happens in the background.
func (m *PodManager) Sync(desired []api.Pod) {
	want := map[string]api.Pod{}
	for _, p := range desired {
		want[podKey(&p)] = p
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.synced = true
	for key, w := range m.workers {
		if _, ok := want[key]; !ok {
			w.remove()
		}
	}
	changed := false
	for key, p := range want {
		if w, ok := m.workers[key]; ok {
			if !w.removing() {
				changed = w.setMetadata(&p.Metadata) || changed
				continue
			}
			// Deleted and wanted again: let the old one finish first.
			continue
		}
		w := m.newWorker(p)
		m.workers[key] = w
		m.run(w)
	}
	if changed {
		m.opts.Host.PodsChanged()
	}
}

// setMetadata takes the labels, annotations and owner references of a
// running pod from its desired state (kubectl label, annotate, an orphaning
// delete), which change no container; it reports whether any changed.
func (w *podWorker) setMetadata(want *api.ObjectMeta) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	cur := &w.pod.Metadata
	if maps.Equal(cur.Labels, want.Labels) && maps.Equal(cur.Annotations, want.Annotations) &&
		reflect.DeepEqual(cur.OwnerReferences, want.OwnerReferences) {
		return false
	}
	cur.Labels, cur.Annotations = maps.Clone(want.Labels), maps.Clone(want.Annotations)
	cur.OwnerReferences = slices.Clone(want.OwnerReferences)
	return true
}

// PodCount returns how many pods this peer runs (len(Pods()) without
// copying them).
func (m *PodManager) PodCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.workers)
}

// Pods returns the pods this peer runs, with their statuses, sorted by
// namespace and name.
func (m *PodManager) Pods() []api.Pod {
	ws := m.workerList()
	out := make([]api.Pod, 0, len(ws))
	for _, w := range ws {
		out = append(out, w.snapshot())
	}
	sort.Slice(out, func(i, j int) bool { return podKey(&out[i]) < podKey(&out[j]) })
	return out
}

// workerList returns the pods' workers at this moment.
func (m *PodManager) workerList() []*podWorker {
	m.mu.Lock()
	defer m.mu.Unlock()
	ws := make([]*podWorker, 0, len(m.workers))
	for _, w := range m.workers {
		ws = append(ws, w)
	}
	return ws
}

// RunningContainers lists the containers of this peer's pods whose
// process runs now (init containers and sidecars included), for a Sampler.
func (m *PodManager) RunningContainers() []RunningContainer {
	ws := m.workerList()
	var out []RunningContainer
	for _, w := range ws {
		w.mu.Lock()
		for i := range w.ctrs {
			c := &w.ctrs[i]
			if c.running {
				out = append(out, RunningContainer{Namespace: w.pod.Metadata.Namespace, Pod: w.pod.Metadata.Name,
					Container: c.spec.Name, ID: containerID(w.key, c.spec.Name)})
			}
		}
		w.mu.Unlock()
	}
	return out
}

// LogPath returns the log file of a container of a pod this peer runs: the
// current attempt's, or the previous one's.
func (m *PodManager) LogPath(namespace, pod, container string, previous bool) (string, error) {
	w, err := m.worker(namespace, pod)
	if err != nil {
		return "", err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	c, err := w.container(container)
	if err != nil {
		return "", err
	}
	attempt := c.restarts
	if previous {
		if attempt == 0 {
			return "", fmt.Errorf("container %q in pod %q has not been restarted: there is no previous log", c.spec.Name, w.key)
		}
		attempt--
	}
	return w.logPath(c.spec.Name, attempt), nil
}

// ErrNoContainer is wrapped by the errors for a container a pod does not
// have.
var ErrNoContainer = errors.New("no such container")

// ExecContainer checks that a command can be run in a container of a pod
// this peer runs (container "" names the pod's only container) and returns
// the container's name. A pod this peer does not run is an error wrapping
// ErrPodNotHere, a container the pod lacks one wrapping ErrNoContainer; a
// container that is not running is an error too.
func (m *PodManager) ExecContainer(namespace, pod, container string) (string, error) {
	w, err := m.worker(namespace, pod)
	if err != nil {
		return "", err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	c, err := w.container(container)
	if err != nil {
		return "", err
	}
	if !c.running {
		return "", fmt.Errorf("container %q in pod %q is not running", c.spec.Name, w.key)
	}
	return c.spec.Name, nil
}

// Exec runs cmd in a container of a pod this peer runs, as kubectl exec
// does: stdin (nil for none) is the command's input, its output is written
// to stdout and stderr as it comes (see Runtime.ExecStream), and its exit
// code is returned. The container is resolved as ExecContainer does, with
// the same errors.
func (m *PodManager) Exec(ctx context.Context, namespace, pod, container string, cmd []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	name, err := m.ExecContainer(namespace, pod, container)
	if err != nil {
		return -1, err
	}
	key := namespace + "/" + pod
	m.opts.Log.Debug("exec", "pod", key, "container", name, "command", cmd)
	return m.rt.ExecStream(ctx, containerID(key, name), cmd, stdin, stdout, stderr)
}

// worker returns the worker of a pod this peer runs.
func (m *PodManager) worker(namespace, pod string) (*podWorker, error) {
	key := namespace + "/" + pod
	m.mu.Lock()
	w, ok := m.workers[key]
	m.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("pod %q: %w", key, ErrPodNotHere)
	}
	return w, nil
}

// Replace stops and removes a pod this peer runs, as `kubectl delete pod`
// does: while the pod is still desired, the next Sync starts it afresh
// (new containers, network and address, restart count 0). A pod this peer
// does not run is an error wrapping ErrPodNotHere.
func (m *PodManager) Replace(namespace, pod string) error {
	w, err := m.worker(namespace, pod)
	if err != nil {
		return err
	}
	w.remove()
	return nil
}

// ReplaceOutside replaces, as Replace does, every pod whose address is not
// in subnet (pods attached before the peer's pod subnet changed), and
// returns their keys, sorted. Pods with no address yet are left alone:
// they get one in the subnet the network has now.
func (m *PodManager) ReplaceOutside(subnet netip.Prefix) []string {
	ws := m.workerList()
	var out []string
	for _, w := range ws {
		w.mu.Lock()
		ip := w.nw.IP
		w.mu.Unlock()
		addr, err := netip.ParseAddr(ip)
		if err != nil || subnet.Contains(addr) {
			continue
		}
		w.remove()
		out = append(out, w.key)
	}
	sort.Strings(out)
	return out
}

// container returns the container named name, or the only one for "". The
// caller holds w.mu.
func (w *podWorker) container(name string) (*ctrState, error) {
	if name == "" {
		// The pod's only app container (kubectl names one itself).
		apps := len(w.ctrs) - len(w.pod.Spec.InitContainers)
		if apps > 1 {
			return nil, fmt.Errorf("pod %q has several containers: choose one of %s", w.key, w.containerNames())
		}
		if apps == 1 {
			return &w.ctrs[len(w.ctrs)-1], nil
		}
	}
	for i := range w.ctrs {
		if w.ctrs[i].spec.Name == name {
			return &w.ctrs[i], nil
		}
	}
	return nil, &wrapError{msg: fmt.Sprintf("container %q is not in pod %q", name, w.key), err: ErrNoContainer}
}

// wrapError is an error with a message of its own that wraps err.
type wrapError struct {
	msg string
	err error
}

func (e *wrapError) Error() string { return e.msg }
func (e *wrapError) Unwrap() error { return e.err }

func (m *PodManager) run(w *podWorker) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		w.loop(m.ctx)
		m.mu.Lock()
		removed := m.workers[w.key] == w && w.removing()
		if removed {
			delete(m.workers, w.key)
		}
		m.mu.Unlock()
		if removed {
			m.opts.Host.PodsChanged()
		}
	}()
}

// now reads the manager's clock (the real one for a manager not made by
// NewPodManager).
func (m *PodManager) now() time.Time {
	if m.opts.Now == nil {
		return time.Now()
	}
	return m.opts.Now()
}

func podKey(p *api.Pod) string { return p.Metadata.Namespace + "/" + p.Metadata.Name }

func containerID(key, name string) string {
	return strings.ReplaceAll(key, "/", "_") + "_" + name
}

func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// podWorker drives one pod: it carries out what the pod's state machine
// (podState, podstate.go) decides, with the runtime, and feeds it what
// happens (exits, probe results, hooks), with the time of the manager's
// clock. mu guards the state.
type podWorker struct {
	m *PodManager

	mu sync.Mutex
	podState
	stopCh chan struct{}
}

func (m *PodManager) newWorker(p api.Pod) *podWorker {
	p = api.Clone(p)
	p.APIVersion, p.Kind = "v1", api.KindPod
	p.Spec.NodeName = m.opts.Node
	if p.Metadata.UID == "" {
		p.Metadata.UID = newUID()
	}
	now := m.now().UTC()
	if p.Metadata.CreationTimestamp == nil {
		p.Metadata.CreationTimestamp = &now
	}
	return &podWorker{m: m, stopCh: make(chan struct{}),
		podState: newPodState(p, m.opts.HostIP, backoffPolicy{Base: m.opts.BackoffBase, Max: m.opts.BackoffMax}, now)}
}

func (w *podWorker) remove() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.stopping {
		w.stopping = true
		close(w.stopCh)
	}
}

func (w *podWorker) removing() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stopping
}

func (w *podWorker) containerNames() string {
	var names []string
	for _, c := range w.ctrs {
		names = append(names, c.spec.Name)
	}
	return "[" + strings.Join(names, " ") + "]"
}

func (w *podWorker) logPath(container string, attempt int32) string {
	return filepath.Join(w.m.logDir(w.key), container, strconv.Itoa(int(attempt))+".log")
}

func (w *podWorker) event(typ, reason, msg string) {
	w.mu.Lock()
	p := w.pod
	w.mu.Unlock()
	w.m.opts.Host.PodEvent(&p, typ, reason, msg)
}

func (w *podWorker) saveRecord() error {
	w.mu.Lock()
	b, err := json.Marshal(podRecord{Pod: w.pod, Network: w.nw})
	w.mu.Unlock()
	if err != nil {
		return err
	}
	path := w.m.recordPath(w.key)
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// loop is the pod's life: network, containers, restarts, probes, removal.
func (w *podWorker) loop(ctx context.Context) {
	log := w.m.opts.Log.With("pod", w.key)
	exits := make(chan exitMsg, len(w.ctrs)+1)
	probes := make(chan probeMsg, 3*len(w.ctrs)+1)
	hooks := make(chan hookMsg, len(w.ctrs)+1)
	var inner sync.WaitGroup
	wctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		inner.Wait()
	}()

	// The network first.
	for delay := time.Second; w.nw.NetNSPath == ""; delay = min(delay*2, 30*time.Second) {
		nw, err := w.m.rt.SetupNetwork(wctx, netID(w.key))
		if err == nil {
			w.mu.Lock()
			w.nw = nw
			w.mu.Unlock()
			if err := w.saveRecord(); err != nil {
				log.Error("save pod record", "err", err)
			}
			break
		}
		log.Warn("pod network setup failed", "err", err)
		w.setPodReason("", "network: "+err.Error())
		w.event("Warning", "FailedCreatePodSandBox", err.Error())
		select {
		case <-ctx.Done():
			return
		case <-w.stopCh:
			w.teardown(context.WithoutCancel(ctx), log)
			return
		case <-time.After(delay):
		}
	}
	w.setPodReason("", "")

	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	refresh := time.NewTicker(w.m.opts.VolumeRefresh)
	defer refresh.Stop()
	for {
		w.startDue(wctx, log, exits, hooks, &inner)
		w.probeDue(wctx, probes, &inner)
		select {
		case <-refresh.C:
			// ConfigMap and Secret changes reach the files of running
			// containers (atomically); a failure is retried next time.
			if err := w.setupVolumes(w.podContext()); err != nil {
				log.Debug("refresh volumes", "err", err)
			}
			if msg := w.overLimit(); msg != "" {
				w.evict(wctx, log, msg, &inner)
			}
		case <-ctx.Done():
			return
		case <-w.stopCh:
			cancel()
			inner.Wait()
			w.teardown(context.WithoutCancel(ctx), log)
			return
		case e := <-exits:
			w.exited(wctx, log, e, &inner)
		case p := <-probes:
			w.probed(wctx, log, p, &inner)
		case h := <-hooks:
			w.postStarted(wctx, log, h, &inner)
		case <-tick.C:
		}
	}
}

func (w *podWorker) setPodReason(reason, msg string) {
	w.mu.Lock()
	w.reason, w.message = reason, msg
	w.mu.Unlock()
}

// startDue starts the containers planStarts says are due (init containers
// one after the other, then the app containers and sidecars, each once its
// back-off has passed), and stops the sidecars of a pod whose app
// containers have all ended.
func (w *podWorker) startDue(ctx context.Context, log *slog.Logger, exits chan<- exitMsg, hooks chan<- hookMsg, inner *sync.WaitGroup) {
	w.mu.Lock()
	plan, initializedNow := w.planStart(w.m.now())
	w.mu.Unlock()
	if initializedNow {
		log.Info("pod initialized")
		w.m.opts.Host.PodsChanged()
	}
	for _, i := range plan.StopSidecars {
		w.kill(ctx, log, i, inner)
	}
	for _, i := range plan.Start {
		if ctx.Err() != nil {
			return
		}
		w.startOne(ctx, log, i, exits, hooks, inner)
	}
}

// kill stops container i in the background as the kubelet kills a
// container: its preStop hook, then SIGTERM, then SIGKILL at the pod's
// grace deadline. Its exit comes through the usual watch.
func (w *podWorker) kill(ctx context.Context, log *slog.Logger, i int, inner *sync.WaitGroup) {
	w.mu.Lock()
	c := &w.ctrs[i]
	if c.killing {
		w.mu.Unlock()
		return
	}
	c.killing = true
	spec, grace := c.spec, w.grace()
	w.mu.Unlock()
	inner.Add(1)
	go func() {
		defer inner.Done()
		deadline := time.Now().Add(grace)
		w.stopContainer(ctx, log, spec, deadline)
		w.mu.Lock()
		c.killing = false
		w.mu.Unlock()
	}()
}

// grace is the pod's termination grace period. The caller holds w.mu.
func (w *podWorker) grace() time.Duration {
	if g := w.pod.Spec.TerminationGracePeriodSeconds; g != nil {
		return time.Duration(*g) * time.Second
	}
	return 30 * time.Second
}

// stopContainer runs the container's preStop hook (bounded by deadline),
// then stops it: SIGTERM, and SIGKILL at deadline.
func (w *podWorker) stopContainer(ctx context.Context, log *slog.Logger, spec api.Container, deadline time.Time) {
	id := containerID(w.key, spec.Name)
	if l := spec.Lifecycle; l != nil && l.PreStop != nil {
		hctx, cancel := context.WithDeadline(ctx, deadline)
		err := runHook(hctx, l.PreStop, w.target(spec))
		cancel()
		if err != nil && ctx.Err() == nil {
			log.Warn("preStop hook failed", "container", spec.Name, "err", err)
			w.event("Warning", "FailedPreStopHook", fmt.Sprintf("PreStopHook failed for container %s: %v", spec.Name, err))
		}
	}
	if err := w.m.rt.StopContainer(ctx, id, max(time.Until(deadline), 0)); err != nil && ctx.Err() == nil {
		log.Warn("stop container", "container", spec.Name, "err", err)
	}
}

// target is what probes and hooks of a container reach.
func (w *podWorker) target(spec api.Container) probeTarget {
	w.mu.Lock()
	defer w.mu.Unlock()
	return probeTarget{podIP: w.nw.IP, containerID: containerID(w.key, spec.Name), ports: spec.Ports, exec: w.m.rt.Exec}
}

func (w *podWorker) startOne(ctx context.Context, log *slog.Logger, i int, exits chan<- exitMsg, hooks chan<- hookMsg, inner *sync.WaitGroup) {
	w.mu.Lock()
	c := &w.ctrs[i]
	spec, image, adopt, restarts := c.spec, c.image, c.adopt, c.restarts
	pod := w.pod
	nw := w.nw
	w.mu.Unlock()
	id := containerID(w.key, spec.Name)

	retryLater := func(reason, msg string, after time.Duration) {
		w.mu.Lock()
		w.retryAt(i, reason, msg, w.m.now().Add(after))
		w.mu.Unlock()
	}

	creating := "ContainerCreating"
	if c.init {
		creating = "PodInitializing" // kubectl shows Init:N/M meanwhile
	}
	if !adopt {
		ok, err := w.m.rt.HasImage(ctx, image)
		if err == nil && !ok && spec.ImagePullPolicy == api.PullNever {
			// chorus' Never: never fetch the image from another peer (or
			// a registry); wait until it is loaded on this peer.
			msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", spec.Image)
			w.mu.Lock()
			first := c.waitReason != "ErrImageNeverPull"
			w.mu.Unlock()
			if first {
				w.event("Warning", "ErrImageNeverPull", msg)
			}
			retryLater("ErrImageNeverPull", msg, 2*time.Second)
			return
		}
		if err == nil && !ok {
			w.mu.Lock()
			c.waitReason, c.waitMessage = creating, "fetching image "+image
			w.mu.Unlock()
			if err = w.m.opts.Host.EnsureImage(ctx, image); err == nil {
				w.event("Normal", "Pulled", "Image "+strconv.Quote(spec.Image)+" fetched")
				ok = true
			} else if ctx.Err() != nil {
				return
			}
		}
		if err != nil || !ok {
			msg := fmt.Sprintf("image %q is not on peer %s; load it with 'chorus image load'", image, w.m.opts.Node)
			if err != nil {
				msg = err.Error()
			}
			w.mu.Lock()
			first := c.waitReason != "ErrImagePull"
			w.mu.Unlock()
			if first {
				w.event("Warning", "Failed", "Failed to pull image "+strconv.Quote(spec.Image)+": "+msg)
			}
			retryLater("ErrImagePull", msg, 2*time.Second)
			return
		}
		configFailed := func(msg string) {
			// Kubernetes' CreateContainerConfigError: nothing was made;
			// said once, retried slowly, not counted as a restart.
			w.mu.Lock()
			first := c.waitReason != "CreateContainerConfigError" || c.waitMessage != msg
			w.mu.Unlock()
			if first {
				log.Warn("container refused", "container", spec.Name, "err", msg)
				w.event("Warning", "Failed", "Error: "+msg)
			}
			retryLater("CreateContainerConfigError", msg, 10*time.Second)
		}
		pc := w.podContext()
		if err := w.setupVolumes(pc); err != nil {
			if ctx.Err() != nil {
				return
			}
			w.mu.Lock()
			first := c.waitMessage != err.Error()
			w.mu.Unlock()
			if first {
				w.event("Warning", "FailedMount", err.Error())
			}
			retryLater(creating, err.Error(), 5*time.Second)
			return
		}
		env, skipped, err := ResolveEnv(&pod, &spec, pc, w.m.opts.Config)
		var cfgErr *ConfigError
		if errors.As(err, &cfgErr) {
			configFailed(cfgErr.Msg)
			return
		} else if err != nil {
			retryLater("CreateContainerConfigError", err.Error(), 10*time.Second)
			return
		}
		if len(skipped) > 0 && restarts == 0 {
			w.event("Warning", "InvalidEnvironmentVariableNames", "Keys ["+strings.Join(skipped, ", ")+"] from the EnvFrom configMap or secret were skipped since they are considered invalid environment variable names.")
		}
		mounts, err := w.mounts(&spec)
		if errors.As(err, &cfgErr) {
			configFailed(cfgErr.Msg)
			return
		} else if err != nil {
			retryLater("CreateContainerConfigError", err.Error(), 10*time.Second)
			return
		}
		cfg := ContainerConfig{
			ID:        id,
			Image:     image,
			Command:   spec.Command,
			Args:      spec.Args,
			Env:       env,
			Mounts:    mounts,
			WorkDir:   spec.WorkingDir,
			Hostname:  pod.Metadata.Name,
			NetNSPath: nw.NetNSPath,
			LogPath:   w.logPath(spec.Name, restarts),
			Labels:    map[string]string{labelPod: w.key, labelContainer: spec.Name, labelRestartCount: strconv.Itoa(int(restarts))},
			Security:  securityConfig(&pod.Spec, &spec),
		}
		if path := w.m.opts.Host.ResolvConf(pod.Metadata.Namespace); path != "" {
			cfg.Files = map[string]string{"/etc/resolv.conf": path}
		}
		if q, ok := spec.Resources.Limits["cpu"]; ok {
			cfg.CPUMilli, _ = api.ParseCPU(q)
		}
		if q, ok := spec.Resources.Limits["memory"]; ok {
			cfg.MemBytes, _ = api.ParseMemory(q)
		}
		if err := w.m.rt.StartContainer(ctx, cfg); err != nil {
			if ctx.Err() != nil {
				return
			}
			if errors.As(err, &cfgErr) {
				configFailed(cfgErr.Msg)
				return
			}
			log.Warn("start container failed", "container", spec.Name, "err", err)
			w.event("Warning", "Failed", "Error: "+err.Error())
			// A container that cannot start counts as a crash.
			w.mu.Lock()
			w.startFailed(i, err, w.m.now())
			w.mu.Unlock()
			return
		}
	}
	ch, err := w.m.rt.Wait(ctx, id)
	if err != nil {
		if ctx.Err() == nil {
			retryLater("RunContainerError", err.Error(), time.Second)
		}
		return
	}
	w.mu.Lock()
	attempt, postStart := w.started(i, adopt, w.m.now().UTC())
	startedAt := c.startedAt
	w.mu.Unlock()
	w.m.opts.Host.PodsChanged()
	if !adopt {
		w.event("Normal", "Started", "Started container "+spec.Name)
		_ = w.m.rt.SetLabels(ctx, id, map[string]string{labelPod: w.key, labelContainer: spec.Name,
			labelRestartCount: strconv.Itoa(int(restarts)), labelStartedAt: startedAt.Format(time.RFC3339Nano)})
	}
	if postStart != nil {
		// Run next to the container; it is not Started (the next init
		// container waits) until the hook ends well, and killed if it
		// fails, as the kubelet does.
		t := w.target(spec)
		inner.Add(1)
		go func() {
			defer inner.Done()
			msg := hookMsg{idx: i, attempt: attempt, err: runHook(ctx, postStart, t)}
			select {
			case hooks <- msg:
			case <-ctx.Done():
			}
		}()
	}
	inner.Add(1)
	go func() {
		defer inner.Done()
		select {
		case st, ok := <-ch:
			if !ok {
				return
			}
			select {
			case exits <- exitMsg{idx: i, attempt: attempt, st: st}:
			case <-ctx.Done():
			}
		case <-ctx.Done():
		}
	}()
}

// podContext is what the downward API reads of where the pod runs.
func (w *podWorker) podContext() PodContext {
	w.mu.Lock()
	defer w.mu.Unlock()
	return PodContext{NodeName: w.m.opts.Node, HostIP: w.m.opts.HostIP, PodIP: w.nw.IP,
		NodeCPUMilli: w.m.opts.NodeCPUMilli, NodeMemBytes: w.m.opts.NodeMemBytes}
}

// noConfig is the ConfigSource of a manager given none.
type noConfig struct{}

func (noConfig) ConfigMap(string, string) (*api.ConfigMap, bool)         { return nil, false }
func (noConfig) Secret(string, string) (*api.Secret, bool)               { return nil, false }
func (noConfig) Claim(string, string) (*api.PersistentVolumeClaim, bool) { return nil, false }

// postStarted feeds the end of a postStart hook to the pod's state.
func (w *podWorker) postStarted(ctx context.Context, log *slog.Logger, h hookMsg, inner *sync.WaitGroup) {
	w.mu.Lock()
	eff := w.podState.postStarted(h)
	w.mu.Unlock()
	w.apply(ctx, log, eff, inner)
}

// apply carries out the effects of a transition, in order.
func (w *podWorker) apply(ctx context.Context, log *slog.Logger, eff []effect, inner *sync.WaitGroup) {
	for _, e := range eff {
		switch e.kind {
		case effChanged:
			w.m.opts.Host.PodsChanged()
		case effEvent:
			w.event(e.typ, e.reason, e.msg)
		case effLog:
			log.Log(ctx, e.level, e.msg, e.attrs...)
		case effKill:
			w.kill(ctx, log, e.idx, inner)
		}
	}
}

// exited feeds the end of a container's process to the pod's state.
func (w *podWorker) exited(ctx context.Context, log *slog.Logger, e exitMsg, inner *sync.WaitGroup) {
	w.mu.Lock()
	eff := w.podState.exited(e, w.m.now())
	w.mu.Unlock()
	w.apply(ctx, log, eff, inner)
}

// probeDue starts the probes the pod's state says are due, each in a
// goroutine of its own whose result comes back on out.
func (w *podWorker) probeDue(ctx context.Context, out chan<- probeMsg, inner *sync.WaitGroup) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.dueProbes(w.m.now()) {
		c := &w.ctrs[r.idx]
		t := probeTarget{podIP: w.nw.IP, containerID: containerID(w.key, c.spec.Name), ports: c.spec.Ports, exec: w.m.rt.Exec}
		msg := probeMsg{idx: r.idx, attempt: r.attempt, kind: r.kind}
		p := r.probe
		inner.Add(1)
		go func() {
			defer inner.Done()
			msg.err = runProbe(ctx, p, t)
			select {
			case out <- msg:
			case <-ctx.Done():
			}
		}()
	}
}

// probed feeds a probe result to the pod's state.
func (w *podWorker) probed(ctx context.Context, log *slog.Logger, p probeMsg, inner *sync.WaitGroup) {
	w.mu.Lock()
	eff := w.podState.probed(p, w.m.now())
	w.mu.Unlock()
	w.apply(ctx, log, eff, inner)
}

// teardown stops and removes the pod's containers, network and record.
// As the kubelet does, the app containers stop first (each its preStop
// hook, then SIGTERM), then the sidecars one by one in reverse order, all
// within the pod's grace period: SIGKILL at its end.
func (w *podWorker) teardown(ctx context.Context, log *slog.Logger) {
	w.mu.Lock()
	deadline := time.Now().Add(w.grace())
	nw := w.nw
	var apps, sidecars []api.Container
	var all []string
	for _, c := range w.ctrs {
		all = append(all, c.spec.Name)
		switch {
		case !c.running:
		case c.sidecar:
			sidecars = append(sidecars, c.spec)
		default: // app containers, and an init container still running
			apps = append(apps, c.spec)
		}
	}
	w.reason = "Terminating"
	w.mu.Unlock()
	w.event("Normal", "Killing", "Stopping pod")
	var wg sync.WaitGroup
	for _, spec := range apps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.stopContainer(ctx, log, spec, deadline)
		}()
	}
	wg.Wait()
	for i := len(sidecars) - 1; i >= 0; i-- {
		w.stopContainer(ctx, log, sidecars[i], deadline)
	}
	errs := make([]error, len(all))
	for i, n := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.m.rt.RemoveContainer(ctx, containerID(w.key, n))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		log.Warn("remove pod containers", "err", err)
	}
	if err := w.m.rt.TeardownNetwork(ctx, netID(w.key), nw); err != nil {
		log.Warn("tear down pod network", "err", err)
	}
	if err := w.m.teardownVolumes(w.key); err != nil {
		log.Warn("remove pod volumes", "err", err)
	}
	_ = os.Remove(w.m.recordPath(w.key))
	_ = os.RemoveAll(w.m.logDir(w.key))
	log.Info("pod removed")
}

// snapshot returns the pod with its current status.
func (w *podWorker) snapshot() api.Pod {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := api.Clone(w.pod)
	p.Status = w.status(w.m.now())
	return p
}

// netID is the pod's id for CNI, which allows no slash.
func netID(key string) string { return strings.ReplaceAll(key, "/", "_") }

// evict stops every container of the pod for good (podState.evict).
func (w *podWorker) evict(ctx context.Context, log *slog.Logger, msg string, inner *sync.WaitGroup) {
	w.mu.Lock()
	eff := w.podState.evict(msg)
	w.mu.Unlock()
	w.apply(ctx, log, eff, inner)
}
