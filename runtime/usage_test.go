package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	v1 "github.com/containerd/cgroups/v3/cgroup1/stats"
	v2 "github.com/containerd/cgroups/v3/cgroup2/stats"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func TestUsageRate(t *testing.T) {
	for _, c := range []struct {
		name      string
		dt        time.Duration
		prev, cur uint64
		want      int64
		wantOK    bool
	}{
		{"half a core", 5 * time.Second, 1e9, 3.5e9, 5e8, true},
		{"idle", 5 * time.Second, 1e9, 1e9, 0, true},
		{"two cores", time.Second, 0, 2e9, 2e9, true},
		{"restarted", 5 * time.Second, 9e9, 1e9, 0, false},
		{"same time", 0, 0, 1e9, 0, false},
		{"time went back", -time.Second, 0, 1e9, 0, false},
	} {
		p, ok := usageRate(t0, ContainerStats{CPUNanos: c.prev}, t0.Add(c.dt), ContainerStats{CPUNanos: c.cur, WorkingSet: 42})
		if ok != c.wantOK || (ok && (p.NanoCores != c.want || p.Window != c.dt || p.Memory != 42 || !p.Time.Equal(t0.Add(c.dt)))) {
			t.Errorf("%s: got %+v, %v; want %d nanocores, %v", c.name, p, ok, c.want, c.wantOK)
		}
	}
}

func TestRingKeepsTheWindow(t *testing.T) {
	r := newRing(4)
	for i := range 10 {
		r.push(Point{Time: t0.Add(time.Duration(i) * time.Second), NanoCores: int64(i)}, 3*time.Second)
	}
	got := r.points(false)
	// Kept: newer than 9s-3s, so 7, 8, 9.
	if len(got) != 3 || got[0].NanoCores != 7 || got[2].NanoCores != 9 {
		t.Fatalf("points = %+v", got)
	}
	if l := r.points(true); len(l) != 1 || l[0].NanoCores != 9 {
		t.Fatalf("latest = %+v", l)
	}
	// Full before the window: the oldest goes.
	r = newRing(2)
	for i := range 3 {
		r.push(Point{Time: t0.Add(time.Duration(i) * time.Millisecond), NanoCores: int64(i)}, time.Hour)
	}
	if got := r.points(false); len(got) != 2 || got[0].NanoCores != 1 {
		t.Fatalf("full ring = %+v", got)
	}
	if got := newRing(3).points(false); got != nil {
		t.Fatalf("empty ring = %+v", got)
	}
}

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestSamplerRounds(t *testing.T) {
	clk := &fakeClock{t: t0}
	cpu := map[string]uint64{"ns_a_web": 0, "ns_a_side": 0}
	running := []RunningContainer{{"ns", "a", "web", "ns_a_web"}, {"ns", "a", "side", "ns_a_side"}}
	var node uint64
	s := NewSampler(SamplerOptions{
		Interval:   5 * time.Second,
		History:    time.Minute,
		Now:        clk.now,
		Containers: func() []RunningContainer { return running },
		Stats: func(_ context.Context, id string) (ContainerStats, error) {
			if id == "ns_a_side" && cpu[id] == 3 {
				return ContainerStats{}, errors.New("gone")
			}
			return ContainerStats{CPUNanos: cpu[id], WorkingSet: 1 << 20}, nil
		},
		Node: func() (ContainerStats, error) { return ContainerStats{CPUNanos: node, WorkingSet: 7}, nil },
	})
	s.Sample(context.Background())
	if c := s.Containers(true); len(c) != 2 || len(c[0].Points) != 0 {
		t.Fatalf("after one sample: %+v", c)
	}
	for range 20 {
		clk.add(5 * time.Second)
		cpu["ns_a_web"] += 2.5e9 // half a core
		node += 10e9             // two cores
		s.Sample(context.Background())
	}
	c := s.Containers(false)
	if len(c) != 2 || c[0].Container != "side" || c[1].Container != "web" {
		t.Fatalf("containers = %+v", c)
	}
	web := c[1]
	// One minute of history at 5 s: 12 points (the 13th is a minute old).
	if len(web.Points) != 12 {
		t.Fatalf("web has %d points, want 12", len(web.Points))
	}
	if p, _ := web.Latest(); p.NanoCores != 5e8 || p.Window != 5*time.Second || p.Memory != 1<<20 || !p.Time.Equal(clk.now()) {
		t.Fatalf("web latest = %+v", p)
	}
	if web.CPUNanos != 50e9 || !web.SampledAt.Equal(clk.now()) {
		t.Fatalf("web last sample = %d at %v", web.CPUNanos, web.SampledAt)
	}
	if p, _ := s.Node(true).Latest(); p.NanoCores != 2e9 || p.Memory != 7 {
		t.Fatalf("node latest = %+v", p)
	}
	// The side container stops: it is forgotten.
	running = running[:1]
	clk.add(5 * time.Second)
	s.Sample(context.Background())
	if c := s.Containers(true); len(c) != 1 || c[0].Container != "web" {
		t.Fatalf("after a container stopped: %+v", c)
	}
}

func TestSamplerRunStops(t *testing.T) {
	defer goleak.VerifyNone(t)
	var mu sync.Mutex
	n := 0
	s := NewSampler(SamplerOptions{Interval: time.Millisecond, Node: func() (ContainerStats, error) {
		mu.Lock()
		n++
		mu.Unlock()
		return ContainerStats{}, nil
	}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	for {
		mu.Lock()
		k := n
		mu.Unlock()
		if k >= 3 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
}

func TestDecodeCgroupStats(t *testing.T) {
	b1, _ := proto.Marshal(&v1.Metrics{
		CPU:    &v1.CPUStat{Usage: &v1.CPUUsage{Total: 123456789}},
		Memory: &v1.MemoryStat{Usage: &v1.MemoryEntry{Usage: 100 << 20}, TotalInactiveFile: 30 << 20, InactiveFile: 1},
	})
	b2, _ := proto.Marshal(&v2.Metrics{
		CPU:    &v2.CPUStat{UsageUsec: 1500},
		Memory: &v2.MemoryStat{Usage: 50 << 20, InactiveFile: 60 << 20},
	})
	for _, c := range []struct {
		url     string
		b       []byte
		want    ContainerStats
		wantErr bool
	}{
		{"type.googleapis.com/io.containerd.cgroups.v1.Metrics", b1, ContainerStats{CPUNanos: 123456789, WorkingSet: 70 << 20}, false},
		{"io.containerd.cgroups.v1.Metrics", b1, ContainerStats{CPUNanos: 123456789, WorkingSet: 70 << 20}, false},
		// v2: usage in microseconds; inactive file above usage gives 0.
		{"io.containerd.cgroups.v2.Metrics", b2, ContainerStats{CPUNanos: 1500000}, false},
		{"io.containerd.cgroups.v2.Metrics", nil, ContainerStats{}, false},
		{"io.containerd.cgroups.v1.Metrics", []byte{0xff}, ContainerStats{}, true},
		{"io.containerd.windows.Stats", b1, ContainerStats{}, true},
		{"", b1, ContainerStats{}, true},
	} {
		got, err := decodeCgroupStats(c.url, c.b)
		if (err != nil) != c.wantErr || got != c.want {
			t.Errorf("%s: got %+v, %v; want %+v (error %v)", c.url, got, err, c.want, c.wantErr)
		}
	}
}

func FuzzDecodeCgroupStats(f *testing.F) {
	b1, _ := proto.Marshal(&v1.Metrics{CPU: &v1.CPUStat{Usage: &v1.CPUUsage{Total: 5}}, Memory: &v1.MemoryStat{Usage: &v1.MemoryEntry{Usage: 9}}})
	b2, _ := proto.Marshal(&v2.Metrics{CPU: &v2.CPUStat{UsageUsec: ^uint64(0)}, Memory: &v2.MemoryStat{Usage: 9, InactiveFile: 3}})
	f.Add(cgroupV1Metrics, b1)
	f.Add(cgroupV2Metrics, b2)
	f.Add("x/"+cgroupV2Metrics, []byte{0x12, 0x03, 0x08, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, url string, b []byte) {
		st, err := decodeCgroupStats(url, b)
		if err != nil && st != (ContainerStats{}) {
			t.Fatalf("error %v with stats %+v", err, st)
		}
	})
}

func TestParseProc(t *testing.T) {
	cpu, err := parseProcStat([]byte("cpu  100 20 30 4000 50 6 7 8 9 10\ncpu0 1 2 3 4\nintr 1\n"))
	// user+nice+system+irq+softirq+steal = 100+20+30+6+7+8 = 171 ticks.
	if err != nil || cpu != 171*1e7 {
		t.Fatalf("cpu = %d, %v", cpu, err)
	}
	for _, bad := range []string{"", "cpu 1 2\n", "cpu 1 2 x 4\n", "cpu0 1 2 3 4\n", fmt.Sprintf("cpu %d 1 1 1\n", ^uint64(0))} {
		if _, err := parseProcStat([]byte(bad)); err == nil {
			t.Errorf("parseProcStat(%q): no error", bad)
		}
	}
	mem, err := parseMeminfo([]byte("MemTotal:       1000 kB\nMemFree:   10 kB\nMemAvailable:    400 kB\n"))
	if err != nil || mem != 600*1024 {
		t.Fatalf("mem = %d, %v", mem, err)
	}
	for _, bad := range []string{"", "MemTotal: 1 kB\n", "MemTotal: x kB\nMemAvailable: 1 kB\n", "MemTotal: 1 MB\nMemAvailable: 1 kB\n"} {
		if _, err := parseMeminfo([]byte(bad)); err == nil {
			t.Errorf("parseMeminfo(%q): no error", bad)
		}
	}
	if st, err := ReadNodeStats("/proc"); err != nil || st.CPUNanos == 0 || st.WorkingSet == 0 {
		t.Fatalf("ReadNodeStats(/proc) = %+v, %v", st, err)
	}
}

func FuzzParseProc(f *testing.F) {
	f.Add([]byte("cpu  2099950 80121 1330006 3169210 32295 0 63566 0 0 0\ncpu0 1 2 3 4\n"))
	f.Add([]byte("MemTotal:       24683548 kB\nMemFree: 1 kB\nMemAvailable:   23840552 kB\n"))
	f.Add([]byte("cpu 18446744073709551615 1 1 1\nMemTotal: 18446744073709551615 kB\nMemAvailable: 0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if n, err := parseProcStat(b); err != nil && n != 0 {
			t.Fatalf("error %v with %d", err, n)
		}
		if n, err := parseMeminfo(b); err != nil && n != 0 {
			t.Fatalf("error %v with %d", err, n)
		}
	})
}

// BenchmarkSamplerRound is one round of a Sampler over 50 pods of two
// containers each, the runtime's answers given (the bookkeeping only: the
// containerd requests are measured by BenchmarkMetricsCost in
// tests/cluster).
func BenchmarkSamplerRound(b *testing.B) {
	clk := &fakeClock{t: t0}
	var running []RunningContainer
	for i := range 50 {
		for _, c := range []string{"app", "side"} {
			running = append(running, RunningContainer{"bench", fmt.Sprintf("idle-%d", i), c, fmt.Sprintf("bench_idle-%d_%s", i, c)})
		}
	}
	var cpu uint64
	s := NewSampler(SamplerOptions{Now: clk.now, Containers: func() []RunningContainer { return running },
		Stats: func(context.Context, string) (ContainerStats, error) {
			return ContainerStats{CPUNanos: cpu, WorkingSet: 1 << 20}, nil
		},
		Node: func() (ContainerStats, error) { return ContainerStats{CPUNanos: cpu}, nil }})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		clk.add(5 * time.Second)
		cpu += 1e9
		s.Sample(ctx)
	}
}
