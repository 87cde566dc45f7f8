package cluster

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/tests/harness"
)

// idlePods is a deployment of n web pods without probes (a probe every
// second would cost more CPU than what is measured).
func idlePods(n int) string {
	return `apiVersion: v1
kind: Namespace
metadata: {name: bench}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: idle, namespace: bench}
spec:
  replicas: ` + strconv.Itoa(n) + `
  selector: {matchLabels: {app: idle}}
  template:
    metadata: {labels: {app: idle}}
    spec:
      containers:
      - name: web
        image: example/web:1
        env: [{name: PORT, value: "8080"}]
`
}

// peerCPU returns the CPU time (user + system) used so far by a peer's
// own processes: the agent, its private containerd, and the containerd
// shims of its namespace (the sampler's RPCs cost time in all three); not
// the containers' processes.
func peerCPU(b testing.TB, p *harness.Peer) time.Duration {
	pidb, err := os.ReadFile(filepath.Join(p.DataDir, "agent.pid"))
	if err != nil {
		b.Fatal(err)
	}
	agent := strings.TrimSpace(string(pidb))
	ents, _ := os.ReadDir("/proc")
	var ticks int64
	for _, e := range ents {
		pid := e.Name()
		if _, err := strconv.Atoi(pid); err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		comm := string(stat[bytes.IndexByte(stat, '(')+1 : i])
		f := strings.Fields(string(stat[i+2:])) // state ppid ... utime(12) stime(13)
		if len(f) < 13 {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + pid + "/cmdline")
		mine := pid == agent ||
			(comm == "containerd" && f[1] == agent) ||
			(strings.HasPrefix(comm, "containerd-shim") && bytes.Contains(cmdline, []byte("chorus-"+p.Name+"\x00")))
		if !mine {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * 10 * time.Millisecond // USER_HZ = 100
}

// BenchmarkMetricsCost measures what resource metrics cost with 50 pods on
// 3 peers: the bytes per second each peer sends while something (an
// autoscaler) lists the cluster's pod metrics through peer 1 every 15 s,
// against the same window with no query; the size of one peer's answer;
// and the CPU of each peer's agent, containerd and shims with the sampler
// on (every 5 s) against the same peers restarted with it off.
func BenchmarkMetricsCost(b *testing.B) {
	const pods = 50
	const window = 60 * time.Second
	peers := startCluster(b, 3, 231, "mb")
	loadWebImages(b, peers[0])
	if err := peers[0].Apply([]byte(idlePods(pods))); err != nil {
		b.Fatal(err)
	}
	harness.Eventually(b, 5*time.Minute, "50 pods run", func() (bool, string) {
		ps, err := peers[0].Pods("bench")
		if err != nil {
			return false, err.Error()
		}
		n := 0
		for _, p := range ps {
			if p.Status.Phase == "Running" {
				n++
			}
		}
		return n == pods, strconv.Itoa(n) + " running"
	})
	time.Sleep(15 * time.Second) // two samples of every container

	// One peer's answer to another for its share of the pods (its
	// PeerUsage, asked as a peer asks).
	var answer int
	for _, p := range peers[1:] {
		req, _ := p.Request("GET", "/apis/chorus.sh/v1/peerusages?namespace=bench", nil)
		req.Header.Set("X-Chorus-Forwarded-By", peers[0].Name)
		resp, err := p.HTTPClient(10 * time.Second).Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		answer = max(answer, buf.Len())
	}
	b.ReportMetric(float64(answer), "answer-bytes-max")

	var ips []string
	for _, p := range peers {
		ips = append(ips, p.Bind)
	}
	a := newSentAcct(b, ips)
	rate := func(query bool) (float64, float64) {
		before := a.bytes(b)
		end := time.Now().Add(window)
		for query && time.Now().Before(end) {
			var l struct {
				Items []any `json:"items"`
			}
			if err := peers[0].GetJSON("/apis/metrics.k8s.io/v1beta1/namespaces/bench/pods", &l); err != nil || len(l.Items) != pods {
				b.Fatalf("pod metrics: %d items, %v", len(l.Items), err)
			}
			time.Sleep(15 * time.Second)
		}
		time.Sleep(time.Until(end))
		after := a.bytes(b)
		var worst float64
		for _, ip := range ips[1:] { // the answering peers
			worst = max(worst, float64(after[ip]-before[ip])/window.Seconds())
		}
		return worst, float64(after[ips[0]]-before[ips[0]]) / window.Seconds()
	}
	idle, _ := rate(false)
	queried, _ := rate(true)
	b.ReportMetric(idle, "sent-B/s-no-query")
	b.ReportMetric(queried, "sent-B/s-query-15s")

	cpu := func() float64 {
		var before []time.Duration
		for _, p := range peers {
			before = append(before, peerCPU(b, p))
		}
		time.Sleep(window)
		var worst float64
		for i, p := range peers {
			worst = max(worst, float64(peerCPU(b, p)-before[i])/float64(window)*1000)
		}
		return worst
	}
	on := cpu()
	for _, p := range peers {
		p.Stop()
		p.Args = append(p.Args, "--metrics-interval=0")
	}
	for _, p := range peers {
		p.Start()
	}
	time.Sleep(15 * time.Second) // adoption settles
	off := cpu()
	b.ReportMetric(on, "cpu-millicores-sampler-on")
	b.ReportMetric(off, "cpu-millicores-sampler-off")
}
