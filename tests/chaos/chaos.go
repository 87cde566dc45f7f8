// Package chaos injects faults into a cluster of real chorus peers and
// checks what users rely on: every acknowledged write is kept (or
// superseded by a later one), every desired replica runs exactly once,
// nothing undesired runs, and every service answers, once the faults stop
// and the cluster settles. While faults happen it measures how long
// replacements take, how long a replica runs twice or fewer replicas than
// desired are Ready, and how many requests through a service fail.
//
// Faults: kill -9 of a peer with its containers (a dead machine), a
// graceful stop, a restart, SIGSTOP (a hung machine), and a network
// partition between two groups of peers (iptables rules on loopback that
// drop every packet between their addresses: membership, data plane and
// service hops alike).
package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	corev1 "k8s.io/api/core/v1"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/tests/harness"
)

// Cluster is a set of peers under test.
type Cluster struct {
	T     testing.TB
	Peers []*harness.Peer
	Rand  *rand.Rand

	mu    sync.Mutex
	ops   []Op           // every write attempted, in order
	want  map[string]int // deployment name -> replicas of the last acknowledged write (-1: deleted)
	ports map[string]int // service nodePorts by deployment

	partitioned bool
}

// Op is one write sent to a peer.
type Op struct {
	At       time.Time `json:"at"`
	Peer     string    `json:"peer"`
	Kind     string    `json:"kind"` // apply, scale, delete
	Object   string    `json:"object"`
	Replicas int       `json:"replicas,omitempty"`
	Acked    bool      `json:"acked"`
	Error    string    `json:"error,omitempty"`
}

// New starts n peers on 127.0.0.<base+i> (gossip profile local, so a
// scenario's faults are detected in about a second) with the web image
// loaded on the first; the others fetch it from their peers.
func New(t testing.TB, bin, webImage string, n, base int, prefix string) *Cluster {
	t.Helper()
	c := &Cluster{T: t, Rand: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(base))), want: map[string]int{}, ports: map[string]int{}}
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		args := []string{"--gossip-profile", "local"}
		if i > 0 {
			args = append(args, "--join", fmt.Sprintf("127.0.0.%d", base))
		}
		c.Peers = append(c.Peers, harness.NewPeer(t, bin, fmt.Sprintf("%s%d", prefix, i+1), fmt.Sprintf("127.0.0.%d", base+i), args...))
	}
	for _, p := range c.Peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Start()
		}()
	}
	wg.Wait()
	t.Cleanup(c.Heal)
	c.WaitAlive(c.Peers, 60*time.Second)
	if _, err := c.Peers[0].CLI("image", "load", webImage); err != nil {
		t.Fatal(err)
	}
	return c
}

// Alive returns the peers whose agent runs.
func (c *Cluster) Alive() []*harness.Peer {
	var out []*harness.Peer
	for _, p := range c.Peers {
		if p.Running() {
			out = append(out, p)
		}
	}
	return out
}

// WaitAlive waits until the first of peers sees each of them Alive.
func (c *Cluster) WaitAlive(peers []*harness.Peer, timeout time.Duration) {
	c.T.Helper()
	harness.Eventually(c.T, timeout, "peers alive", func() (bool, string) {
		var l corev1.NodeList
		if err := peers[0].GetJSON("/api/v1/nodes", &l); err != nil {
			return false, err.Error()
		}
		alive := map[string]bool{}
		for _, n := range l.Items {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady {
					alive[n.Name] = c.Status == corev1.ConditionTrue // the peer is Alive
				}
			}
		}
		for _, p := range peers {
			if !alive[p.Name] {
				return false, fmt.Sprintf("%s not alive: %v", p.Name, alive)
			}
		}
		return true, ""
	})
}

func deploymentYAML(name string, replicas, nodePort int) string {
	return harness.WebDeployment(name, replicas) + fmt.Sprintf(`---
apiVersion: v1
kind: Service
metadata: {name: %[1]s}
spec:
  type: NodePort
  selector: {app: %[1]s}
  ports: [{port: 8080, nodePort: %[2]d}]
`, name, nodePort)
}

// statusError renders an API error with the message of its Status body.
func statusError(status string, body []byte) error {
	var st struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &st) == nil && st.Message != "" {
		return fmt.Errorf("%s: %s", status, st.Message)
	}
	return fmt.Errorf("%s: %s", status, bytes.TrimSpace(body))
}

func (c *Cluster) record(op Op, err error) {
	op.Acked = err == nil
	if err != nil {
		op.Error = err.Error()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ops = append(c.ops, op)
	if op.Acked {
		switch op.Kind {
		case "apply", "scale":
			c.want[op.Object] = op.Replicas
		case "delete":
			c.want[op.Object] = -1
		}
	}
}

// Apply creates or updates deployment name (and its NodePort service) on
// peer p and records the outcome.
func (c *Cluster) Apply(p *harness.Peer, name string, replicas, nodePort int) error {
	err := p.Apply([]byte(deploymentYAML(name, replicas, nodePort)))
	c.mu.Lock()
	c.ports[name] = nodePort
	c.mu.Unlock()
	c.record(Op{At: time.Now(), Peer: p.Name, Kind: "apply", Object: name, Replicas: replicas}, err)
	return err
}

// Scale writes the replicas of deployment name on peer p.
func (c *Cluster) Scale(p *harness.Peer, name string, replicas int) error {
	_, err := send(p, http.MethodPatch, "/apis/apps/v1/namespaces/default/deployments/"+name+"/scale",
		fmt.Sprintf(`{"spec":{"replicas": %d}}`, replicas))
	c.record(Op{At: time.Now(), Peer: p.Name, Kind: "scale", Object: name, Replicas: replicas}, err)
	return err
}

// Delete deletes deployment name (and its service) on peer p. A delete
// answered NotFound is not acknowledged: kubectl says "Error from server
// (NotFound)", and the deployment, if another peer holds it, stays.
func (c *Cluster) Delete(p *harness.Peer, name string) error {
	_, err := send(p, http.MethodDelete, "/apis/apps/v1/namespaces/default/deployments/"+name, "")
	if err == nil {
		var code int
		if code, err = send(p, http.MethodDelete, "/api/v1/namespaces/default/services/"+name, ""); code == http.StatusNotFound {
			err = nil // the service alone may be gone already
		}
	}
	c.record(Op{At: time.Now(), Peer: p.Name, Kind: "delete", Object: name}, err)
	return err
}

// send makes one API request on peer p (a merge patch when body is not
// empty); it fails unless it is answered 200, and returns the status code.
func send(p *harness.Peer, method, path, body string) (int, error) {
	req, err := p.Request(method, path, strings.NewReader(body))
	if err != nil {
		return 0, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/merge-patch+json")
	}
	resp, err := p.HTTPClient(10 * time.Second).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, statusError(resp.Status, b)
	}
	return resp.StatusCode, nil
}

// RandomWrite makes a random write to a random alive peer: a new
// deployment, a scale, or a delete.
func (c *Cluster) RandomWrite(names []string) {
	alive := c.Alive()
	if len(alive) == 0 {
		return
	}
	p := alive[c.Rand.IntN(len(alive))]
	name := names[c.Rand.IntN(len(names))]
	c.mu.Lock()
	cur, known := c.want[name]
	c.mu.Unlock()
	switch {
	case !known || cur < 0:
		_ = c.Apply(p, name, 1+c.Rand.IntN(3), c.nodePortFor(name))
	case c.Rand.IntN(5) == 0:
		_ = c.Delete(p, name)
	default:
		_ = c.Scale(p, name, 1+c.Rand.IntN(4))
	}
}

func (c *Cluster) nodePortFor(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.ports[name]; ok {
		return p
	}
	// Random writes take ports from 32000 on; scenarios give theirs below.
	return 32000 + len(c.ports)
}

// Partition cuts every packet between the peers of a and those of b.
func (c *Cluster) Partition(a, b []*harness.Peer) {
	c.T.Helper()
	c.addRules(func(add func(args ...string)) {
		for _, x := range a {
			for _, y := range b {
				add("-s", x.Bind, "-d", y.Bind, "-j", "DROP")
				add("-s", y.Bind, "-d", x.Bind, "-j", "DROP")
			}
		}
	})
}

// PartitionOneWay cuts every packet from the peers of from to those of to;
// packets the other way still pass (an asymmetric partition: a broken
// route or firewall rule in one direction).
func (c *Cluster) PartitionOneWay(from, to []*harness.Peer) {
	c.T.Helper()
	c.addRules(func(add func(args ...string)) {
		for _, x := range from {
			for _, y := range to {
				add("-s", x.Bind, "-d", y.Bind, "-j", "DROP")
			}
		}
	})
}

// Lossy drops pct percent of the packets each peer of peers sends to the
// other peers of the cluster, at random.
func (c *Cluster) Lossy(peers []*harness.Peer, pct float64) {
	c.T.Helper()
	c.addRules(func(add func(args ...string)) {
		for _, x := range peers {
			for _, y := range c.Peers {
				if x != y {
					add("-s", x.Bind, "-d", y.Bind, "-m", "statistic", "--mode", "random",
						"--probability", fmt.Sprint(pct/100), "-j", "DROP")
				}
			}
		}
	})
}

// addRules appends rules to the chaos chain, which Heal removes.
func (c *Cluster) addRules(rules func(add func(args ...string))) {
	c.T.Helper()
	run := func(args ...string) {
		if out, err := exec.Command("iptables", args...).CombinedOutput(); err != nil {
			c.T.Fatalf("iptables %v: %v %s", args, err, out)
		}
	}
	_ = exec.Command("iptables", "-N", chain).Run()
	if exec.Command("iptables", "-C", "INPUT", "-j", chain).Run() != nil {
		run("-I", "INPUT", "-j", chain)
	}
	rules(func(args ...string) { run(append([]string{"-A", chain}, args...)...) })
	c.partitioned = true
}

const chain = "CHORUS_CHAOS"

// Heal removes every partition.
func (c *Cluster) Heal() {
	_ = exec.Command("iptables", "-D", "INPUT", "-j", chain).Run()
	_ = exec.Command("iptables", "-F", chain).Run()
	_ = exec.Command("iptables", "-X", chain).Run()
	c.partitioned = false
}

// Sample is what the cluster looked like, from one peer, at one moment.
type Sample struct {
	At         time.Time
	Desired    int // replicas of the last acknowledged writes
	Ready      int // distinct Ready replicas
	Duplicates int // replicas Ready on two peers at once
}

// sample reads the pods from peer p.
func (c *Cluster) sample(p *harness.Peer) (Sample, error) {
	s := Sample{At: time.Now()}
	c.mu.Lock()
	for _, n := range c.want {
		if n > 0 {
			s.Desired += n
		}
	}
	c.mu.Unlock()
	pods, err := p.Pods("default")
	if err != nil {
		return s, err
	}
	// Ground truth: a pod counts only where its peer really runs (a peer
	// that was just killed is still listed, with its pods, until the others
	// declare it dead). A paused peer's containers still run and count.
	up := map[string]bool{}
	for _, q := range c.Alive() {
		up[q.Name] = true
	}
	seen := map[string]int{}
	for _, pod := range pods {
		if harness.IsReady(&pod) && pod.Status.Phase == api.PodRunning && up[pod.Spec.NodeName] {
			seen[pod.Metadata.Name]++
		}
	}
	for _, n := range seen {
		s.Ready++
		if n > 1 {
			s.Duplicates++
		}
	}
	return s, nil
}

// Monitor samples the cluster every interval from the first alive peer,
// and sends requests through a service, until stopped.
type Monitor struct {
	c        *Cluster
	stop     chan struct{}
	done     sync.WaitGroup
	mu       sync.Mutex
	samples  []Sample
	requests atomic.Int64
	failures atomic.Int64
}

// Watch starts a monitor; url, if not empty, gets a request every 50 ms.
func (c *Cluster) Watch(interval time.Duration, url func() string) *Monitor {
	m := &Monitor{c: c, stop: make(chan struct{})}
	m.done.Add(2)
	go func() {
		defer m.done.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
			for _, p := range c.Alive() {
				if s, err := c.sample(p); err == nil {
					m.mu.Lock()
					m.samples = append(m.samples, s)
					m.mu.Unlock()
					break
				}
			}
		}
	}()
	go func() {
		defer m.done.Done()
		if url == nil {
			return
		}
		for {
			select {
			case <-m.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			u := url()
			if u == "" {
				continue
			}
			m.requests.Add(1)
			if _, err := harness.HTTPGet(u); err != nil {
				m.failures.Add(1)
			}
		}
	}()
	return m
}

// Stop ends the monitor.
func (m *Monitor) Stop() {
	close(m.stop)
	m.done.Wait()
}

// Report is a scenario's figures.
type Report struct {
	Scenario           string         `json:"scenario"`
	Duration           float64        `json:"durationSeconds"`
	Writes             int            `json:"writes"`
	Acked              int            `json:"acknowledged"`
	Faults             []string       `json:"faults"`
	SecondsDuplicated  float64        `json:"secondsWithAReplicaTwice"`
	SecondsUnderReady  float64        `json:"secondsWithFewerReadyThanDesired"`
	Requests           int64          `json:"requests"`
	FailedRequests     int64          `json:"failedRequests"`
	ReplacementSeconds []float64      `json:"replacementSeconds"`
	SettleSeconds      float64        `json:"secondsToSettle"`
	Violations         []string       `json:"violations"`
	WriteErrors        map[string]int `json:"writeErrors,omitempty"` // refused writes, by reason
}

// Figures fills the report from the monitor's samples.
func (m *Monitor) Figures(r *Report, interval time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.samples {
		if s.Duplicates > 0 {
			r.SecondsDuplicated += interval.Seconds()
		}
		if s.Ready < s.Desired {
			r.SecondsUnderReady += interval.Seconds()
		}
	}
	r.Requests, r.FailedRequests = m.requests.Load(), m.failures.Load()
}

// RecoveryTime returns the time from at until the monitor saw every desired
// replica Ready again.
func (m *Monitor) RecoveryTime(at time.Time) (time.Duration, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range m.samples {
		if s.At.After(at) && s.Ready >= s.Desired && s.Duplicates == 0 {
			return s.At.Sub(at), true
		}
	}
	return 0, false
}

// Check waits until the cluster settles and checks the invariants: every
// acknowledged write is there on every alive peer (or superseded by a later
// one), every desired replica is Ready exactly once, nothing undesired
// runs, and every service answers through every alive peer. Violations
// are returned (and the test fails on them).
func (c *Cluster) Check(r *Report, timeout time.Duration) {
	c.T.Helper()
	c.mu.Lock()
	want := map[string]int{}
	for k, v := range c.want {
		want[k] = v
	}
	ports := map[string]int{}
	for k, v := range c.ports {
		ports[k] = v
	}
	for _, op := range c.ops {
		r.Writes++
		if op.Acked {
			r.Acked++
			continue
		}
		if r.WriteErrors == nil {
			r.WriteErrors = map[string]int{}
		}
		reason := op.Error
		if len(reason) > 160 {
			reason = reason[:160]
		}
		r.WriteErrors[reason]++
	}
	c.mu.Unlock()
	start := time.Now()
	var last []string
	for {
		last = c.violations(want, ports)
		if len(last) == 0 || time.Since(start) > timeout {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	r.SettleSeconds = time.Since(start).Seconds()
	r.Violations = append(r.Violations, last...) // after those the scenario found itself
	if len(last) > 0 {
		c.mu.Lock()
		for _, op := range c.ops {
			c.T.Logf("write %s %s %s %d on %s: acked=%v %s", op.At.Format("15:04:05.000"), op.Kind, op.Object, op.Replicas, op.Peer, op.Acked, op.Error)
		}
		c.mu.Unlock()
		for _, p := range c.Alive() {
			out, _ := p.CLI("get", "pods", "-o", "wide")
			c.T.Logf("pods seen by %s:\n%s", p.Name, out)
			break
		}
	}
	for _, v := range last {
		c.T.Errorf("%s: %s", r.Scenario, v)
	}
}

func (c *Cluster) violations(want map[string]int, ports map[string]int) []string {
	var out []string
	alive := c.Alive()
	for _, p := range alive {
		var l struct {
			Items []api.Deployment `json:"items"`
		}
		if err := p.GetJSON("/apis/apps/v1/namespaces/default/deployments", &l); err != nil {
			out = append(out, fmt.Sprintf("%s: %v", p.Name, err))
			continue
		}
		have := map[string]int{}
		for _, d := range l.Items {
			have[d.Metadata.Name] = int(*d.Spec.Replicas)
		}
		for name, n := range want {
			got, ok := have[name]
			switch {
			case n < 0 && ok:
				out = append(out, fmt.Sprintf("%s still holds deployment %s, deleted by an acknowledged write", p.Name, name))
			case n >= 0 && !ok:
				out = append(out, fmt.Sprintf("%s lost deployment %s (acknowledged with %d replicas)", p.Name, name, n))
			case n >= 0 && got != n:
				out = append(out, fmt.Sprintf("%s holds %s with %d replicas, the last acknowledged write said %d", p.Name, name, got, n))
			}
		}
	}
	if len(alive) == 0 {
		return append(out, "no peer alive")
	}
	pods, err := alive[0].Pods("default")
	if err != nil {
		return append(out, err.Error())
	}
	count := map[string]int{}
	perDeploy := map[string]int{}
	for _, pod := range pods {
		d := pod.Metadata.Labels[api.LabelDeployment]
		if want[d] <= 0 {
			out = append(out, fmt.Sprintf("pod %s of deleted or scaled-to-zero deployment %s runs on %s", pod.Metadata.Name, d, pod.Spec.NodeName))
			continue
		}
		if harness.IsReady(&pod) {
			count[pod.Metadata.Name]++
			perDeploy[d]++
		}
	}
	for name, n := range count {
		if n > 1 {
			out = append(out, fmt.Sprintf("replica %s runs %d times", name, n))
		}
	}
	for name, n := range want {
		if n > 0 && perDeploy[name] != n {
			out = append(out, fmt.Sprintf("deployment %s: %d Ready replicas, want %d", name, perDeploy[name], n))
		}
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		if want[name] <= 0 {
			continue
		}
		for _, p := range alive {
			url := fmt.Sprintf("http://%s:%d/", p.Bind, ports[name])
			if body, err := harness.HTTPGet(url); err != nil || !strings.HasPrefix(body, "hello from "+name+"-") {
				out = append(out, fmt.Sprintf("service %s does not answer through %s: %q %v", name, p.Name, body, err))
			}
		}
	}
	return out
}

// Save writes the reports as JSON to path.
func Save(path string, reports []Report) error {
	b, err := json.MarshalIndent(reports, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// Text renders reports as an aligned table.
func Text(reports []Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-28s %6s %7s %7s %9s %9s %9s %9s %8s %s\n", "SCENARIO", "SECS", "WRITES", "ACKED", "TWICE(s)", "UNDER(s)", "REQUESTS", "FAILED", "SETTLE", "REPLACEMENT(s)")
	for _, r := range reports {
		var reps []string
		for _, x := range r.ReplacementSeconds {
			reps = append(reps, fmt.Sprintf("%.1f", x))
		}
		fmt.Fprintf(&b, "%-28s %6.0f %7d %7d %9.1f %9.1f %9d %9d %8.1f %s\n", r.Scenario, r.Duration, r.Writes, r.Acked,
			r.SecondsDuplicated, r.SecondsUnderReady, r.Requests, r.FailedRequests, r.SettleSeconds, strings.Join(reps, ","))
		for _, v := range r.Violations {
			fmt.Fprintf(&b, "  VIOLATION: %s\n", v)
		}
		for reason, n := range r.WriteErrors {
			fmt.Fprintf(&b, "  refused write (%d): %s\n", n, reason)
		}
	}
	return b.String()
}
