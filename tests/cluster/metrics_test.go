package cluster

import (
	"context"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/chorus-sh/chorus/tests/images"
)

// loadBurnImage loads the burn test image (example/burn:1) into p; the
// other peers fetch it from p.
func loadBurnImage(t testing.TB, p *harness.Peer) {
	t.Helper()
	imgs, err := images.BuildAll(context.Background(), images.CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	if out, err := p.CLI("image", "load", imgs["burn"]); err != nil {
		t.Fatalf("image load: %v\n%s", err, out)
	}
}

// burnDeployment spins two threads under a CPU limit of 500m.
const burnDeployment = `apiVersion: v1
kind: Namespace
metadata: {name: mt}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: burn, namespace: mt}
spec:
  replicas: 1
  selector: {matchLabels: {app: burn}}
  template:
    metadata: {labels: {app: burn}}
    spec:
      containers:
      - name: burn
        image: example/burn:1
        env: [{name: THREADS, value: "2"}]
        resources:
          requests: {cpu: 100m, memory: 16Mi}
          limits: {cpu: 500m, memory: 64Mi}
`

// TestResourceMetrics: the real kubectl's top (and chorus top) through a
// peer that does not run the pod shows the CPU the pod burns (its limit,
// 500m, give or take), per container, with -A and -l; top nodes lists
// every peer; /metrics of the peer running it carries its usage series.
func TestResourceMetrics(t *testing.T) {
	peers := startCluster(t, 3, 231, "mt")
	loadBurnImage(t, peers[0])
	k := kubectlFor(t, peers[0])
	f := t.TempDir() + "/burn.yaml"
	if err := os.WriteFile(f, []byte(burnDeployment), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := k("apply", "-f", f); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	var pod, owner string
	harness.Eventually(t, 60*time.Second, "the burn pod runs", func() (bool, string) {
		pods, err := peers[0].Pods("mt")
		if err != nil {
			return false, err.Error()
		}
		for _, p := range pods {
			if p.Status.Phase == "Running" {
				pod, owner = p.Metadata.Name, p.Spec.NodeName
				return true, ""
			}
		}
		return false, "no running pod"
	})
	var other, runner *harness.Peer
	for _, p := range peers {
		if p.Name == owner {
			runner = p
		} else if other == nil {
			other = p
		}
	}
	if runner == nil || other == nil {
		t.Fatalf("pod %s runs on %q, not one of the peers", pod, owner)
	}
	ko := kubectlFor(t, other)

	// kubectl top pods through a peer that does not run it: the pod's CPU
	// within loose bounds of its limit (the first window may start before
	// the threads run: wait for a full one).
	cpuOf := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(pod) + `\s+(\d+)m\s+(\d+)Mi\s*$`)
	var last string
	deadline := time.Now().Add(45 * time.Second)
	for {
		out, err := ko("top", "pods", "-n", "mt")
		last = out
		if err == nil {
			if m := cpuOf.FindStringSubmatch(out); m != nil {
				if milli, _ := strconv.Atoi(m[1]); milli >= 300 && milli <= 600 {
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubectl top pods -n mt through %s: no CPU between 300m and 600m for %s after 45s:\n%s", other.Name, pod, last)
		}
		time.Sleep(time.Second)
	}
	t.Logf("kubectl top pods -n mt (through %s; the pod runs on %s):\n%s", other.Name, owner, last)

	must := func(out string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return out
	}
	for _, c := range []struct {
		args []string
		want *regexp.Regexp
	}{
		{[]string{"top", "pods", "-n", "mt", "--containers"}, regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(pod) + `\s+burn\s+\d+m\s+\d+Mi`)},
		{[]string{"top", "pods", "-A"}, regexp.MustCompile(`(?m)^mt\s+` + regexp.QuoteMeta(pod) + `\s+\d+m`)},
		{[]string{"top", "pods", "-n", "mt", "-l", "app=burn"}, regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(pod) + `\s`)},
		{[]string{"top", "pods", "-n", "mt", pod}, regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(pod) + `\s`)},
	} {
		out := must(ko(c.args...))
		if !c.want.MatchString(out) {
			t.Errorf("kubectl %s:\n%s", strings.Join(c.args, " "), out)
		}
		t.Logf("kubectl %s:\n%s", strings.Join(c.args, " "), out)
	}
	if out, err := ko("top", "pods", "-n", "mt", "-l", "app=nothing"); strings.Contains(out, pod) {
		t.Errorf("top pods -l app=nothing lists %s (%v):\n%s", pod, err, out)
	}

	// top nodes lists every peer, with a CPU% of its allocatable.
	out := must(ko("top", "nodes"))
	t.Logf("kubectl top nodes:\n%s", out)
	for _, p := range peers {
		if !regexp.MustCompile(`(?m)^` + p.Name + `\s+\d+m\s+\d+%\s+\d+Mi\s+\d+%`).MatchString(out) {
			t.Errorf("top nodes does not list %s:\n%s", p.Name, out)
		}
	}

	// chorus.sh/v1 through a peer that does not run the pod: every peer
	// with the figures it answers itself, and every peer's usage, the
	// pod's history on the peer that runs it.
	var pl api.PeerList
	if err := other.GetJSON("/apis/chorus.sh/v1/peers", &pl); err != nil {
		t.Fatal(err)
	}
	if len(pl.Items) != len(peers) {
		t.Errorf("peers through %s: %d, want %d", other.Name, len(pl.Items), len(peers))
	}
	for _, p := range pl.Items {
		if p.Status.Phase != api.PeerAlive || p.Status.Replication == nil || p.Status.Serving != (p.Name == other.Name) {
			t.Errorf("peer %s through %s: %+v", p.Name, other.Name, p.Status)
		}
	}
	out = must(ko("get", "peers", "-o", "wide"))
	for _, p := range peers {
		if !regexp.MustCompile(`(?m)^` + p.Name + `\s+Alive\s`).MatchString(out) {
			t.Errorf("kubectl get peers does not list %s Alive:\n%s", p.Name, out)
		}
	}
	var ul api.PeerUsageList
	if err := other.GetJSON("/apis/chorus.sh/v1/peerusages?history=true&namespace=mt", &ul); err != nil {
		t.Fatal(err)
	}
	hist := map[string]int{}
	for _, u := range ul.Items {
		if u.History != nil {
			hist[u.Name] = len(u.History.Pods["mt/"+pod])
		}
	}
	if len(ul.Items) != len(peers) || hist[runner.Name] == 0 || hist[other.Name] != 0 {
		t.Errorf("peer usages through %s: %d items, points of mt/%s by peer %v", other.Name, len(ul.Items), pod, hist)
	}

	// chorus top (kubectl built in).
	if out := must(other.CLI("top", "pods", "-n", "mt")); !strings.Contains(out, pod) {
		t.Errorf("chorus top pods -n mt:\n%s", out)
	}

	// /metrics of the peer running the pod.
	req, err := runner.Request("GET", "/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := runner.HTTPClient(10 * time.Second).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, series := range []string{
		`container_cpu_usage_seconds_total{container="burn",namespace="mt",pod="` + pod + `"} `,
		`container_memory_working_set_bytes{container="burn",namespace="mt",pod="` + pod + `"} `,
		"node_cpu_usage_seconds_total ", "node_memory_working_set_bytes ",
	} {
		if !strings.Contains(string(b), series) {
			t.Errorf("/metrics of %s has no %s", runner.Name, series)
		}
	}
	if _, err := k("delete", "namespace", "mt", "--wait=false"); err != nil {
		t.Log(err)
	}
}
