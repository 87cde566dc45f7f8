package e2e

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/tests/harness"
)

// get fetches path from the peer (with its token) and returns its status,
// content type and body.
func get(t *testing.T, p *harness.Peer, path string) (int, string, string) {
	t.Helper()
	req, err := p.Request(http.MethodGet, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := p.HTTPClient(10 * time.Second).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// metricSample is one sample line of the text exposition format.
var metricSample = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? \S+$`)

func TestDashboardAndMetrics(t *testing.T) {
	// No mDNS: the loopback may carry multicast, and peers of tests running
	// at the same time must not join this one (it counts members and pods).
	p := harness.NewPeer(t, testEnv.bin, "e2e-dash", "127.0.0.27")
	p.Start()
	if _, err := p.CLI("image", "load", testEnv.images["web"]); err != nil {
		t.Fatalf("image load: %v", err)
	}
	if _, err := p.CLI("apply", "-f", writeManifest(t, harness.WebDeployment("dash", 2))); err != nil {
		t.Fatal(err)
	}
	readyPods(t, p, 2)
	// The page, at / and /dashboard/.
	for _, path := range []string{"/", "/dashboard/"} {
		code, ctype, body := get(t, p, path)
		if code != http.StatusOK || ctype != "text/html; charset=utf-8" {
			t.Fatalf("GET %s: %d %q", path, code, ctype)
		}
		for _, want := range []string{"<!doctype html>", "<title>chorus dashboard</title>", `list("v1", "pods", ns)`, `"/apis/chorus.sh/v1/peerusages?history=true"`} {
			if !strings.Contains(body, want) {
				t.Errorf("GET %s: page lacks %q", path, want)
			}
		}
		// The SVG namespace is a name the DOM compares, never fetched.
		page := strings.ReplaceAll(body, `"http://www.w3.org/2000/svg"`, "SVG_NS")
		if strings.Contains(page, "http://") || strings.Contains(page, "https://") {
			t.Errorf("GET %s: page references another host", path)
		}
	}
	// What the page reads, as it asks for it, answers.
	for _, path := range []string{"/apis/chorus.sh/v1/peers?fieldSelector=status.serving%3Dtrue", "/api/v1/namespaces", "/api/v1/nodes",
		"/apis/apps/v1/namespaces/default/deployments", "/apis/apps/v1/namespaces/default/daemonsets", "/api/v1/namespaces/default/pods",
		"/api/v1/namespaces/default/services", "/api/v1/namespaces/default/events",
		"/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers", "/apis/chorus.sh/v1/peerusages?history=true&namespace=default"} {
		if code, ctype, body := get(t, p, path); code != http.StatusOK || ctype != "application/json" || !strings.Contains(body, `"items":[`) {
			t.Errorf("GET %s: %d %q %.200s", path, code, ctype, body)
		}
	}
	// The peer describes itself, as the page's header shows it.
	if _, _, body := get(t, p, "/apis/chorus.sh/v1/peers?fieldSelector=status.serving%3Dtrue"); !strings.Contains(body, `"name":"e2e-dash"`) {
		t.Errorf("the peer's own Peer: %s", body)
	}

	// Metrics report the pods this peer runs.
	var metrics string
	harness.Eventually(t, 30*time.Second, "metrics report 2 running ready pods", func() (bool, string) {
		code, ctype, body := get(t, p, "/metrics")
		if code != http.StatusOK || !strings.HasPrefix(ctype, "text/plain; version=0.0.4") {
			return false, fmt.Sprintf("%d %q", code, ctype)
		}
		metrics = body
		return strings.Contains(body, "\n"+`chorus_pods{phase="Running",ready="true"} 2`+"\n"), body
	})
	for _, want := range []string{
		`chorus_members{status="alive"} 1`,
		`chorus_desired_objects{kind="Deployment"} 1`,
		`chorus_pods_pending 0`,
		"# TYPE chorus_store_deltas_merged_total counter",
	} {
		if !strings.Contains(metrics, "\n"+want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	if !strings.Contains(metrics, "\n"+`chorus_build_info{node="e2e-dash",version="`) {
		t.Error("metrics lack chorus_build_info of node e2e-dash")
	}
	for i, line := range strings.Split(strings.TrimSuffix(metrics, "\n"), "\n") {
		if !strings.HasPrefix(line, "# HELP ") && !strings.HasPrefix(line, "# TYPE ") && !metricSample.MatchString(line) {
			t.Errorf("metrics line %d: %q", i+1, line)
		}
	}

	// `chorus dashboard` prints the URL of this peer's page, which serves it.
	out, err := p.CLI("dashboard")
	if err != nil {
		t.Fatal(err)
	}
	if want := "https://" + p.API + "/dashboard/#token="; !strings.HasPrefix(out, want) {
		t.Fatalf("chorus dashboard printed %q, want %q and the token", out, want)
	}
	resp, err := p.HTTPClient(10 * time.Second).Get(strings.TrimSpace(out)) // the fragment stays in the browser
	if err != nil {
		t.Fatalf("GET %s: %v", strings.TrimSpace(out), err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "<title>chorus dashboard</title>") {
		t.Fatalf("GET %s: %s", strings.TrimSpace(out), resp.Status)
	}
}
