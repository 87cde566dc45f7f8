// Package runtimetest holds fakes for tests of what drives containers: an
// in-memory runtime.Runtime whose processes end when a script or the test
// says (no containerd, no goroutine of its own), and a clock the test moves.
package runtimetest

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/chorus-sh/chorus/runtime"
)

// Script decides how the process of a container ends when it starts, for
// the n-th time (0 the first): with code at once (exits true), or not
// until it is stopped or the test calls Exit.
type Script func(cfg runtime.ContainerConfig, n int) (code int32, exits bool)

// ExecFunc answers a command run in a container (probes, hooks, exec).
type ExecFunc func(id string, cmd []string) (code int, out []byte, err error)

// Runtime is an in-memory runtime.Runtime. Containers are records, images
// are names (every image is held unless hidden), networks get addresses
// in 10.0.0.0/24. It records what is asked of it, in order (Log). It is
// safe for concurrent use.
type Runtime struct {
	mu      sync.Mutex
	ctrs    map[string]*container
	hidden  map[string]bool
	nets    map[string]runtime.PodNetwork
	nextIP  int
	log     []string
	script  Script
	exec    ExecFunc
	started map[string]int // by container id: how many starts
}

type container struct {
	cfg     runtime.ContainerConfig
	labels  map[string]string
	running bool
	exit    chan runtime.ExitStatus // the current process's
}

// New returns an empty Runtime whose processes run until stopped and whose
// exec commands succeed.
func New() *Runtime {
	return &Runtime{ctrs: map[string]*container{}, hidden: map[string]bool{}, nets: map[string]runtime.PodNetwork{},
		started: map[string]int{}}
}

// SetScript sets how processes started from now on end (nil: they run
// until stopped).
func (r *Runtime) SetScript(s Script) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.script = s
}

// SetExec sets how commands run in containers answer (nil: exit 0).
func (r *Runtime) SetExec(f ExecFunc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.exec = f
}

// HideImage makes HasImage report ref (normalized) as absent, or present
// again.
func (r *Runtime) HideImage(ref string, hidden bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hidden[ref] = hidden
}

// Exit ends the running process of container id with code, as if it
// exited by itself.
func (r *Runtime) Exit(id string, code int32) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.ctrs[id]
	if !ok || !c.running {
		return fmt.Errorf("container %s is not running", id)
	}
	r.end(id, c, runtime.ExitStatus{Code: code})
	return nil
}

// end ends c's process. The caller holds r.mu.
func (r *Runtime) end(id string, c *container, st runtime.ExitStatus) {
	c.running = false
	r.log = append(r.log, fmt.Sprintf("exit %s %d", id, st.Code))
	c.exit <- st // buffered: one exit per process
}

// Starts returns how many times container id was started.
func (r *Runtime) Starts(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.started[id]
}

// Running reports whether container id has a running process.
func (r *Runtime) Running(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.ctrs[id]
	return ok && c.running
}

// Log returns what was asked of the runtime, in order: "start ID",
// "exit ID CODE", "stop ID", "remove ID", "exec ID CMD...", "network ID",
// "teardown ID".
func (r *Runtime) Log() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.log)
}

// ImportImage reads the archive and holds no image from it.
func (r *Runtime) ImportImage(_ context.Context, rd io.Reader) ([]runtime.Image, error) {
	if _, err := io.Copy(io.Discard, rd); err != nil {
		return nil, fmt.Errorf("read image archive: %w", err)
	}
	return nil, nil
}

// Images lists no image.
func (r *Runtime) Images(context.Context) ([]runtime.Image, error) { return nil, nil }

// HasImage reports every image but the hidden ones as held.
func (r *Runtime) HasImage(_ context.Context, ref string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.hidden[ref], nil
}

// SetupNetwork gives the pod the next address of 10.0.0.0/24.
func (r *Runtime) SetupNetwork(_ context.Context, podID string) (runtime.PodNetwork, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if nw, ok := r.nets[podID]; ok {
		return nw, nil
	}
	r.nextIP++
	nw := runtime.PodNetwork{NetNSPath: "/run/netns/fake-" + podID, IP: fmt.Sprintf("10.0.0.%d", r.nextIP%250+2)}
	r.nets[podID] = nw
	r.log = append(r.log, "network "+podID)
	return nw, nil
}

// TeardownNetwork forgets the pod's network.
func (r *Runtime) TeardownNetwork(_ context.Context, podID string, _ runtime.PodNetwork) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.nets, podID)
	r.log = append(r.log, "teardown "+podID)
	return nil
}

// StartContainer starts a new process of the container (created if
// needed); the script says whether it ends at once.
func (r *Runtime) StartContainer(_ context.Context, cfg runtime.ContainerConfig) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.ctrs[cfg.ID]
	if !ok {
		c = &container{labels: maps.Clone(cfg.Labels)}
		r.ctrs[cfg.ID] = c
	}
	if c.running {
		return fmt.Errorf("container %s is running", cfg.ID)
	}
	c.cfg, c.running, c.exit = cfg, true, make(chan runtime.ExitStatus, 1)
	n := r.started[cfg.ID]
	r.started[cfg.ID]++
	r.log = append(r.log, "start "+cfg.ID)
	if r.script != nil {
		if code, exits := r.script(cfg, n); exits {
			r.end(cfg.ID, c, runtime.ExitStatus{Code: code})
		}
	}
	return nil
}

// Wait returns the channel of the container's current process.
func (r *Runtime) Wait(_ context.Context, id string) (<-chan runtime.ExitStatus, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.ctrs[id]
	if !ok || c.exit == nil {
		return nil, fmt.Errorf("container %s: no process", id)
	}
	return c.exit, nil
}

// StopContainer ends the running process as SIGTERM does (code 143).
func (r *Runtime) StopContainer(_ context.Context, id string, _ time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.ctrs[id]; ok && c.running {
		r.log = append(r.log, "stop "+id)
		r.end(id, c, runtime.ExitStatus{Code: 143, Signal: 15})
	}
	return nil
}

// RemoveContainer stops and forgets the container.
func (r *Runtime) RemoveContainer(ctx context.Context, id string) error {
	if err := r.StopContainer(ctx, id, 0); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.ctrs[id]; ok {
		delete(r.ctrs, id)
		r.log = append(r.log, "remove "+id)
	}
	return nil
}

// SetLabels merges labels into the container's.
func (r *Runtime) SetLabels(_ context.Context, id string, labels map[string]string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.ctrs[id]
	if !ok {
		return fmt.Errorf("container %s: no such container", id)
	}
	maps.Copy(c.labels, labels)
	return nil
}

// Exec answers with the ExecFunc set (exit 0 by default).
func (r *Runtime) Exec(_ context.Context, id string, cmd []string) (int, []byte, error) {
	r.mu.Lock()
	f := r.exec
	r.log = append(r.log, "exec "+id+" "+strings.Join(cmd, " "))
	r.mu.Unlock()
	if f == nil {
		return 0, nil, nil
	}
	return f(id, cmd)
}

// ExecStream answers as Exec, writing the output to stdout.
func (r *Runtime) ExecStream(ctx context.Context, id string, cmd []string, _ io.Reader, stdout, _ io.Writer) (int, error) {
	code, out, err := r.Exec(ctx, id, cmd)
	if err != nil {
		return code, err
	}
	if _, err := stdout.Write(out); err != nil {
		return code, fmt.Errorf("write output: %w", err)
	}
	return code, nil
}

// Containers lists the containers held, by id.
func (r *Runtime) Containers(context.Context) ([]runtime.ContainerRecord, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]runtime.ContainerRecord, 0, len(r.ctrs))
	for _, id := range slices.Sorted(maps.Keys(r.ctrs)) {
		c := r.ctrs[id]
		out = append(out, runtime.ContainerRecord{ID: id, Labels: maps.Clone(c.labels), Running: c.running})
	}
	return out, nil
}

// ContainerStats reports no usage for a running container.
func (r *Runtime) ContainerStats(_ context.Context, id string) (runtime.ContainerStats, error) {
	if !r.Running(id) {
		return runtime.ContainerStats{}, fmt.Errorf("container %s is not running", id)
	}
	return runtime.ContainerStats{}, nil
}

var _ runtime.Runtime = (*Runtime)(nil)

// Clock is a clock that moves only when told. It is safe for concurrent
// use.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
