package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/lab"
	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/chorus-sh/chorus/tests/images"
)

// BenchmarkLabServices measures service throughput on the lab with wrk
// (HTTP requests of a small page, 16 connections kept alive, 4 s each,
// three rounds with the targets alternating, the median of each),
// from the first machine to one web pod on the third peer: straight to the
// pod's IP over the pod network; through the third peer's NodePort (the
// endpoint is local to it); through the second peer's NodePort (the
// endpoint is on another peer). Both service proxies in the same run, each
// on a fresh three-peer cluster: the kernel's (nftables, the default) and
// the user-space proxy (--service-proxy=userspace). The pod network is
// plain routes (--wireguard-port=0), so that the figures are the service
// path's alone (BenchmarkLabPodToPod measures WireGuard's cost).
//
//	go test -run '^$' -bench LabServices -benchtime 1x ./tests/cluster/
func BenchmarkLabServices(b *testing.B) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		b.Fatalf("wrk is needed (make deps installs it): %v", err)
	}
	for range b.N {
		for _, mode := range []string{"kernel", "userspace"} {
			direct, local, remote := labServiceRates(b, wrk, mode)
			b.ReportMetric(direct, mode+"_direct_req/s")
			b.ReportMetric(local, mode+"_nodeport_local_req/s")
			b.ReportMetric(remote, mode+"_nodeport_remote_req/s")
			b.ReportMetric(local/direct, mode+"_local_ratio")
			b.ReportMetric(remote/direct, mode+"_remote_ratio")
			b.Logf("%s: direct %.0f req/s; NodePort, local endpoint %.0f (%.2f); NodePort, endpoint on another peer %.0f (%.2f)",
				mode, direct, local, local/direct, remote, remote/direct)
		}
	}
}

func labServiceRates(b *testing.B, wrk, mode string) (direct, local, remote float64) {
	name := fmt.Sprintf("ls%d", os.Getpid()%10000)
	l := lab.Lab{Name: name, Subnet: netip.MustParsePrefix("10.214.206.0/24")}
	dir := b.TempDir()
	defer func() {
		_ = exec.Command(bin, "cluster", "delete", "--name", name, "--dir", dir).Run()
		_ = l.Delete()
	}()
	run := func(name string, args ...string) string {
		b.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
		if err != nil {
			b.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run(bin, "cluster", "create", "--name", name, "--peers", "3", "--subnet", l.Subnet.String(), "--dir", dir,
		"--agent-flag=--service-proxy="+mode, "--agent-flag=--wireguard-port=0")
	kc := filepath.Join(dir, name, "kubeconfig")
	img, err := images.Build(context.Background(), "web", images.CacheDir(), []string{"example/web:1"}, images.FormatDocker)
	if err != nil {
		b.Fatal(err)
	}
	run(bin, "--kubeconfig", kc, "image", "load", img)
	ms := l.Machines()
	manifest := filepath.Join(dir, "app.yaml")
	if err := os.WriteFile(manifest, []byte(fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      nodeSelector: {kubernetes.io/hostname: %s}
      containers:
      - name: web
        image: example/web:1
        env: [{name: PORT, value: "8080"}]
        readinessProbe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 1, failureThreshold: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  type: NodePort
  selector: {app: web}
  ports: [{port: 8080, nodePort: 31210}]
`, ms[2].Name)), 0o644); err != nil {
		b.Fatal(err)
	}
	k := harness.Kubectl(b)
	run(k, "--kubeconfig", kc, "apply", "-f", manifest)
	run(k, "--kubeconfig", kc, "rollout", "status", "deployment/web", "--timeout=120s")
	podIP := strings.TrimSpace(run(k, "--kubeconfig", kc, "get", "pods", "-l", "app=web", "-o", "jsonpath={.items[0].status.podIP}"))
	ready := func(url string) {
		// Every peer's service rules follow the endpoints within a second
		// or two: wait until the URL answers from the client machine.
		for deadline := time.Now().Add(30 * time.Second); ; {
			if err := exec.Command("nsenter", "--net="+ms[0].NetNS, "--", "curl", "-sf", "--max-time", "2", "-o", "/dev/null", url).Run(); err == nil {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s does not answer from %s", url, ms[0].Name)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	rate := func(url string) float64 {
		out := run("nsenter", "--net="+ms[0].NetNS, "--", wrk, "-t2", "-c16", "-d4s", url)
		m := regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`).FindStringSubmatch(out)
		if m == nil || strings.Contains(out, "Non-2xx") || strings.Contains(out, "Socket errors") {
			b.Fatalf("wrk %s said:\n%s", url, out)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	urls := []string{fmt.Sprintf("http://%s:8080/", podIP), fmt.Sprintf("http://%s:31210/", ms[2].Addr), fmt.Sprintf("http://%s:31210/", ms[1].Addr)}
	for _, u := range urls {
		ready(u)
	}
	// Three rounds, the targets alternating, the median of each: the
	// machine's other load falls on all three alike.
	rates := make([][]float64, len(urls))
	for range 3 {
		for i, u := range urls {
			rates[i] = append(rates[i], rate(u))
		}
	}
	med := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	return med(rates[0]), med(rates[1]), med(rates[2])
}
