package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"sync"
	"time"

	"github.com/chorus-sh/chorus/runtime"
)

// memRuntime is a runtime.Runtime that runs nothing: a container "runs"
// from StartContainer until StopContainer or RemoveContainer, every image
// is present, every pod gets an address of its own, exec succeeds. It lets
// the PodManager of each peer do its real work (workers, statuses,
// records, removal) at no cost but its own.
type memRuntime struct {
	subnet byte // third octet of the pod addresses: one per peer

	mu     sync.Mutex
	nextIP int
	ctrs   map[string]*memContainer
}

type memContainer struct {
	labels  map[string]string
	running bool
	started time.Time
	exit    chan runtime.ExitStatus // the current process's; buffered 1
}

func newMemRuntime(subnet byte) *memRuntime {
	return &memRuntime{subnet: subnet, ctrs: map[string]*memContainer{}}
}

var _ runtime.Runtime = (*memRuntime)(nil)

func (m *memRuntime) ImportImage(context.Context, io.Reader) ([]runtime.Image, error) {
	return nil, nil
}

func (m *memRuntime) Images(context.Context) ([]runtime.Image, error) { return nil, nil }

func (m *memRuntime) HasImage(context.Context, string) (bool, error) { return true, nil }

func (m *memRuntime) SetupNetwork(_ context.Context, podID string) (runtime.PodNetwork, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextIP++
	n := m.nextIP
	return runtime.PodNetwork{IP: fmt.Sprintf("10.%d.%d.%d", 100+n/65536%100, m.subnet, 1+n%250)}, nil
}

func (m *memRuntime) TeardownNetwork(context.Context, string, runtime.PodNetwork) error { return nil }

func (m *memRuntime) StartContainer(_ context.Context, cfg runtime.ContainerConfig) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.ctrs[cfg.ID]
	if c == nil {
		c = &memContainer{labels: map[string]string{}}
		m.ctrs[cfg.ID] = c
	}
	for k, v := range cfg.Labels {
		c.labels[k] = v
	}
	c.running, c.started, c.exit = true, time.Now(), make(chan runtime.ExitStatus, 1)
	return nil
}

func (m *memRuntime) Wait(_ context.Context, id string) (<-chan runtime.ExitStatus, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.ctrs[id]
	if c == nil || c.exit == nil {
		return nil, fmt.Errorf("memruntime: no container %s", id)
	}
	return c.exit, nil
}

// stopLocked ends the container's process (SIGTERM, as a process that
// exits at once); the caller holds mu.
func (m *memRuntime) stopLocked(c *memContainer) {
	if !c.running {
		return
	}
	c.running = false
	c.exit <- runtime.ExitStatus{Code: 128 + 15, Signal: 15, Finished: time.Now()}
}

func (m *memRuntime) StopContainer(_ context.Context, id string, _ time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.ctrs[id]; c != nil {
		m.stopLocked(c)
	}
	return nil
}

func (m *memRuntime) RemoveContainer(_ context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.ctrs[id]; c != nil {
		m.stopLocked(c)
		delete(m.ctrs, id)
	}
	return nil
}

func (m *memRuntime) SetLabels(_ context.Context, id string, labels map[string]string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.ctrs[id]
	if c == nil {
		return fmt.Errorf("memruntime: no container %s", id)
	}
	for k, v := range labels {
		c.labels[k] = v
	}
	return nil
}

func (m *memRuntime) Exec(context.Context, string, []string) (int, []byte, error) { return 0, nil, nil }

func (m *memRuntime) ExecStream(context.Context, string, []string, io.Reader, io.Writer, io.Writer) (int, error) {
	return 0, nil
}

func (m *memRuntime) Containers(context.Context) ([]runtime.ContainerRecord, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]runtime.ContainerRecord, 0, len(m.ctrs))
	for id, c := range m.ctrs {
		l := make(map[string]string, len(c.labels))
		for k, v := range c.labels {
			l[k] = v
		}
		out = append(out, runtime.ContainerRecord{ID: id, Labels: l, Running: c.running, Started: c.started})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (m *memRuntime) ContainerStats(context.Context, string) (runtime.ContainerStats, error) {
	return runtime.ContainerStats{}, nil
}
