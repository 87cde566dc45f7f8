package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/tests/harness"
)

// deploymentYAML is the web deployment with n replicas and no probes'
// initial delay, so Ready follows Running by at most one probe period.
func deploymentYAML(name string, n int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %s}
spec:
  replicas: %d
  selector: {matchLabels: {app: %s}}
  template:
    metadata: {labels: {app: %s}}
    spec:
      containers:
      - name: web
        image: example/web:1
        env: [{name: PORT, value: "8080"}]
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 1}
`, name, n, name, name)
}

// countPods returns how many of the peer's pods are Running and how many
// are Ready.
func countPods(p *harness.Peer) (total, running, ready int) {
	pods, err := p.Pods("")
	if err != nil {
		return 0, 0, 0
	}
	for _, pod := range pods {
		total++
		if pod.Status.Phase == api.PodRunning {
			running++
		}
		if harness.IsReady(&pod) {
			ready++
		}
	}
	return
}

// BenchmarkApplyToRunning10 measures the time from `chorus apply` of a
// 10-replica deployment, image present, to all 10 Running and to all 10
// Ready, on one peer. Each iteration deletes the deployment and waits for
// its pods to be gone before the next apply.
func BenchmarkApplyToRunning10(b *testing.B) {
	p := startPeer(b, "bench-apply", "127.0.0.25")
	manifest := writeManifest(b, deploymentYAML("bench", 10))
	var runSum, readySum, runMax time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if _, err := p.CLI("apply", "-f", manifest); err != nil {
			b.Fatal(err)
		}
		var tRun time.Duration
		for {
			_, running, ready := countPods(p)
			if running == 10 && tRun == 0 {
				tRun = time.Since(start)
			}
			if ready == 10 {
				break
			}
			if time.Since(start) > 2*time.Minute {
				b.Fatalf("10 replicas not ready after 2m")
			}
			time.Sleep(10 * time.Millisecond)
		}
		tReady := time.Since(start)
		runSum += tRun
		readySum += tReady
		runMax = max(runMax, tRun)
		b.StopTimer()
		if _, err := p.CLI("delete", "-f", manifest); err != nil {
			b.Fatal(err)
		}
		for total, _, _ := countPods(p); total > 0; total, _, _ = countPods(p) {
			time.Sleep(100 * time.Millisecond)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(runSum.Milliseconds())/float64(b.N), "ms-to-running")
	b.ReportMetric(float64(runMax.Milliseconds()), "max-ms-to-running")
	b.ReportMetric(float64(readySum.Milliseconds())/float64(b.N), "ms-to-ready")
}

// BenchmarkAgentRSS reports the agent's resident memory 10 s after it
// started (no image, no pod), and 10 s after 50 pods of the web image are
// Ready (readiness probes every second): VmRSS and its anonymous (RssAnon:
// heap, stacks) and file-backed (RssFile: pages of the binary) parts, of
// the agent process only (its private containerd and the shims are not
// counted); the agent's CPU (user+sys) over the next 60 s; and the sizes
// of the two binaries. The peer is started with
// `chorus agent`, which must have become chorus-agent.
func BenchmarkAgentRSS(b *testing.B) {
	p := harness.NewPeer(b, testEnv.bin, "bench-rss", "127.0.0.26")
	p.Start()
	pid := agentPID(b, p)
	exe, err := os.Readlink("/proc/" + pid + "/exe")
	if err != nil {
		b.Fatal(err)
	}
	if filepath.Base(exe) != "chorus-agent" {
		b.Fatalf("the peer started with chorus agent runs %s, want chorus-agent", exe)
	}
	for _, bin := range []string{testEnv.bin, exe} {
		fi, err := os.Stat(bin)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(fi.Size())/1e6, "MB-"+filepath.Base(bin))
	}
	report := func(pods string) {
		time.Sleep(10 * time.Second)
		st := procStatus(b, pid)
		b.ReportMetric(float64(st["VmRSS"])/1024, "MiB-"+pods)
		b.ReportMetric(float64(st["RssAnon"])/1024, "MiB-anon-"+pods)
		b.ReportMetric(float64(st["RssFile"])/1024, "MiB-file-"+pods)
	}
	report("0-pods")
	if out, err := p.CLI("image", "load", testEnv.images["web"]); err != nil {
		b.Fatalf("image load: %v\n%s", err, out)
	}
	manifest := writeManifest(b, deploymentYAML("rss", 50))
	if _, err := p.CLI("apply", "-f", manifest); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for _, _, ready := countPods(p); ready < 50; _, _, ready = countPods(p) {
		if time.Now().After(deadline) {
			b.Fatal("50 pods not ready after 5m")
		}
		time.Sleep(time.Second)
	}
	report("50-pods")
	// CPU of the agent (user+sys, all its threads) over 60 s with the 50
	// pods running, in millicores.
	ticks := func() int {
		b.Helper()
		st, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			b.Fatal(err)
		}
		// Fields after the command name (which is in parentheses):
		// state is field 3, utime 14 and stime 15.
		f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:]))
		if len(f) < 13 {
			b.Fatalf("/proc/%s/stat: %q", pid, st)
		}
		u, err1 := strconv.Atoi(f[11])
		s, err2 := strconv.Atoi(f[12])
		if err1 != nil || err2 != nil {
			b.Fatalf("/proc/%s/stat: %q", pid, st)
		}
		return u + s
	}
	t0, c0 := time.Now(), ticks()
	time.Sleep(60 * time.Second)
	// USER_HZ is 100 on Linux: a tick is 10 ms.
	b.ReportMetric(float64(ticks()-c0)*10/float64(time.Since(t0).Milliseconds())*1000, "millicores-50-pods")
	if _, err := p.CLI("delete", "-f", manifest); err != nil {
		b.Fatal(err)
	}
	for total, _, _ := countPods(p); total > 0; total, _, _ = countPods(p) {
		time.Sleep(500 * time.Millisecond)
	}
}

// agentPID returns the pid of the peer's agent process, as it recorded it.
func agentPID(b testing.TB, p *harness.Peer) string {
	b.Helper()
	pid, err := os.ReadFile(p.DataDir + "/agent.pid")
	if err != nil {
		b.Fatal(err)
	}
	return strings.TrimSpace(string(pid))
}

// procStatus reads the memory lines of /proc/PID/status, in KiB by name
// (VmRSS, RssAnon, RssFile, ...).
func procStatus(b testing.TB, pid string) map[string]int {
	b.Helper()
	st, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]int{}
	for _, line := range strings.Split(string(st), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[2] == "kB" {
			n, err := strconv.Atoi(f[1])
			if err != nil {
				b.Fatalf("%s: %q", pid, line)
			}
			out[strings.TrimSuffix(f[0], ":")] = n
		}
	}
	for _, k := range []string{"VmRSS", "RssAnon", "RssFile"} {
		if _, ok := out[k]; !ok {
			b.Fatalf("/proc/%s/status has no %s", pid, k)
		}
	}
	return out
}

// rssKiB reads VmRSS of the peer's agent process.
func rssKiB(b testing.TB, p *harness.Peer) int {
	b.Helper()
	return procStatus(b, agentPID(b, p))["VmRSS"]
}
