package cluster

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/tests/harness"
)

const appYAML = `apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: cart, namespace: shop}
spec:
  replicas: 0
  selector: {matchLabels: {app: cart}}
  template:
    metadata: {labels: {app: cart}}
    spec:
      containers: [{name: cart, image: example/web:1}]
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  selector: {app: cart}
  ports: [{port: 80, targetPort: 8080}]
`

func manifest(t testing.TB, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "m.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func deploymentYAML(name string, replicas int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %s, namespace: shop}
spec:
  replicas: %d
  selector: {matchLabels: {app: %s}}
  template:
    metadata: {labels: {app: %s}}
    spec:
      containers: [{name: c, image: example/web:1}]
`, name, replicas, name, name)
}

// desired returns what a peer holds of the desired state, as canonical
// JSON without what each peer observes or assigns for itself (status,
// endpoints, its own address for a service, the API's resource versions).
func desired(p *harness.Peer) (string, error) {
	out, err := p.CLI("get", "namespaces,deployments,services", "-A", "-o", "json")
	if err != nil {
		return "", err
	}
	var l struct {
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &l); err != nil {
		return "", err
	}
	for _, it := range l.Items {
		delete(it, "status")
		if meta, ok := it["metadata"].(map[string]any); ok {
			delete(meta, "resourceVersion") // each peer's API numbers its own
		}
		if spec, ok := it["spec"].(map[string]any); ok {
			delete(spec, "clusterIP")
		}
		if m, ok := it["metadata"].(map[string]any); ok {
			if a, ok := m["annotations"].(map[string]any); ok {
				delete(a, "chorus.io/endpoints")
			}
		}
	}
	b, _ := json.Marshal(l.Items)
	return string(b), nil
}

func converged(t *testing.T, what string, peers ...*harness.Peer) string {
	t.Helper()
	var state string
	harness.Eventually(t, 30*time.Second, what, func() (bool, string) {
		states := map[string]string{}
		for _, p := range peers {
			s, err := desired(p)
			if err != nil {
				return false, err.Error()
			}
			states[p.Name] = s
			state = s
		}
		for _, p := range peers {
			if states[p.Name] != state {
				return false, fmt.Sprintf("peers differ: %v", states)
			}
		}
		return true, ""
	})
	return state
}

// nodesSeen returns the membership status (Alive, Suspect, Dead, Left) of
// each peer p knows, from the reason of its Node's Ready condition.
func nodesSeen(p *harness.Peer) map[string]string {
	out, err := p.CLI("get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].reason}{"\n"}{end}`)
	if err != nil {
		return nil
	}
	seen := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) >= 2 {
			seen[f[0]] = strings.TrimPrefix(f[1], "Peer")
		}
	}
	return seen
}

func waitNodes(t *testing.T, p *harness.Peer, want map[string]string) {
	t.Helper()
	harness.Eventually(t, 30*time.Second, "nodes seen by "+p.Name, func() (bool, string) {
		seen := nodesSeen(p)
		for n, st := range want {
			if seen[n] != st {
				return false, fmt.Sprintf("%v", seen)
			}
		}
		return len(seen) == len(want), fmt.Sprintf("%v", seen)
	})
}

func TestStateReplicatesAndSurvives(t *testing.T) {
	n1 := harness.NewPeer(t, bin, "c1", "127.0.0.31")
	n2 := harness.NewPeer(t, bin, "c2", "127.0.0.32", "--join", "127.0.0.31")
	n3 := harness.NewPeer(t, bin, "c3", "127.0.0.33", "--join", "127.0.0.32")
	for _, p := range []*harness.Peer{n1, n2, n3} {
		p.Start()
	}
	waitNodes(t, n3, map[string]string{"c1": "Alive", "c2": "Alive", "c3": "Alive"})

	if _, err := n1.CLI("apply", "-f", manifest(t, appYAML)); err != nil {
		t.Fatal(err)
	}
	converged(t, "apply on c1 reaches c3", n1, n3)
	out, err := n3.CLI("get", "deployment", "cart", "-n", "shop", "-o", "yaml")
	if err != nil || !strings.Contains(out, "chorus.io/last-writer: c1") || !strings.Contains(out, "chorus.io/version:") {
		t.Fatalf("get -o yaml on c3 lacks version and writer:\n%s %v", out, err)
	}

	// c2 dies; writes continue on c1 and c3; c2 comes back and catches up.
	n2.Kill()
	waitNodes(t, n1, map[string]string{"c1": "Alive", "c2": "Dead", "c3": "Alive"})
	if _, err := n1.CLI("apply", "-f", manifest(t, deploymentYAML("orders", 0))); err != nil {
		t.Fatal(err)
	}
	if _, err := n3.CLI("delete", "service", "cart", "-n", "shop"); err != nil {
		t.Fatal(err)
	}
	if _, err := n3.CLI("scale", "deployment", "cart", "-n", "shop", "--replicas=0"); err != nil {
		t.Fatal(err)
	}
	n2.Start()
	// Through c2 at once, the service deleted while it was down is applied
	// again: kubectl reads it first, and c2 must not answer from what it
	// held before it went down ("unchanged", nothing written, and the
	// delete it had not seen yet would win).
	svc := appYAML[strings.Index(appYAML, "apiVersion: v1\nkind: Service"):]
	if out, err := n2.CLI("apply", "-f", manifest(t, svc)); err != nil || !strings.Contains(out, "service/cart created") {
		t.Fatalf("apply through c2 right after its restart of the service deleted meanwhile: %q %v", out, err)
	}
	state := converged(t, "c2 catches up after a restart", n1, n2, n3)
	if !strings.Contains(state, `"orders"`) || !strings.Contains(state, `"kind":"Service"`) {
		t.Fatalf("converged state misses the writes made while c2 was down or right after: %s", state)
	}

	// Every peer stops; every peer starts again: nothing is lost.
	for _, p := range []*harness.Peer{n1, n2, n3} {
		p.Stop()
	}
	for _, p := range []*harness.Peer{n1, n2, n3} {
		p.Start()
	}
	if after := converged(t, "state after a full restart", n1, n2, n3); after != state {
		t.Fatalf("state changed across a full restart:\nbefore %s\nafter  %s", state, after)
	}

	// A graceful leave shows as Left, not Dead.
	if out, err := n2.CLI("leave"); err != nil || !strings.Contains(out, "c2 left") {
		t.Fatalf("leave: %q %v", out, err)
	}
	waitNodes(t, n1, map[string]string{"c1": "Alive", "c2": "Left", "c3": "Alive"})
}

func TestConcurrentScaleAndImageBothSurvive(t *testing.T) {
	n1 := harness.NewPeer(t, bin, "s1", "127.0.0.34")
	n2 := harness.NewPeer(t, bin, "s2", "127.0.0.35", "--join", "127.0.0.34")
	n1.Start()
	n2.Start()
	waitNodes(t, n2, map[string]string{"s1": "Alive", "s2": "Alive"})
	if _, err := n1.CLI("apply", "-f", manifest(t, appYAML)); err != nil {
		t.Fatal(err)
	}
	converged(t, "first apply", n1, n2)
	// At the same time: scale on s1, a new image on s2.
	errs := make(chan error, 2)
	go func() { _, err := n1.CLI("scale", "deployment", "cart", "-n", "shop", "--replicas=0"); errs <- err }()
	go func() {
		_, err := n2.CLI("apply", "-f", manifest(t, strings.Replace(appYAML, "example/web:1", "example/web:2", 1)))
		errs <- err
	}()
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	state := converged(t, "concurrent writes merged", n1, n2)
	if !strings.Contains(state, "example/web:2") {
		t.Fatalf("the image change was lost: %s", state)
	}

	// An object made through one peer is changed at once through the
	// other: kubectl label reads it first, and a peer that has not
	// received it yet asks the others before it answers NotFound (five
	// tries in thirty failed so when reads did not).
	for i := range 10 {
		name := fmt.Sprintf("cm%d", i)
		if out, err := n2.CLI("create", "configmap", name, "-n", "shop", "--from-literal=k=v"); err != nil {
			t.Fatalf("create configmap %s through s2: %v\n%s", name, err, out)
		}
		if out, err := n1.CLI("label", "configmap", name, "-n", "shop", "at=once"); err != nil {
			t.Fatalf("label configmap %s through s1 right after it was made through s2: %v\n%s", name, err, out)
		}
	}
}

func TestWrongGossipKeyIsRefused(t *testing.T) {
	key1, err := exec.Command(bin, "keygen").Output()
	if err != nil {
		t.Fatal(err)
	}
	key2, _ := exec.Command(bin, "keygen").Output()
	k1, k2 := strings.TrimSpace(string(key1)), strings.TrimSpace(string(key2))
	n1 := harness.NewPeer(t, bin, "k1", "127.0.0.37", "--gossip-key", k1)
	n2 := harness.NewPeer(t, bin, "k2", "127.0.0.38", "--gossip-key", k1, "--join", "127.0.0.37")
	bad := harness.NewPeer(t, bin, "k3", "127.0.0.39", "--gossip-key", k2, "--join", "127.0.0.37")
	n1.Start()
	n2.Start()
	bad.Start()
	waitNodes(t, n1, map[string]string{"k1": "Alive", "k2": "Alive"})
	if _, err := n1.CLI("apply", "-f", manifest(t, appYAML)); err != nil {
		t.Fatal(err)
	}
	converged(t, "k2 gets the state", n1, n2)
	// Give gossip and anti-entropy several rounds to leak, then check nothing did.
	time.Sleep(6 * time.Second)
	if seen := nodesSeen(bad); len(seen) != 1 {
		t.Fatalf("the peer with the wrong key sees %v", seen)
	}
	if seen := nodesSeen(n1); len(seen) != 2 {
		t.Fatalf("k1 sees %v: the wrong-key peer got in", seen)
	}
	if out, _ := bad.CLI("get", "deployments", "-A"); strings.Contains(out, "cart") {
		t.Fatalf("the peer with the wrong key learned the state:\n%s", out)
	}
}

func TestPeersDiscoverEachOther(t *testing.T) {
	// mDNS needs multicast on the loopback interface, off by default.
	if out, err := exec.Command("ip", "link", "set", "lo", "multicast", "on").CombinedOutput(); err != nil {
		t.Fatalf("enable multicast on lo: %v %s", err, out)
	}
	t.Log("multicast enabled on lo for mDNS discovery")
	key, err := exec.Command(bin, "keygen").Output()
	if err != nil {
		t.Fatal(err)
	}
	k := strings.TrimSpace(string(key))
	a := harness.NewPeer(t, bin, "d1", "127.0.0.41", "--gossip-key", k, "--discover")
	b := harness.NewPeer(t, bin, "d2", "127.0.0.42", "--gossip-key", k, "--discover")
	a.Start()
	b.Start()
	waitNodes(t, a, map[string]string{"d1": "Alive", "d2": "Alive"})
	if _, err := a.CLI("apply", "-f", manifest(t, appYAML)); err != nil {
		t.Fatal(err)
	}
	converged(t, "state shared with a discovered peer", a, b)
}
