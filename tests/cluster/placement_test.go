package cluster

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/chorus-sh/chorus/tests/images"
)

var web10 = harness.WebDeployment("web", 10)

// startFive starts five peers with the web image loaded on each.
func startFive(t *testing.T) []*harness.Peer {
	t.Helper()
	imgs, err := images.BuildAll(context.Background(), images.CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	var peers []*harness.Peer
	for i := 1; i <= 5; i++ {
		zone := "a"
		if i > 3 {
			zone = "b"
		}
		args := []string{"--label", "zone=" + zone}
		if i > 1 {
			args = append(args, "--join", "127.0.0.61")
		}
		p := harness.NewPeer(t, bin, fmt.Sprintf("p%d", i), fmt.Sprintf("127.0.0.6%d", i), args...)
		p.Start()
		if _, err := p.CLI("image", "load", imgs["web"]); err != nil {
			t.Fatal(err)
		}
		peers = append(peers, p)
	}
	want := map[string]string{}
	for _, p := range peers {
		want[p.Name] = "Alive"
	}
	waitNodes(t, peers[0], want)
	return peers
}

const daemons = `apiVersion: v1
kind: Namespace
metadata: {name: infra}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: infra}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: a, image: example/web:1, env: [{name: PORT, value: "8080"}]}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: zoneb, namespace: infra}
spec:
  selector: {matchLabels: {app: zoneb}}
  template:
    metadata: {labels: {app: zoneb}}
    spec:
      nodeSelector: {zone: b}
      containers: [{name: z, image: example/web:1, env: [{name: PORT, value: "8080"}]}]
`

// daemonNodes returns, for each daemon set in infra, the nodes running a
// Ready pod of it.
func daemonNodes(p *harness.Peer) (map[string][]string, error) {
	pods, err := p.Pods("infra")
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	for _, pod := range pods {
		if harness.IsReady(&pod) {
			ds := pod.Metadata.Labels["chorus.io/daemonset"]
			out[ds] = append(out[ds], pod.Spec.NodeName)
		}
	}
	for _, v := range out {
		sort.Strings(v)
	}
	return out, nil
}

func waitDaemons(t *testing.T, p *harness.Peer, want map[string][]string, what string) {
	t.Helper()
	harness.Eventually(t, 90*time.Second, what, func() (bool, string) {
		got, err := daemonNodes(p)
		if err != nil {
			return false, err.Error()
		}
		return fmt.Sprint(got) == fmt.Sprint(want), fmt.Sprint(got)
	})
}

// placementOf returns, from p's view, node -> ready replica names, and any
// replica that runs twice.
func placementOf(p *harness.Peer) (byNode map[string][]string, ready int, dup []string, err error) {
	pods, err := p.Pods("default")
	if err != nil {
		return nil, 0, nil, err
	}
	byNode = map[string][]string{}
	count := map[string]int{}
	for _, pod := range pods {
		if pod.Spec.NodeName == "" {
			continue
		}
		count[pod.Metadata.Name]++
		if harness.IsReady(&pod) && pod.Status.Phase == api.PodRunning {
			ready++
			byNode[pod.Spec.NodeName] = append(byNode[pod.Spec.NodeName], pod.Metadata.Name)
		}
	}
	for n, c := range count {
		if c > 1 {
			dup = append(dup, n)
		}
	}
	sort.Strings(dup)
	return byNode, ready, dup, nil
}

// waitExactlyOnce waits until p sees want Ready replicas, each once.
func waitExactlyOnce(t *testing.T, p *harness.Peer, want int, what string) map[string][]string {
	t.Helper()
	var byNode map[string][]string
	harness.Eventually(t, 90*time.Second, what, func() (bool, string) {
		var ready int
		var dup []string
		var err error
		byNode, ready, dup, err = placementOf(p)
		if err != nil {
			return false, err.Error()
		}
		return ready == want && len(dup) == 0, fmt.Sprintf("%d ready, duplicates %v, placement %v", ready, dup, byNode)
	})
	return byNode
}

func TestReplicasRunOnceAndFailOver(t *testing.T) {
	peers := startFive(t)
	if _, err := peers[0].CLI("apply", "-f", manifest(t, web10)); err != nil {
		t.Fatal(err)
	}
	if _, err := peers[0].CLI("apply", "-f", manifest(t, daemons)); err != nil {
		t.Fatal(err)
	}
	waitDaemons(t, peers[1], map[string][]string{"agent": {"p1", "p2", "p3", "p4", "p5"}, "zoneb": {"p4", "p5"}},
		"a daemon pod on every peer, and on each zone=b peer")

	// A replica that fits nowhere is Pending, with the reason in describe.
	nowhere := strings.Replace(strings.Replace(daemons[:strings.Index(daemons, "---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: zoneb")],
		"kind: DaemonSet", "kind: Deployment", 1), "metadata: {name: agent", "metadata: {name: nowhere", 1)
	nowhere = strings.Replace(nowhere, "spec:\n  selector", "spec:\n  replicas: 1\n  selector", 1)
	nowhere = strings.Replace(nowhere, "    spec:\n      containers", "    spec:\n      nodeSelector: {zone: c}\n      containers", 1)
	if _, err := peers[0].CLI("apply", "-f", manifest(t, nowhere)); err != nil {
		t.Fatal(err)
	}
	var pendingName string
	harness.Eventually(t, 20*time.Second, "a Pending pod", func() (bool, string) {
		out, _ := peers[3].CLI("get", "pods", "-n", "infra", "-o", "wide")
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 2 && strings.HasPrefix(f[0], "nowhere-") && f[2] == "Pending" {
				pendingName = f[0]
				return true, ""
			}
		}
		return false, out
	})
	desc, err := peers[3].CLI("describe", "pod", pendingName, "-n", "infra")
	if err != nil || !strings.Contains(desc, "FailedScheduling") || !strings.Contains(desc, "node selector") {
		t.Fatalf("describe of a pending pod lacks the reason:\n%s %v", desc, err)
	}
	if _, err := peers[0].CLI("delete", "deployment", "nowhere", "-n", "infra"); err != nil {
		t.Fatal(err)
	}
	byNode := waitExactlyOnce(t, peers[4], 10, "10 replicas, each once")
	if len(byNode) < 4 {
		t.Errorf("10 replicas on 5 peers use only %d peers: %v", len(byNode), byNode)
	}
	// Every peer answers the same.
	for _, p := range peers {
		waitExactlyOnce(t, p, 10, "the same view from "+p.Name)
	}

	// A machine dies with its containers: its replicas come back elsewhere.
	victim := peers[2]
	lost := len(byNode[victim.Name])
	victim.KillMachine()
	start := time.Now()
	harness.Eventually(t, 90*time.Second, "10 replicas again after "+victim.Name+" died", func() (bool, string) {
		byNode, ready, dup, err := placementOf(peers[0])
		if err != nil {
			return false, err.Error()
		}
		_, onVictim := byNode[victim.Name]
		return ready == 10 && len(dup) == 0 && !onVictim, fmt.Sprintf("%d ready, duplicates %v, placement %v", ready, dup, byNode)
	})
	t.Logf("%d replicas of %s Ready elsewhere %s after kill -9", lost, victim.Name, time.Since(start).Round(100*time.Millisecond))
	if seen := nodesSeen(peers[0]); seen[victim.Name] != "Dead" {
		t.Errorf("the killed peer is %q, want Dead", seen[victim.Name])
	}
	waitDaemons(t, peers[0], map[string][]string{"agent": {"p1", "p2", "p4", "p5"}, "zoneb": {"p4", "p5"}},
		"daemon pods follow the death of p3")

	// It comes back: still exactly 10 once converged.
	victim.Start()
	waitNodes(t, peers[0], map[string]string{"p1": "Alive", "p2": "Alive", "p3": "Alive", "p4": "Alive", "p5": "Alive"})
	time.Sleep(3 * time.Second)
	waitExactlyOnce(t, peers[0], 10, "10 replicas once the dead peer is back")
	waitDaemons(t, peers[0], map[string][]string{"agent": {"p1", "p2", "p3", "p4", "p5"}, "zoneb": {"p4", "p5"}},
		"a daemon pod on p3 again once it is back")

	// Drain a peer: the Ready count never drops below 10 while it empties.
	target := peers[1]
	done := make(chan error, 1)
	go func() {
		_, err := peers[0].CLI("drain", target.Name, "--timeout", "90s")
		done <- err
	}()
	minReady := 10
	deadline := time.Now().Add(120 * time.Second)
	for drained := false; !drained; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("drain: %v", err)
			}
			drained = true
		case <-time.After(200 * time.Millisecond):
		}
		_, ready, _, err := placementOf(peers[0])
		if err == nil && ready < minReady {
			minReady = ready
		}
		if time.Now().After(deadline) {
			t.Fatal("drain did not finish in 120s")
		}
	}
	if minReady < 10 {
		t.Errorf("Ready replicas dropped to %d during the drain", minReady)
	}
	byNode = waitExactlyOnce(t, peers[0], 10, "10 replicas after the drain")
	if _, ok := byNode[target.Name]; ok {
		t.Fatalf("drained peer still runs replicas: %v", byNode)
	}
	if out, err := peers[0].CLI("uncordon", target.Name); err != nil || !strings.Contains(out, "uncordoned") {
		t.Fatalf("uncordon: %q %v", out, err)
	}
}
