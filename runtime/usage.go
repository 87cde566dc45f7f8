package runtime

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"time"
)

// Defaults of a Sampler.
const (
	DefaultSampleInterval = 5 * time.Second
	DefaultSampleHistory  = 10 * time.Minute
)

// RunningContainer names a container whose process runs now.
type RunningContainer struct {
	Namespace, Pod, Container string
	ID                        string // the runtime's container id
}

// Point is resource usage over one window: the CPU rate between two
// samples and the memory working set at the later one, as metrics-server
// reports them.
type Point struct {
	Time      time.Time     // the later sample
	Window    time.Duration // from the earlier sample to Time
	NanoCores int64         // CPU: nanoseconds of CPU per second (1e9 = one core)
	Memory    int64         // working set, bytes
}

// Series is what a Sampler knows of one container, or of the node.
type Series struct {
	Namespace, Pod, Container string // empty for the node
	// CPUNanos and Memory are the last sample: cumulative CPU time and
	// working set; SampledAt is when it was taken.
	CPUNanos  uint64
	Memory    uint64
	SampledAt time.Time
	// Points are the usage computed between successive samples, oldest
	// first (only the last with Latest; none before the second sample).
	Points []Point
}

// Latest returns the newest point, if any.
func (s Series) Latest() (Point, bool) {
	if len(s.Points) == 0 {
		return Point{}, false
	}
	return s.Points[len(s.Points)-1], true
}

// usageRate is the usage between two samples of one counter; false when
// there is none: time did not move forward, or the counter went back (the
// container restarted: the next pair will do).
func usageRate(prevAt time.Time, prev ContainerStats, at time.Time, cur ContainerStats) (Point, bool) {
	dt := at.Sub(prevAt)
	if dt <= 0 || cur.CPUNanos < prev.CPUNanos {
		return Point{}, false
	}
	d := cur.CPUNanos - prev.CPUNanos
	// nanocores = d / seconds = d * 1e9 / dt(ns); in float to stay in range.
	nc := float64(d) * 1e9 / float64(dt)
	if nc > 1<<62 {
		nc = 1 << 62
	}
	mem := cur.WorkingSet
	if mem > 1<<62 {
		mem = 1 << 62
	}
	return Point{Time: at, Window: dt, NanoCores: int64(nc), Memory: int64(mem)}, true
}

// ring keeps the points of the last keep duration, at most cap of them.
type ring struct {
	buf      []Point
	start, n int
}

func newRing(capacity int) ring { return ring{buf: make([]Point, max(capacity, 1))} }

// push adds p (its Time not before the newest) and drops the points older
// than keep before it, and the oldest when full.
func (r *ring) push(p Point, keep time.Duration) {
	for r.n > 0 && (r.n == len(r.buf) || !r.buf[r.start].Time.After(p.Time.Add(-keep))) {
		r.start = (r.start + 1) % len(r.buf)
		r.n--
	}
	r.buf[(r.start+r.n)%len(r.buf)] = p
	r.n++
}

// points returns the points held, oldest first; only the newest with
// latest.
func (r ring) points(latest bool) []Point {
	if r.n == 0 {
		return nil
	}
	if latest {
		return []Point{r.buf[(r.start+r.n-1)%len(r.buf)]}
	}
	out := make([]Point, r.n)
	for i := range out {
		out[i] = r.buf[(r.start+i)%len(r.buf)]
	}
	return out
}

// tracker follows one counter: its last sample and the points computed.
type tracker struct {
	at   time.Time
	last ContainerStats
	have bool
	pts  ring
}

// observe records a sample taken at at.
func (t *tracker) observe(at time.Time, st ContainerStats, keep time.Duration) {
	if t.have {
		if p, ok := usageRate(t.at, t.last, at, st); ok {
			t.pts.push(p, keep)
		}
	}
	t.at, t.last, t.have = at, st, true
}

func (t *tracker) series(latest bool) Series {
	return Series{CPUNanos: t.last.CPUNanos, Memory: t.last.WorkingSet, SampledAt: t.at, Points: t.pts.points(latest)}
}

// SamplerOptions configure a Sampler.
type SamplerOptions struct {
	// Interval between samples (DefaultSampleInterval when 0).
	Interval time.Duration
	// History is how long points are kept (DefaultSampleHistory when 0).
	History time.Duration
	// Containers lists the containers to measure (PodManager.RunningContainers).
	Containers func() []RunningContainer
	// Stats reads one container's usage (Runtime.ContainerStats).
	Stats func(ctx context.Context, id string) (ContainerStats, error)
	// Node reads the machine's usage (nil: not measured; the agent passes
	// ReadNodeStats of /proc).
	Node func() (ContainerStats, error)
	// Now is the clock (time.Now when nil).
	Now func() time.Time
	Log *slog.Logger
}

type ctrKey struct{ ns, pod, ctr string }

// Sampler measures, every Interval, the CPU and memory of the running
// containers and of the node, and keeps the usage of the last History.
// Sample takes one round; Run takes them until its context ends.
type Sampler struct {
	opts SamplerOptions

	mu   sync.Mutex
	ctrs map[ctrKey]*tracker
	node tracker
}

// NewSampler returns a Sampler; nothing runs until Run or Sample.
func NewSampler(opts SamplerOptions) *Sampler {
	if opts.Interval <= 0 {
		opts.Interval = DefaultSampleInterval
	}
	if opts.History <= 0 {
		opts.History = DefaultSampleHistory
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Containers == nil {
		opts.Containers = func() []RunningContainer { return nil }
	}
	s := &Sampler{opts: opts, ctrs: map[ctrKey]*tracker{}}
	s.node.pts = newRing(s.capacity())
	return s
}

// Interval returns the time between samples.
func (s *Sampler) Interval() time.Duration { return s.opts.Interval }

// capacity is how many points History holds at Interval, with room for
// samples that come early.
func (s *Sampler) capacity() int {
	return int(s.opts.History/s.opts.Interval)*2 + 2
}

// Run samples every Interval until ctx ends.
func (s *Sampler) Run(ctx context.Context) {
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	for {
		s.Sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sample takes one round of samples: every running container's (all
// stamped with the time the round started) and the node's. Containers no
// longer running are forgotten.
func (s *Sampler) Sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.Interval)
	defer cancel()
	now := s.opts.Now()
	type got struct {
		k  ctrKey
		st ContainerStats
	}
	running := s.opts.Containers()
	seen := make(map[ctrKey]bool, len(running))
	var samples []got
	for _, c := range running {
		k := ctrKey{c.Namespace, c.Pod, c.Container}
		seen[k] = true
		if s.opts.Stats == nil {
			continue
		}
		st, err := s.opts.Stats(ctx, c.ID)
		if err != nil {
			// A container that just stopped, or a runtime that is slow:
			// the next round tries again.
			s.opts.Log.Debug("container statistics", "container", c.ID, "err", err)
			continue
		}
		samples = append(samples, got{k, st})
	}
	var node ContainerStats
	var nodeErr error
	if s.opts.Node != nil {
		node, nodeErr = s.opts.Node()
		if nodeErr != nil {
			s.opts.Log.Debug("node statistics", "err", nodeErr)
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.ctrs {
		if !seen[k] {
			delete(s.ctrs, k)
		}
	}
	for _, g := range samples {
		t := s.ctrs[g.k]
		if t == nil {
			t = &tracker{pts: newRing(s.capacity())}
			s.ctrs[g.k] = t
		}
		t.observe(now, g.st, s.opts.History)
	}
	if s.opts.Node != nil && nodeErr == nil {
		s.node.observe(now, node, s.opts.History)
	}
}

// Containers returns what is known of each running container, sorted by
// namespace, pod and container: every point kept, or only the latest.
func (s *Sampler) Containers(latest bool) []Series {
	s.mu.Lock()
	out := make([]Series, 0, len(s.ctrs))
	for k, t := range s.ctrs {
		se := t.series(latest)
		se.Namespace, se.Pod, se.Container = k.ns, k.pod, k.ctr
		out = append(out, se)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Pod != b.Pod {
			return a.Pod < b.Pod
		}
		return a.Container < b.Container
	})
	return out
}

// Node returns what is known of the node: every point kept, or only the
// latest.
func (s *Sampler) Node(latest bool) Series {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.node.series(latest)
}
