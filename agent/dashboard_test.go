package agent

import (
	"github.com/chorus-sh/chorus/apiserver"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestDashboardServed(t *testing.T) {
	// The page needs no state: an Agent with nothing in it serves it.
	srv := httptest.NewServer((&Agent{}).routes())
	defer srv.Close()
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	for _, path := range []string{"/", "/dashboard/", "/dashboard"} { // the last one is redirected
		resp, body := get(path)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Fatalf("GET %s: %s, Content-Type %q", path, resp.Status, resp.Header.Get("Content-Type"))
		}
		if body != dashboardHTML || !strings.HasPrefix(body, "<!doctype html>") {
			t.Fatalf("GET %s: not the dashboard page", path)
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "connect-src 'self'") {
			t.Fatalf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	for _, path := range []string{"/dashboard/other.js", "/nothing"} {
		if resp, _ := get(path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", path, resp.Status)
		}
	}
}

func TestDashboardSelfContained(t *testing.T) {
	// The SVG namespace is a name the DOM compares, never fetched.
	page := strings.ReplaceAll(dashboardHTML, `"http://www.w3.org/2000/svg"`, "SVG_NS")
	// No resource from another host: the machine may have no internet.
	if m := regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`).FindString(page); m != "" {
		t.Errorf("page references another host: %q", m)
	}
	for _, bad := range []string{"http://", "https://", "<link", "src=", "@import", "url("} {
		if strings.Contains(strings.ToLower(page), bad) {
			t.Errorf("page contains %q: it must load nothing from elsewhere", bad)
		}
	}
	// Data reaches the DOM as text only.
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
		if strings.Contains(page, bad) {
			t.Errorf("page uses %s", bad)
		}
	}
	// The API it reads: the Kubernetes API's lists (every one served,
	// TestDashboardReadsServedResources) and chorus.sh/v1.
	for _, want := range []string{`get("/apis/chorus.sh/v1/peers?fieldSelector=status.serving%3Dtrue")`, `get(list("v1", "namespaces"))`,
		`get(list("v1", "nodes"))`, `get(list("apps/v1", "deployments", ns))`, `get(list("apps/v1", "daemonsets", ns))`,
		`get(list("v1", "pods", ns))`, `get(list("v1", "services", ns))`, `get(list("v1", "events", ns))`,
		`get(list("autoscaling/v2", "horizontalpodautoscalers", ns))`} {
		if !strings.Contains(page, want) {
			t.Errorf("page does not read %s", want)
		}
	}
	// Usage graphs: the cluster's history, drawn as inline SVG built
	// node by node (no markup parsed).
	for _, want := range []string{`"/apis/chorus.sh/v1/peerusages?history=true"`, `createElementNS(SVG_NS, "polyline")`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	for _, want := range []string{"deployment.kubernetes.io/revision", "chorus.io/endpoints", "setTimeout(refresh, REFRESH_MS)", "REFRESH_MS = 2000"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// The token comes from the URL fragment (never sent to a server), next
	// to the namespace, goes with every request, and a 401 says what to do.
	for _, want := range []string{"location.hash", `out[kv.slice(0, i)] = decodeURIComponent(`, `f.token`,
		`"token=" + encodeURIComponent(token)`, `"ns=" + encodeURIComponent(`, `headers.Authorization = "Bearer " + token`,
		"fetch(url, {headers,", "r.status === 401", "This peer requires an API token", "chorus dashboard</code> prints",
		`"hashchange"`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "localStorage") || strings.Contains(page, "document.cookie") {
		t.Error("page stores the token")
	}
	if n := strings.Count(page, "\n"); n > 400 {
		t.Errorf("page has %d lines: keep it small", n)
	}
}

// TestDashboardReadsServedResources: every list the page reads is a
// resource the API server serves.
func TestDashboardReadsServedResources(t *testing.T) {
	served := map[string]bool{}
	for _, r := range apiserver.Resources() {
		served[r.APIVersion()+" "+r.Plural] = true
	}
	re := regexp.MustCompile(`list\("([^"]+)", "([^"]+)"|"/apis/([^"?]+)/([a-z]+)\?`)
	found := 0
	for _, m := range re.FindAllStringSubmatch(dashboardHTML, -1) {
		gv, plural := m[1], m[2]
		if gv == "" {
			gv, plural = m[3], m[4]
		}
		found++
		if !served[gv+" "+plural] {
			t.Errorf("the page reads %s %s, which the API does not serve", gv, plural)
		}
	}
	if found < 10 {
		t.Fatalf("found %d lists in the page", found)
	}
}
