package chaos

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/chorus-sh/chorus/tests/images"
	corev1 "k8s.io/api/core/v1"
)

// The short form (part of `make test`) runs each scenario for a few tens of
// seconds; `make chaos` runs the long form with -chaos.duration.
var (
	duration = flag.Duration("chaos.duration", 20*time.Second, "how long each scenario injects faults")
	report   = flag.String("chaos.report", "", "write the reports as JSON to this file (and as text next to it)")
)

var (
	bin    string
	webImg string

	reportsMu sync.Mutex
	reports   []Report
)

func TestMain(m *testing.M) {
	flag.Parse()
	imgs, err := images.BuildAll(context.Background(), images.CacheDir())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	webImg = imgs["web"]
	code := harness.Main(m, &bin)
	if *report != "" {
		if err := Save(*report, reports); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
		_ = os.WriteFile(*report+".txt", []byte(Text(reports)), 0o644)
	}
	fmt.Print(Text(reports))
	os.Exit(code)
}

func keep(r Report) {
	reportsMu.Lock()
	defer reportsMu.Unlock()
	reports = append(reports, r)
}

const sample = 500 * time.Millisecond

// serviceURL returns a NodePort URL of deployment name on the first alive
// peer.
func (c *Cluster) serviceURL(name string) func() string {
	return func() string {
		alive := c.Alive()
		c.mu.Lock()
		port, ok := c.ports[name]
		n := c.want[name]
		c.mu.Unlock()
		if len(alive) == 0 || !ok || n <= 0 {
			return ""
		}
		return fmt.Sprintf("http://%s:%d/", alive[0].Bind, port)
	}
}

// finish ends a scenario begun at start: the monitor stops, its figures go
// into r, the checker runs (120 s at most to settle) and r is kept for the
// report.
func (c *Cluster) finish(r *Report, m *Monitor, start time.Time) {
	c.T.Helper()
	m.Stop()
	r.Duration = time.Since(start).Seconds()
	m.Figures(r, sample)
	c.Check(r, 120*time.Second)
	keep(*r)
}

// TestRandomKillsDuringWrites: random kills (with containers), graceful
// stops and restarts of one peer at a time, while writes (creates, scales,
// deletes) go to random live peers.
func TestRandomKillsDuringWrites(t *testing.T) {
	c := New(t, bin, webImg, 5, 101, "k")
	if err := c.Apply(c.Peers[0], "stable", 3, 31001); err != nil {
		t.Fatal(err)
	}
	c.Check(&Report{}, 90*time.Second)
	r := Report{Scenario: "random-kills-during-writes"}
	m := c.Watch(sample, c.serviceURL("stable"))
	start := time.Now()
	names := []string{"a", "b", "c"}
	for time.Since(start) < *duration {
		victim := c.Peers[1+c.Rand.IntN(len(c.Peers)-1)]
		switch c.Rand.IntN(3) {
		case 0:
			victim.KillMachine()
			r.Faults = append(r.Faults, "kill -9 "+victim.Name)
		case 1:
			victim.Stop()
			r.Faults = append(r.Faults, "stop "+victim.Name)
		default:
			victim.KillMachine()
			r.Faults = append(r.Faults, "kill -9 and restart "+victim.Name)
		}
		for i := 0; i < 3; i++ {
			c.RandomWrite(names)
			time.Sleep(500 * time.Millisecond)
		}
		victim.Start()
		for i := 0; i < 3; i++ {
			c.RandomWrite(names)
			time.Sleep(500 * time.Millisecond)
		}
	}
	c.finish(&r, m, start)
}

// TestKillMinority: two of five peers die at once.
func TestKillMinority(t *testing.T) {
	c := New(t, bin, webImg, 5, 111, "m")
	if err := c.Apply(c.Peers[0], "web", 6, 31011); err != nil {
		t.Fatal(err)
	}
	c.Check(&Report{}, 90*time.Second)
	r := Report{Scenario: "kill-minority"}
	m := c.Watch(sample, c.serviceURL("web"))
	start := time.Now()
	at := time.Now()
	c.Peers[3].KillMachine()
	c.Peers[4].KillMachine()
	r.Faults = append(r.Faults, "kill -9 "+c.Peers[3].Name+" and "+c.Peers[4].Name)
	for time.Since(start) < *duration {
		c.RandomWrite([]string{"extra"})
		time.Sleep(time.Second)
	}
	if d, ok := m.RecoveryTime(at); ok {
		r.ReplacementSeconds = append(r.ReplacementSeconds, d.Seconds())
	}
	c.finish(&r, m, start)
}

// TestAllButOne: every peer but one dies; writes go on to the survivor;
// the others come back and learn them.
func TestAllButOne(t *testing.T) {
	c := New(t, bin, webImg, 4, 121, "s")
	if err := c.Apply(c.Peers[0], "web", 4, 31021); err != nil {
		t.Fatal(err)
	}
	c.Check(&Report{}, 90*time.Second)
	r := Report{Scenario: "all-but-one"}
	m := c.Watch(sample, c.serviceURL("web"))
	start := time.Now()
	for _, p := range c.Peers[1:] {
		p.KillMachine()
	}
	r.Faults = append(r.Faults, "kill -9 every peer but "+c.Peers[0].Name)
	at := time.Now()
	for time.Since(start) < *duration {
		c.RandomWrite([]string{"web", "extra"})
		time.Sleep(time.Second)
	}
	if d, ok := m.RecoveryTime(at); ok {
		r.ReplacementSeconds = append(r.ReplacementSeconds, d.Seconds())
	}
	for _, p := range c.Peers[1:] {
		p.Start()
	}
	r.Faults = append(r.Faults, "restart them")
	c.WaitAlive(c.Peers, 60*time.Second)
	c.finish(&r, m, start)
}

// TestPartitionHeals: a 2|3 partition; both sides take writes; it heals.
// During the partition each side runs the replicas it believes are its
// share: a replica may run twice (chorus stays available rather than
// consistent), and the figures say for how long.
func TestPartitionHeals(t *testing.T) {
	c := New(t, bin, webImg, 5, 131, "p")
	if err := c.Apply(c.Peers[0], "web", 4, 31031); err != nil {
		t.Fatal(err)
	}
	c.Check(&Report{}, 90*time.Second)
	r := Report{Scenario: "partition-2-3-and-heal"}
	m := c.Watch(sample, c.serviceURL("web"))
	start := time.Now()
	left, right := c.Peers[:2], c.Peers[2:]
	c.Partition(left, right)
	r.Faults = append(r.Faults, "partition p1,p2 | p3,p4,p5")
	for time.Since(start) < *duration {
		// Distinct objects per side, so that the last acknowledged write of
		// each is known; the same object on both sides is the
		// concurrent-write case the CRDT tests cover.
		_ = c.Scale(left[c.Rand.IntN(len(left))], "web", 1+c.Rand.IntN(4))
		_ = c.Apply(right[c.Rand.IntN(len(right))], "other", 1+c.Rand.IntN(3), 31032)
		time.Sleep(time.Second)
	}
	c.Heal()
	r.Faults = append(r.Faults, "heal")
	c.finish(&r, m, start)
}

// TestDegradedNetwork runs two faults of the network on one cluster, one
// after the other, each with its report.
//
// Lossy links: every peer loses 5% of the packets it sends to the others
// (dropped at random) while writes go to random peers. Nobody is killed,
// so a peer found dead is a false death: none may happen, and every
// acknowledged write holds.
//
// Asymmetric partition: the others' packets to one peer are lost, its
// packets to them still arrive (a route or firewall broken one way). Each
// side finds the other dead in the end; the majority keeps running every
// replica, writes go to both sides, and after the heal nothing
// acknowledged is lost and every replica runs once.
func TestDegradedNetwork(t *testing.T) {
	c := New(t, bin, webImg, 5, 43, "l")
	if err := c.Apply(c.Peers[0], "web", 4, 31051); err != nil {
		t.Fatal(err)
	}
	c.Check(&Report{}, 90*time.Second)

	r := Report{Scenario: "lossy-links-5pct"}
	m := c.Watch(sample, c.serviceURL("web"))
	start := time.Now()
	c.Lossy(c.Peers, 5)
	r.Faults = append(r.Faults, "5% of every peer's packets to the others lost")
	falseDeaths := map[string]bool{}
	for time.Since(start) < *duration {
		c.RandomWrite([]string{"a", "b"})
		for _, p := range c.Peers {
			for _, n := range notReady(p) {
				falseDeaths[n+" (seen by "+p.Name+")"] = true
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	c.Heal()
	r.Faults = append(r.Faults, "heal")
	for _, d := range slices.Sorted(maps.Keys(falseDeaths)) {
		r.Violations = append(r.Violations, "false death under 5% loss: "+d)
		t.Errorf("%s: a live peer found dead under 5%% loss: %s", r.Scenario, d)
	}
	c.finish(&r, m, start)

	r = Report{Scenario: "asymmetric-partition"}
	m = c.Watch(sample, c.serviceURL("web"))
	start = time.Now()
	lone, rest := c.Peers[4], c.Peers[:4]
	c.PartitionOneWay(rest, []*harness.Peer{lone})
	at := time.Now()
	r.Faults = append(r.Faults, "packets of l1-l4 to l5 lost; l5's to them arrive")
	for time.Since(start) < *duration {
		_ = c.Scale(rest[c.Rand.IntN(len(rest))], "web", 2+c.Rand.IntN(4))
		_ = c.Apply(lone, "other", 1+c.Rand.IntN(3), 31052)
		time.Sleep(time.Second)
	}
	if d, ok := m.RecoveryTime(at); ok {
		r.ReplacementSeconds = append(r.ReplacementSeconds, d.Seconds())
	}
	c.Heal()
	r.Faults = append(r.Faults, "heal")
	c.finish(&r, m, start)
}

// notReady returns the nodes peer p lists as not Ready.
func notReady(p *harness.Peer) []string {
	var l corev1.NodeList
	if err := p.GetJSON("/api/v1/nodes", &l); err != nil {
		return nil // a request lost to the fault: no evidence either way
	}
	var out []string
	for _, n := range l.Items {
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status != corev1.ConditionTrue {
				out = append(out, n.Name)
			}
		}
	}
	return out
}

// TestPausedPeerWakes: a peer hangs (SIGSTOP) long enough to be declared
// dead and lose its replicas, then wakes up and must stop its stale copies.
func TestPausedPeerWakes(t *testing.T) {
	c := New(t, bin, webImg, 4, 141, "z")
	if err := c.Apply(c.Peers[0], "web", 6, 31041); err != nil {
		t.Fatal(err)
	}
	c.Check(&Report{}, 90*time.Second)
	r := Report{Scenario: "paused-peer-wakes"}
	m := c.Watch(sample, c.serviceURL("web"))
	start := time.Now()
	victim := c.Peers[2]
	victim.Pause()
	at := time.Now()
	r.Faults = append(r.Faults, "SIGSTOP "+victim.Name)
	time.Sleep(max(*duration/2, 8*time.Second))
	if d, ok := m.RecoveryTime(at); ok {
		r.ReplacementSeconds = append(r.ReplacementSeconds, d.Seconds())
	}
	victim.Resume()
	r.Faults = append(r.Faults, "SIGCONT "+victim.Name)
	time.Sleep(*duration / 2)
	c.finish(&r, m, start)
}

// TestStatefulPodsUnderPartition: the rule chorus follows for stateful
// pods (docs/ARCHITECTURE.md, "Controllers that act once") holds under a
// partition. A peer running one pod of a StatefulSet is cut off from the
// two others: each side sees the other dead, the cut-off pod goes on
// running on its side, and neither side starts a second copy of any
// ordinal, also not the side that leads the set. After the heal every
// ordinal runs exactly once.
func TestStatefulPodsUnderPartition(t *testing.T) {
	c := New(t, bin, webImg, 3, 221, "q")
	f := filepath.Join(t.TempDir(), "db.yaml")
	if err := os.WriteFile(f, []byte(`apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  replicas: 3
  podManagementPolicy: Parallel
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
      - name: db
        image: example/web:1
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := c.Peers[0].CLI("apply", "-f", f); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	// copies returns, as peer p lists them, the nodes each pod of db runs
	// (or is listed) on, with its phase.
	copies := func(p *harness.Peer) (map[string][]string, error) {
		out, err := p.CLI("get", "pods", "-l", "app=db", "-o", `jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.phase}{"\n"}{end}`)
		if err != nil {
			return nil, err
		}
		m := map[string][]string{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(l); len(f) == 3 {
				m[f[0]] = append(m[f[0]], f[1]+"/"+f[2])
			}
		}
		return m, nil
	}
	onceEach := func(p *harness.Peer) (bool, string) {
		m, err := copies(p)
		if err != nil {
			return false, err.Error()
		}
		for _, name := range []string{"db-0", "db-1", "db-2"} {
			if len(m[name]) != 1 || !strings.HasSuffix(m[name][0], "/Running") {
				return false, fmt.Sprint(m)
			}
		}
		return len(m) == 3, fmt.Sprint(m)
	}
	harness.Eventually(t, 120*time.Second, "db-0..2 each Running once", func() (bool, string) { return onceEach(c.Peers[0]) })
	m, _ := copies(c.Peers[0])
	var victim *harness.Peer
	var victimPods []string
	for _, p := range c.Peers[1:] {
		for name, where := range m {
			if strings.HasPrefix(where[0], p.Name+"/") {
				victim = p
				victimPods = append(victimPods, name)
			}
		}
		if victim != nil {
			break
		}
	}
	if victim == nil {
		t.Fatalf("every pod of db runs on %s: %v", c.Peers[0].Name, m)
	}
	var rest []*harness.Peer
	for _, p := range c.Peers {
		if p != victim {
			rest = append(rest, p)
		}
	}
	c.Partition([]*harness.Peer{victim}, rest)
	// Both sides notice, then for 20 s neither starts a second copy.
	harness.Eventually(t, 60*time.Second, "the majority lists "+strings.Join(victimPods, ",")+" as lost", func() (bool, string) {
		m, err := copies(rest[0])
		if err != nil {
			return false, err.Error()
		}
		return strings.HasSuffix(m[victimPods[0]][0], "/Unknown"), fmt.Sprint(m)
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, p := range []*harness.Peer{rest[0], victim} {
			m, err := copies(p)
			if err != nil {
				t.Fatalf("list pods through %s: %v", p.Name, err)
			}
			for name, where := range m {
				running := 0
				for _, w := range where {
					if strings.HasSuffix(w, "/Running") {
						running++
					}
				}
				if len(where) > 1 || running > 1 {
					t.Fatalf("%s has %d copies as %s sees them: %v", name, len(where), p.Name, m)
				}
			}
			// The cut-off pod goes on running on its side.
			if p == victim {
				if w := m[victimPods[0]]; len(w) != 1 || w[0] != victim.Name+"/Running" {
					t.Fatalf("%s as %s sees it: %v", victimPods[0], victim.Name, w)
				}
			}
		}
		time.Sleep(time.Second)
	}
	c.Heal()
	// Each side rejoins the other in its own time (serf's reconnect).
	for _, p := range []*harness.Peer{c.Peers[0], victim} {
		harness.Eventually(t, 120*time.Second, "after the heal, as "+p.Name+" sees it, db-0..2 each Running once", func() (bool, string) { return onceEach(p) })
	}
}
