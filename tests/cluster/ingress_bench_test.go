package cluster

import (
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/chorus-sh/chorus/tests/images"
)

// wrkOK runs wrk (2 threads, 32 connections) against url for d and
// returns the requests per second and the mean latency; any answer that
// is not 2xx or 3xx fails the benchmark.
func wrkOK(b *testing.B, url string, d time.Duration) (float64, string) {
	b.Helper()
	out, err := exec.Command("wrk", "-t2", "-c32", "-d"+strconv.Itoa(int(d.Seconds()))+"s", url).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk: %v %s", err, out)
	}
	if strings.Contains(string(out), "Non-2xx or 3xx responses") || strings.Contains(string(out), "Socket errors") {
		b.Fatalf("wrk %s: failed requests:\n%s", url, out)
	}
	rps, lat := 0.0, ""
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && f[0] == "Requests/sec:" {
			rps, _ = strconv.ParseFloat(f[1], 64)
		}
		if len(f) >= 2 && f[0] == "Latency" {
			lat = f[1]
		}
	}
	if rps == 0 {
		b.Fatalf("no Requests/sec in wrk's output:\n%s", out)
	}
	return rps, lat
}

// BenchmarkIngressPath compares, with wrk (2 threads, 32 kept-alive
// connections, 10 s per run, the targets alternating, two rounds), HTTP
// requests to one pod directly, through the NodePort of its peer, and
// through the Ingress: on the pod's peer over HTTP and HTTPS, and on
// another peer (a hop over mutual TLS to the pod's peer).
func BenchmarkIngressPath(b *testing.B) {
	peers := startCluster(b, 2, 205, "ib", "--ingress-http-port", "18081", "--ingress-https-port", "18443")
	imgs, err := images.BuildAll(context.Background(), filepath.Join(os.TempDir(), "chorus-test-images-services"))
	if err != nil {
		b.Fatal(err)
	}
	podIP := servePathApp(b, peers, imgs["web"], "ib1")
	_, certFile, keyFile := testCA(b, b.TempDir(), "bench.example")
	crt, err := os.ReadFile(certFile)
	if err != nil {
		b.Fatal(err)
	}
	key, err := os.ReadFile(keyFile)
	if err != nil {
		b.Fatal(err)
	}
	ing := `apiVersion: v1
kind: Secret
metadata: {name: bench-tls}
type: kubernetes.io/tls
data: {tls.crt: ` + base64.StdEncoding.EncodeToString(crt) + `, tls.key: ` + base64.StdEncoding.EncodeToString(key) + `}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: hello}
spec:
  tls: [{secretName: bench-tls}]
  rules:
  - http:
      paths: [{path: /, pathType: Prefix, backend: {service: {name: hello, port: {number: 8080}}}}]
`
	if err := peers[0].Apply([]byte(ing)); err != nil {
		b.Fatal(err)
	}
	targets := []struct{ name, url string }{
		{"direct", "http://" + podIP + ":8080/"},
		{"local-nodeport", "http://" + peers[0].Bind + ":31080/"},
		{"local-ingress", "http://" + peers[0].Bind + ":18081/"},
		{"local-ingress-https", "https://" + peers[0].Bind + ":18443/"},
		{"remote-ingress", "http://" + peers[1].Bind + ":18081/"},
	}
	for _, tg := range targets {
		harness.Eventually(b, 30*time.Second, tg.name+" answers", func() (bool, string) {
			out, err := exec.Command("curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}", tg.url).CombinedOutput()
			return err == nil && string(out) == "200", string(out)
		})
	}
	sum := map[string]float64{}
	for round := 0; round < 2; round++ {
		for _, tg := range targets {
			rps, lat := wrkOK(b, tg.url, 10*time.Second)
			b.Logf("round %d %-20s %8.0f req/s, mean latency %s", round+1, tg.name, rps, lat)
			sum[tg.name] += rps
		}
	}
	b.ReportMetric(sum["direct"]/2, "direct-req/s")
	for _, tg := range targets[1:] {
		b.ReportMetric(sum[tg.name]/sum["direct"], tg.name+"/direct")
	}
}
