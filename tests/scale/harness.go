package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/chorus-sh/chorus/agent"
	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/gossip"
)

// Options says what one run of the harness does.
type Options struct {
	Peers   int // peers started
	Objects int // ConfigMaps stored before the measures (the desired state's size)
	Pods    int // replicas, as deployments of up to 10 replicas each
	// Writes is how many single writes convergence is measured on, one
	// every WriteEvery, each through a random peer.
	Writes     int
	WriteEvery time.Duration
	// Window is how long the idle and the loaded traffic are measured;
	// LoadRate the writes per second of the load (0: the idle window only).
	Window   time.Duration
	LoadRate int
	// Failover kills a peer that runs pods and waits for its pods to run
	// elsewhere; Timeout bounds every wait of the run.
	Failover bool
	Timeout  time.Duration
	// Profile is the peers' gossip profile (default lan: every peer of the
	// harness shares this process and the machine's cores); wan slows
	// failure detection's timers five- to tenfold, which lets more peers
	// fit on a small machine (the failover figure then includes the
	// slower detection).
	Profile string
	// FullMeshUpTo is how many other peers a peer connects its data plane
	// to all of (0: chorus's default, 32); beyond, only to its neighbours.
	FullMeshUpTo int
	// Net is the first address's second and third octets' prefix: peer i
	// listens on 127.<Net[0]>.<Net[1]+i/250>.<1+i%250> (defaults 0, 3: in
	// 127.0.3.0/24..127.0.9.0/24 for up to 1,750 peers).
	Net [2]byte
	// Dir holds the peers' data dirs (a temporary dir under it is made and
	// removed).
	Dir string
	// Counter, when set, returns the bytes sent so far by every peer
	// together (the loopback's counter of a network namespace of the
	// harness's own); nil: only the replication payloads are counted.
	Counter func() (uint64, error)
	// SerfPort, when not 0, is every peer's membership port (each peer has
	// an address of its own), so that a counter can tell membership's
	// bytes from the data plane's; 0: ports the kernel chooses.
	SerfPort int
	// MemberCounter, when set, returns the bytes sent so far to or from
	// SerfPort (membership: probes, gossip, push-pull).
	MemberCounter func() (uint64, error)
	Log           *slog.Logger
	// Progress, when set, is told of each phase's end.
	Progress func(phase string, took time.Duration)
}

// Result is what a run measured. The JSON names are the harness's output.
type Result struct {
	Peers   int `json:"peers"`
	Objects int `json:"objects"`
	Pods    int `json:"pods"`

	StartS           float64 `json:"start_s"`                              // peers started to every peer seeing every other alive
	PreloadS         float64 `json:"preload_s"`                            // objects written to every peer holding all
	PodsRunningS     float64 `json:"pods_running_s"`                       // deployments written to every pod Running once, seen by all
	ConvergeP50Ms    float64 `json:"converge_p50_ms"`                      // a write on one peer to every peer holding it
	ConvergeP99Ms    float64 `json:"converge_p99_ms"`                      //
	ConvergeMaxMs    float64 `json:"converge_max_ms"`                      //
	FailoverMs       float64 `json:"failover_ms"`                          // a peer killed to its pods Running elsewhere, seen by every peer
	FailoverPods     int     `json:"failover_pods"`                        // pods the killed peer ran
	FailoverDetectMs float64 `json:"failover_detect_ms"`                   // of failover_ms: until every survivor saw the peer gone
	FailoverOwnedMs  float64 `json:"failover_owned_ms"`                    // of failover_ms: until its pods ran elsewhere, once each (in truth)
	DuplicatePods    int     `json:"duplicate_pods"`                       // pods Running on two peers at once once settled (must be 0)
	MissingPods      int     `json:"missing_pods"`                         // desired pods not Running anywhere once settled (must be 0)
	BytesIdle        float64 `json:"bytes_per_peer_per_s_idle"`            // all traffic (Counter), no writes
	BytesLoad        float64 `json:"bytes_per_peer_per_s_load"`            // all traffic under LoadRate writes/s
	ReplBytesIdle    float64 `json:"repl_bytes_per_peer_per_s_idle"`       // replication payloads only, sent
	MemberBytesIdle  float64 `json:"membership_bytes_per_peer_per_s_idle"` // of bytes_per_peer_per_s_idle, membership's (MemberCounter)
	DialsStart       float64 `json:"dials_per_peer_start"`                 // data plane connections opened from the start to the objects held by all
	DialsIdle        float64 `json:"dials_per_peer_per_min_idle"`          // data plane connections opened, idle
	ReplBytesLoad    float64 `json:"repl_bytes_per_peer_per_s_load"`       //
	LoadWritesPerS   int     `json:"load_writes_per_s"`                    //
	CPUIdlePct       float64 `json:"cpu_per_peer_pct"`                     // idle, % of one core per peer
	CPULoadPct       float64 `json:"cpu_per_peer_pct_load"`                //
	MemPerPeerMiB    float64 `json:"mem_per_peer_mib"`                     // resident set / peers
	HeapPerPeerMiB   float64 `json:"heap_per_peer_mib"`                    // Go heap in use / peers, after GC
	Goroutines       int     `json:"goroutines_per_peer"`                  //
	CountsAllTraffic bool    `json:"bytes_count_all_traffic"`              // false: only replication was counted
	Profile          string  `json:"gossip_profile"`                       // the peers' failure-detection timings
	Taken            string  `json:"taken"`                                // when (UTC)
}

// harness is one run's peers.
type harness struct {
	opt   Options
	dir   string
	peers []*agent.Sim
	dead  map[int]bool
	rng   *rand.Rand
	seq   int
	// failoverDetected and failoverOwned are when, in the last failover,
	// every survivor saw the victim gone, and its pods ran once each.
	failoverDetected, failoverOwned time.Duration
}

func (h *harness) addr(i int) string {
	return fmt.Sprintf("127.%d.%d.%d", h.opt.Net[0], int(h.opt.Net[1])+i/250, 1+i%250)
}

// freePort returns a port free for TCP and UDP on ip (chosen by the
// kernel; taken again by the peer an instant later).
func freePort(ip string) (int, error) {
	for range 20 {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort(ip, strconv.Itoa(port)))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free port")
}

// Run runs the harness once: starts the peers, measures, stops them.
func Run(ctx context.Context, opt Options) (Result, error) {
	if opt.Progress == nil {
		opt.Progress = func(string, time.Duration) {}
	}
	return run(ctx, opt)
}

func run(ctx context.Context, opt Options) (res Result, err error) {
	if opt.Peers < 2 {
		return res, errors.New("want at least 2 peers")
	}
	if opt.Writes <= 0 {
		opt.Writes = 30
	}
	if opt.WriteEvery <= 0 {
		opt.WriteEvery = 200 * time.Millisecond
	}
	if opt.Window <= 0 {
		opt.Window = 10 * time.Second
	}
	if opt.Timeout <= 0 {
		opt.Timeout = 5 * time.Minute
	}
	if opt.Profile == "" {
		opt.Profile = gossip.ProfileLAN
	}
	if opt.Net == [2]byte{} {
		opt.Net = [2]byte{0, 3}
	}
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.Progress == nil {
		opt.Progress = func(string, time.Duration) {}
	}
	dir, err := os.MkdirTemp(opt.Dir, "chorus-scale-")
	if err != nil {
		return res, fmt.Errorf("data dir: %w", err)
	}
	defer os.RemoveAll(dir)
	h := &harness{opt: opt, dir: dir, dead: map[int]bool{}, rng: rand.New(rand.NewPCG(1, uint64(opt.Peers)))}
	defer h.stop()
	defer func() {
		if err != nil {
			opt.Progress("failed: "+err.Error(), 0) // before the peers stop, which takes a while
		}
	}()
	res = Result{Peers: opt.Peers, Objects: opt.Objects, Pods: opt.Pods, Taken: time.Now().UTC().Format(time.RFC3339),
		CountsAllTraffic: opt.Counter != nil, LoadWritesPerS: opt.LoadRate, Profile: opt.Profile}

	t0 := time.Now()
	if err := h.start(ctx); err != nil {
		return res, err
	}
	if err := h.wait(ctx, "membership", func() bool { return h.allSee(opt.Peers) }); err != nil {
		seen := map[int]int{}
		for _, i := range h.alive() {
			seen[h.peers[i].AliveMembers()]++
		}
		return res, fmt.Errorf("%w (peers by members seen alive: %v)", err, seen)
	}
	res.StartS = since(t0)
	opt.Progress("membership", time.Since(t0))

	t0 = time.Now()
	if err := h.preload(ctx); err != nil {
		return res, err
	}
	res.DialsStart = float64(h.dials()) / float64(opt.Peers)
	res.PreloadS = since(t0)
	opt.Progress("preload", time.Since(t0))

	t0 = time.Now()
	want, err := h.deploy()
	if err != nil {
		return res, err
	}
	if err := h.wait(ctx, "pods running", func() bool { return h.settled(want) }); err != nil {
		return res, fmt.Errorf("%w (%s)", err, h.why(want))
	}
	res.PodsRunningS = since(t0)
	opt.Progress("pods running", time.Since(t0))

	lat, err := h.converge(ctx)
	if err != nil {
		return res, err
	}
	res.ConvergeP50Ms, res.ConvergeP99Ms, res.ConvergeMaxMs = pct(lat, 50), pct(lat, 99), pct(lat, 100)
	opt.Progress("convergence", 0)

	// Idle, then under load: all traffic, replication's, CPU.
	m0, _ := h.memberCount()
	d0 := h.dials()
	w0 := time.Now()
	res.BytesIdle, res.ReplBytesIdle, res.CPUIdlePct, err = h.window(ctx, 0)
	if err != nil {
		return res, err
	}
	if m1, err := h.memberCount(); err == nil && m1 > 0 {
		res.MemberBytesIdle = float64(m1-m0) / float64(len(h.alive())) / time.Since(w0).Seconds()
	}
	res.DialsIdle = float64(h.dials()-d0) / float64(len(h.alive())) / time.Since(w0).Minutes()
	if opt.LoadRate > 0 {
		res.BytesLoad, res.ReplBytesLoad, res.CPULoadPct, err = h.window(ctx, opt.LoadRate)
		if err != nil {
			return res, err
		}
	}
	goruntime.GC()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	res.HeapPerPeerMiB = float64(ms.HeapInuse) / float64(opt.Peers) / (1 << 20)
	res.MemPerPeerMiB = float64(rss()) / float64(opt.Peers) / (1 << 20)
	res.Goroutines = goruntime.NumGoroutine() / opt.Peers

	if opt.Failover {
		ms, n, err := h.failover(ctx, want)
		if err != nil {
			return res, err
		}
		res.FailoverMs, res.FailoverPods = ms, n
		res.FailoverDetectMs, res.FailoverOwnedMs = float64(h.failoverDetected.Milliseconds()), float64(h.failoverOwned.Milliseconds())
		opt.Progress("failover", time.Duration(ms)*time.Millisecond)
	}
	res.DuplicatePods, res.MissingPods = h.ownership(want)
	return res, nil
}

func since(t time.Time) float64 { return float64(time.Since(t).Milliseconds()) / 1000 }

// start starts the peers; each joins the first and two random earlier ones.
func (h *harness) start(ctx context.Context) error {
	serf := make([]string, h.opt.Peers)
	for i := range h.opt.Peers {
		ip := h.addr(i)
		sp := h.opt.SerfPort
		if sp == 0 {
			var err error
			if sp, err = freePort(ip); err != nil {
				return fmt.Errorf("peer %d: %w", i, err)
			}
		}
		pp, err := freePort(ip)
		if err != nil {
			return fmt.Errorf("peer %d: %w", i, err)
		}
		serf[i] = net.JoinHostPort(ip, strconv.Itoa(sp))
		var join []string
		if i > 0 {
			join = []string{serf[0]}
			for range 2 {
				join = append(join, serf[h.rng.IntN(i)])
			}
			slices.Sort(join)
			join = slices.Compact(join)
		}
		name := fmt.Sprintf("p%04d", i)
		s, err := agent.StartSim(ctx, agent.Config{Name: name, Bind: ip, SerfPort: sp, P2PPort: pp, Join: join,
			GossipProfile: h.opt.Profile, GossipFullMeshUpTo: h.opt.FullMeshUpTo, DataDir: filepath.Join(h.dir, name), Log: h.opt.Log}, newMemRuntime(byte(i%250)))
		if err != nil {
			return fmt.Errorf("start peer %s: %w", name, err)
		}
		h.peers = append(h.peers, s)
	}
	return nil
}

// stop stops every peer still running, many at once.
func (h *harness) stop() {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i, p := range h.peers {
		if h.dead[i] {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			_ = p.Close()
		}()
	}
	wg.Wait()
	h.peers = nil
}

func (h *harness) alive() []int {
	var out []int
	for i := range h.peers {
		if !h.dead[i] {
			out = append(out, i)
		}
	}
	return out
}

func (h *harness) allSee(n int) bool {
	for _, i := range h.alive() {
		if h.peers[i].AliveMembers() != n {
			return false
		}
	}
	return true
}

// wait polls ok until it holds, ctx ends or the run's timeout passes.
func (h *harness) wait(ctx context.Context, what string, ok func() bool) error {
	return h.waitEvery(ctx, what, 100*time.Millisecond, ok)
}

func (h *harness) waitEvery(ctx context.Context, what string, every time.Duration, ok func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, h.opt.Timeout)
	defer cancel()
	t := time.NewTicker(every)
	defer t.Stop()
	for !ok() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// configMap is the object the harness writes: 10 keys of 24 bytes.
func configMap(name string) api.Object {
	data := make(map[string]string, 10)
	for k := range 10 {
		data["key"+strconv.Itoa(k)] = strings.Repeat(strconv.Itoa(k), 24)
	}
	return &api.ConfigMap{TypeMeta: api.TypeMeta{APIVersion: "v1", Kind: api.KindConfigMap},
		Metadata: api.ObjectMeta{Name: name, Namespace: "default"}, Data: data}
}

// preload stores Objects ConfigMaps, 500 a write spread over the peers,
// and waits until every peer holds them all.
func (h *harness) preload(ctx context.Context) error {
	const batch = 500
	for i := 0; i < h.opt.Objects; i += batch {
		var objs []api.Object
		for j := i; j < min(i+batch, h.opt.Objects); j++ {
			objs = append(objs, configMap(fmt.Sprintf("obj-%06d", j)))
		}
		if err := h.peers[(i/batch)%len(h.peers)].Apply(objs...); err != nil {
			return fmt.Errorf("preload: %w", err)
		}
	}
	return h.wait(ctx, "preload", func() bool {
		for _, i := range h.alive() {
			if h.peers[i].Objects() < h.opt.Objects {
				return false
			}
		}
		return true
	})
}

// deploy writes deployments of up to 10 replicas for Pods in all and
// returns the pod names wanted ("namespace/name" prefixes per deployment
// and replica counts).
func (h *harness) deploy() (map[string]int, error) {
	want := map[string]int{}
	var objs []api.Object
	for i, left := 0, h.opt.Pods; left > 0; i++ {
		n := min(left, 10)
		left -= n
		name := fmt.Sprintf("app-%05d", i)
		doc := fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %s, namespace: default}
spec:
  replicas: %d
  selector: {matchLabels: {app: %s}}
  template:
    metadata: {labels: {app: %s}}
    spec:
      containers: [{name: c, image: "scale.local/idle:1", imagePullPolicy: IfNotPresent}]
`, name, n, name, name)
		o, _, err := api.Decode([]byte(doc), "scale")
		if err != nil {
			return nil, fmt.Errorf("deployment: %w", err)
		}
		objs = append(objs, o...)
		want["default/"+name] = n
	}
	if len(objs) == 0 {
		return want, nil
	}
	return want, h.peers[0].Apply(objs...)
}

// deploymentOf is the "namespace/deployment" of a pod.
func deploymentOf(p *api.Pod) string {
	return p.Metadata.Namespace + "/" + p.Metadata.Labels[api.LabelDeployment]
}

// running reports, for a list of pods as one peer sees them, whether each
// deployment has exactly its replicas Running on alive peers, once each.
func running(pods []api.Pod, want map[string]int, dead map[string]bool) bool {
	got := map[string]int{}
	seen := map[string]bool{}
	for i := range pods {
		p := &pods[i]
		if p.Status.Phase != api.PodRunning || dead[p.Spec.NodeName] {
			continue
		}
		k := p.Metadata.Namespace + "/" + p.Metadata.Name
		if seen[k] {
			return false // on two peers
		}
		seen[k] = true
		got[deploymentOf(p)]++
	}
	for d, n := range want {
		if got[d] != n {
			return false
		}
	}
	return true
}

func (h *harness) deadNames() map[string]bool {
	out := map[string]bool{}
	for i := range h.dead {
		out[h.peers[i].Name()] = true
	}
	return out
}

// settled reports whether the pods run as wanted, once each, in truth (the
// pod managers) and as every peer sees them.
func (h *harness) settled(want map[string]int) bool {
	if dup, miss := h.ownership(want); dup+miss > 0 {
		return false
	}
	dead := h.deadNames()
	for _, i := range h.alive() {
		if !running(h.peers[i].ClusterPods(), want, dead) {
			return false
		}
	}
	return true
}

// why says what keeps the pods from being settled.
func (h *harness) why(want map[string]int) string {
	dup, miss := h.ownership(want)
	wrong := 0
	dead := h.deadNames()
	example := ""
	for _, i := range h.alive() {
		pods := h.peers[i].ClusterPods()
		if !running(pods, want, dead) {
			wrong++
			if example == "" {
				phases := map[string]int{}
				for _, p := range pods {
					phases[string(p.Status.Phase)]++
					if p.Status.Phase != api.PodRunning && len(phases) < 4 {
						b, _ := json.Marshal(p.Status)
						example += fmt.Sprintf("[%s on %s: %s] ", p.Metadata.Name, p.Spec.NodeName, b)
					}
				}
				example = fmt.Sprintf("%s sees %d pods %v %s", h.peers[i].Name(), len(pods), phases, example)
			}
		}
	}
	return fmt.Sprintf("%d pods on two peers, %d missing, %d peers see it otherwise; %s", dup, miss, wrong, example)
}

// ownership counts, from what the alive peers' pod managers run, the
// desired pods Running on more than one peer, and those Running nowhere.
func (h *harness) ownership(want map[string]int) (dup, missing int) {
	on := map[string]int{}
	per := map[string]int{}
	for _, i := range h.alive() {
		for _, p := range h.peers[i].LocalPods() {
			if p.Status.Phase != api.PodRunning {
				continue
			}
			k := p.Metadata.Namespace + "/" + p.Metadata.Name
			on[k]++
			if on[k] == 1 {
				per[deploymentOf(&p)]++
			}
		}
	}
	for _, n := range on {
		if n > 1 {
			dup++
		}
	}
	for d, n := range want {
		if per[d] < n {
			missing += n - per[d]
		}
	}
	return dup, missing
}

// converge writes Writes new objects, each through a random alive peer,
// and returns for each how long until every alive peer held it (ms).
func (h *harness) converge(ctx context.Context) ([]float64, error) {
	type write struct {
		key  string
		at   time.Time
		left map[int]bool
	}
	var (
		mu      sync.Mutex
		pending []*write
		lat     []float64
	)
	ctx, cancel := context.WithTimeout(ctx, h.opt.Timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { // the watcher: every 2 ms, who holds what
		t := time.NewTicker(2 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				done <- ctx.Err()
				return
			case <-t.C:
			}
			mu.Lock()
			now := time.Now()
			for _, w := range pending {
				for i := range w.left {
					if h.peers[i].Holds(w.key) {
						delete(w.left, i)
					}
				}
				if len(w.left) == 0 {
					lat = append(lat, float64(now.Sub(w.at).Microseconds())/1000)
				}
			}
			pending = slices.DeleteFunc(pending, func(w *write) bool { return len(w.left) == 0 })
			finished := len(lat) == h.opt.Writes
			mu.Unlock()
			if finished {
				done <- nil
				return
			}
		}
	}()
	alive := h.alive()
	for range h.opt.Writes {
		h.seq++
		name := fmt.Sprintf("w-%06d", h.seq)
		w := &write{key: api.ObjectKey(configMap(name)), left: map[int]bool{}}
		for _, i := range alive {
			w.left[i] = true
		}
		p := h.peers[alive[h.rng.IntN(len(alive))]]
		mu.Lock()
		w.at = time.Now()
		pending = append(pending, w)
		mu.Unlock()
		if err := p.Apply(configMap(name)); err != nil {
			cancel()
			<-done
			return nil, fmt.Errorf("write: %w", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(h.opt.WriteEvery):
		}
	}
	if err := <-done; err != nil {
		return nil, fmt.Errorf("convergence: %w", err)
	}
	return lat, nil
}

// window measures, over Window, the bytes every peer sent (all traffic
// when a Counter is set), the replication payloads sent, and the CPU
// time of the process, each per peer and per second; with rate > 0 it
// writes rate objects a second through random peers meanwhile.
func (h *harness) window(ctx context.Context, rate int) (bytes, repl, cpu float64, err error) {
	c0, _ := h.count()
	r0 := h.replOut()
	u0 := cpuTime()
	t0 := time.Now()
	end := t0.Add(h.opt.Window)
	alive := h.alive()
	if rate > 0 {
		every := time.Second / time.Duration(rate)
		for next := t0; time.Now().Before(end); next = next.Add(every) {
			select {
			case <-ctx.Done():
				return 0, 0, 0, ctx.Err()
			case <-time.After(time.Until(next)):
			}
			h.seq++
			if err := h.peers[alive[h.rng.IntN(len(alive))]].Apply(configMap(fmt.Sprintf("w-%06d", h.seq))); err != nil {
				return 0, 0, 0, fmt.Errorf("load write: %w", err)
			}
		}
	} else {
		select {
		case <-ctx.Done():
			return 0, 0, 0, ctx.Err()
		case <-time.After(h.opt.Window):
		}
	}
	secs := time.Since(t0).Seconds()
	n := float64(len(alive))
	c1, err := h.count()
	if err != nil {
		return 0, 0, 0, err
	}
	return float64(c1-c0) / n / secs, float64(h.replOut()-r0) / n / secs, (cpuTime() - u0).Seconds() / n / secs * 100, nil
}

func (h *harness) count() (uint64, error) {
	if h.opt.Counter == nil {
		return 0, nil
	}
	return h.opt.Counter()
}

func (h *harness) dials() uint64 {
	var n uint64
	for _, i := range h.alive() {
		n += h.peers[i].ConnsDialed()
	}
	return n
}

func (h *harness) memberCount() (uint64, error) {
	if h.opt.MemberCounter == nil {
		return 0, nil
	}
	return h.opt.MemberCounter()
}

func (h *harness) replOut() int64 {
	var out int64
	for _, i := range h.alive() {
		_, o := h.peers[i].ReplicationBytes()
		out += o
	}
	return out
}

// failover kills a peer (not the first, every peer's seed) that runs pods
// and returns how long until its pods ran elsewhere, once each, as every
// surviving peer sees it.
func (h *harness) failover(ctx context.Context, want map[string]int) (float64, int, error) {
	victim, most := -1, 0
	for _, i := range h.alive()[1:] {
		if n := len(h.peers[i].LocalPods()); n > most {
			victim, most = i, n
		}
	}
	if victim < 0 {
		return 0, 0, errors.New("failover: no peer runs a pod")
	}
	t0 := time.Now()
	h.dead[victim] = true
	if err := h.peers[victim].Close(); err != nil {
		h.opt.Log.Debug("close the killed peer", "err", err)
	}
	// Peers already seen right stay checked: reading every peer's view of
	// every pod costs, and the measure should not slow what it measures.
	ok := map[int]bool{}
	dead := h.deadNames()
	alive := len(h.alive())
	var detected, owned time.Duration
	err := h.waitEvery(ctx, "failover", 20*time.Millisecond, func() bool {
		if detected == 0 {
			if !h.allSee(alive) {
				return false
			}
			detected = time.Since(t0)
		}
		if dup, miss := h.ownership(want); dup+miss > 0 {
			return false
		}
		if owned == 0 {
			owned = time.Since(t0)
		}
		for _, i := range h.alive() {
			if !ok[i] {
				if !running(h.peers[i].ClusterPods(), want, dead) {
					return false
				}
				ok[i] = true
			}
		}
		return true
	})
	if err != nil {
		return 0, most, fmt.Errorf("%w (%s)", err, h.why(want))
	}
	h.failoverDetected, h.failoverOwned = detected, owned
	return float64(time.Since(t0).Milliseconds()), most, nil
}

func pct(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// cpuTime is the CPU time (user and system) the process used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// rss is the process's resident set in bytes (0 if unknown).
func rss() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}
