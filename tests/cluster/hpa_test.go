package cluster

import (
	"context"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/placement"
	"github.com/chorus-sh/chorus/tests/harness"
)

// phpApache is the CPU-bound web deployment of Kubernetes' HPA walkthrough
// (there php-apache; here the web test image's /burn page), with requests
// and limits, and a NodePort service in front of it.
const phpApache = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: php-apache
spec:
  selector:
    matchLabels: {run: php-apache}
  template:
    metadata:
      labels: {run: php-apache}
    spec:
      containers:
      - name: php-apache
        image: example/web:1
        ports: [{containerPort: 8080}]
        resources:
          limits: {cpu: 500m}
          requests: {cpu: 200m}
---
apiVersion: v1
kind: Service
metadata:
  name: php-apache
spec:
  type: NodePort
  selector: {run: php-apache}
  ports: [{port: 80, targetPort: 8080, nodePort: 30234}]
`

// TestHorizontalPodAutoscaler reproduces Kubernetes' HPA walkthrough with
// the real kubectl: `kubectl autoscale` (autoscaling/v1) a CPU-bound
// deployment at 50% of its cpu request, load it through its Service:
// replicas rise, `kubectl top` shows the CPU; the peer that decides for
// the HPA is killed mid-way and another goes on; once the load stops the
// replicas return to the minimum after the scale-down window. Bad HPAs get
// a clear error, condition or event and never scale anything.
func TestHorizontalPodAutoscaler(t *testing.T) {
	peers := startCluster(t, 3, 234, "hs")
	loadWebImages(t, peers[0])
	ks := []func(...string) (string, error){kubectlFor(t, peers[0]), kubectlFor(t, peers[1]), kubectlFor(t, peers[2])}
	must, apply, jsonpath := kubectlMust(t), kubectlApply(t), kubectlJSONPath(t)
	k1 := ks[0]

	apply(k1, phpApache)
	must(k1("rollout", "status", "deployment/php-apache", "--timeout=120s"))
	must(k1("autoscale", "deployment", "php-apache", "--cpu-percent=50", "--min=1", "--max=4"))
	// A short scale-down window, so the test need not wait 5 minutes;
	// patched through autoscaling/v2 (kubectl's preferred version).
	must(k1("patch", "hpa", "php-apache", "--type=merge", "-p", `{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":30}}}}`))
	if got := jsonpath(k1, "get", "horizontalpodautoscalers.v1.autoscaling", "php-apache", "-o", "jsonpath={.spec.targetCPUUtilizationPercentage}"); got != "50" {
		t.Fatalf("autoscaling/v1 view: targetCPUUtilizationPercentage %q", got)
	}
	harness.Eventually(t, 90*time.Second, "the HPA measures the idle deployment", func() (bool, string) {
		out, _ := k1("get", "hpa", "php-apache")
		return strings.Contains(out, "cpu: ") && !strings.Contains(out, "<unknown>"), out
	})

	// Load: two clients asking for 100 ms of CPU each, one request after
	// another, through peer 1's NodePort, until stopped (at most 4 minutes).
	loadStart := time.Now()
	requests, stopLoad := burnLoad(peers[0].Bind+":30234", 2, 4*time.Minute)
	defer stopLoad()

	replicas := func(k func(...string) (string, error)) int {
		n, _ := strconv.Atoi(jsonpath(k, "get", "deployment", "php-apache", "-o", "jsonpath={.spec.replicas}"))
		return n
	}
	harness.Eventually(t, 150*time.Second, "the HPA scales php-apache up under load", func() (bool, string) {
		out, _ := k1("get", "hpa", "php-apache")
		return replicas(k1) > 1, out
	})
	t.Logf("first scale up %v after the load started (%d requests)", time.Since(loadStart).Round(time.Second), requests())
	if out := must(k1("top", "pods", "-l", "run=php-apache")); !strings.Contains(out, "m ") {
		t.Fatalf("kubectl top pods shows no CPU:\n%s", out)
	}
	if out := must(k1("describe", "hpa", "php-apache")); !strings.Contains(out, "SuccessfulRescale") ||
		!strings.Contains(out, "cpu resource utilization (percentage of request) above target") {
		t.Fatalf("describe hpa: no SuccessfulRescale event:\n%s", out)
	}

	// Kill the peer that decides for the HPA (not peer 1, which the test
	// and the load talk to: then the next one in rank).
	names := []string{"hs1", "hs2", "hs3"}
	decider := placement.Leader("HorizontalPodAutoscaler/default/php-apache", names)
	victim := 1
	for i, n := range names {
		if n == decider && i != 0 {
			victim = i
		}
	}
	if names[victim] != decider {
		t.Logf("peer 1 decides for the HPA; killing %s instead (scaling must go on as well)", names[victim])
	}
	peers[victim].Kill()
	top := replicas(k1)
	// A handover makes no burst: never above max, and not below what the
	// load needs while it lasts.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if n := replicas(k1); n > 4 || n < top && n < 2 {
			t.Fatalf("after the handover replicas went from %d to %d under load", top, n)
		}
		time.Sleep(2 * time.Second)
	}
	stopLoad()
	harness.Eventually(t, 180*time.Second, "replicas return to 1 once the load stopped and the scale-down window passed", func() (bool, string) {
		out, _ := k1("get", "hpa", "php-apache")
		return replicas(k1) == 1, out
	})
	if out := must(k1("describe", "hpa", "php-apache")); !strings.Contains(out, "All metrics below target") {
		t.Fatalf("describe hpa: no scale down event:\n%s", out)
	}

	// Bad HPAs: a missing target, pods without requests, min > max.
	apply(k1, `apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: ghost}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: ghost}
  maxReplicas: 3
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: norequests}
spec:
  replicas: 2
  selector: {matchLabels: {app: norequests}}
  template:
    metadata: {labels: {app: norequests}}
    spec:
      containers: [{name: web, image: example/web:1}]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: norequests}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: norequests}
  minReplicas: 1
  maxReplicas: 3
  metrics: [{type: Resource, resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}}]
`)
	harness.Eventually(t, 90*time.Second, "the bad HPAs say why they do not scale", func() (bool, string) {
		ghost, _ := k1("describe", "hpa", "ghost")
		noreq, _ := k1("describe", "hpa", "norequests")
		return strings.Contains(ghost, "FailedGetScale") && strings.Contains(noreq, "missing request for cpu"), ghost + noreq
	})
	if n := jsonpath(k1, "get", "deployment", "norequests", "-o", "jsonpath={.spec.replicas}"); n != "2" {
		t.Fatalf("an HPA that cannot measure changed replicas to %s", n)
	}
	dir := t.TempDir() + "/inverted.yaml"
	if err := os.WriteFile(dir, []byte(`apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: inverted}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: norequests}
  minReplicas: 5
  maxReplicas: 2
`), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := k1("apply", "-f", dir); err == nil || !strings.Contains(out, "spec.minReplicas") {
		t.Fatalf("an HPA with min > max was accepted or not explained: %v\n%s", err, out)
	}
}

// burnLoad starts clients that ask addr's /burn page for 100 ms of CPU, one
// request after another, until stop is called or limit passes. stop waits
// for the clients to end; requests counts the answers.
func burnLoad(addr string, clients int, limit time.Duration) (requests func() int64, stop func()) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	var wg sync.WaitGroup
	var n atomic.Int64
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Timeout: 10 * time.Second}
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/burn?ms=100", nil)
				resp, err := c.Do(req)
				if err != nil {
					select {
					case <-ctx.Done():
					case <-time.After(100 * time.Millisecond):
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				n.Add(1)
			}
		}()
	}
	return n.Load, func() { cancel(); wg.Wait() }
}

// BenchmarkHPAScaleUp measures the time from the start of a load on the
// walkthrough's deployment (one replica, 50% cpu target) to the first
// scale up by its HPA, through three real peers. Run with -benchtime=1x.
func BenchmarkHPAScaleUp(b *testing.B) {
	peers := startCluster(b, 3, 237, "hb")
	loadWebImages(b, peers[0])
	k := kubectlFor(b, peers[0])
	f := b.TempDir() + "/php.yaml"
	if err := os.WriteFile(f, []byte(strings.ReplaceAll(phpApache, "30234", "30237")), 0o644); err != nil {
		b.Fatal(err)
	}
	for _, args := range [][]string{{"apply", "-f", f}, {"rollout", "status", "deployment/php-apache", "--timeout=120s"},
		{"autoscale", "deployment", "php-apache", "--cpu-percent=50", "--min=1", "--max=4"}} {
		if out, err := k(args...); err != nil {
			b.Fatalf("kubectl %v: %v\n%s", args, err, out)
		}
	}
	var total time.Duration
	for i := 0; i < b.N; i++ {
		harness.Eventually(b, 90*time.Second, "the HPA measures the idle deployment", func() (bool, string) {
			out, _ := k("get", "hpa", "php-apache")
			return strings.Contains(out, "cpu: ") && !strings.Contains(out, "<unknown>") && strings.Contains(out, " 1 "), out
		})
		start := time.Now()
		_, stop := burnLoad(peers[0].Bind+":30237", 2, 3*time.Minute)
		harness.Eventually(b, 150*time.Second, "a scale up", func() (bool, string) {
			out, _ := k("get", "deployment", "php-apache", "-o", "jsonpath={.spec.replicas}")
			return strings.TrimSpace(out) != "1", out
		})
		total += time.Since(start)
		stop()
		if _, err := k("scale", "deployment", "php-apache", "--replicas=1"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/first-scale-up")
}
