package apiserver

import (
	"net/http"
	"strings"
	"testing"
)

// liveBackend serves PodMetrics and NodeMetrics live, as the agent does.
type liveBackend struct{ *memBackend }

func (b liveBackend) ListLive(r *http.Request, kind, ns string) ([][]byte, bool) {
	switch kind {
	case "PodMetrics":
		var out [][]byte
		for _, d := range []string{
			`{"metadata":{"name":"web-1","namespace":"a","labels":{"app":"web"}},"timestamp":"2025-01-01T00:00:00Z","window":"5s","containers":[{"name":"c","usage":{"cpu":"5n","memory":"1Ki"}}]}`,
			`{"metadata":{"name":"db-0","namespace":"b","labels":{"app":"db"}},"timestamp":"2025-01-01T00:00:00Z","window":"5s","containers":[]}`,
		} {
			if ns == "" || strings.Contains(d, `"namespace":"`+ns+`"`) {
				out = append(out, []byte(d))
			}
		}
		return out, true
	case "NodeMetrics":
		return [][]byte{[]byte(`{"metadata":{"name":"n1"},"timestamp":"2025-01-01T00:00:00Z","window":"5s","usage":{"cpu":"1n","memory":"1Ki"}}`)}, true
	}
	return nil, false
}

// TestLiveMetrics: the metrics API is discovered with get and list only,
// lists and gets ask the backend live (never the cache), label selectors
// apply, and writes and watches are refused.
func TestLiveMetrics(t *testing.T) {
	b := liveBackend{newMem()}
	_, hs := start(t, b, "p1")
	if code, body := do(t, "GET", hs.URL+"/apis", "", ""); code != 200 || !strings.Contains(body, `"name":"metrics.k8s.io"`) {
		t.Fatalf("/apis: %d %s", code, body)
	}
	if code, body := do(t, "GET", hs.URL+"/apis/metrics.k8s.io/v1beta1", "", ""); code != 200 ||
		!strings.Contains(body, `"name":"pods","singularName":"podmetrics","namespaced":true,"kind":"PodMetrics","verbs":["get","list"]`) {
		t.Fatalf("discovery: %d %s", code, body)
	}
	for path, want := range map[string]string{
		"/apis/metrics.k8s.io/v1beta1/pods":                        `"name":"db-0"`,
		"/apis/metrics.k8s.io/v1beta1/namespaces/a/pods":           `"kind":"PodMetricsList","apiVersion":"metrics.k8s.io/v1beta1"`,
		"/apis/metrics.k8s.io/v1beta1/namespaces/a/pods/web-1":     `"kind":"PodMetrics"`,
		"/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app%3Ddb": `"name":"db-0"`,
		"/apis/metrics.k8s.io/v1beta1/nodes":                       `"usage":{"cpu":"1n","memory":"1Ki"}`,
		"/apis/metrics.k8s.io/v1beta1/nodes/n1":                    `"name":"n1"`,
		"/openapi/v3/apis/metrics.k8s.io/v1beta1":                  `io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics`,
	} {
		code, body := do(t, "GET", hs.URL+path, "", "")
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d, want %s in %.400s", path, code, want, body)
		}
	}
	if _, body := do(t, "GET", hs.URL+"/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app%3Ddb", "", ""); strings.Contains(body, "web-1") {
		t.Errorf("label selector not applied: %s", body)
	}
	if _, body := do(t, "GET", hs.URL+"/apis/metrics.k8s.io/v1beta1/namespaces/a/pods", "", ""); strings.Contains(body, "db-0") {
		t.Errorf("namespace not applied: %s", body)
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/apis/metrics.k8s.io/v1beta1/namespaces/a/pods/nope"},
		{"GET", "/apis/metrics.k8s.io/v1beta1/nodes/nope"},
	} {
		if code, _ := do(t, c.method, hs.URL+c.path, "", ""); code != 404 {
			t.Errorf("%s %s: %d, want 404", c.method, c.path, code)
		}
	}
	for _, c := range []struct{ method, path string }{
		{"GET", "/apis/metrics.k8s.io/v1beta1/pods?watch=true"},
		{"POST", "/apis/metrics.k8s.io/v1beta1/namespaces/a/pods"},
		{"DELETE", "/apis/metrics.k8s.io/v1beta1/namespaces/a/pods/web-1"},
	} {
		if code, _ := do(t, c.method, hs.URL+c.path, "application/json", `{}`); code < 400 || code == 404 {
			t.Errorf("%s %s: %d, want a refusal", c.method, c.path, code)
		}
	}
}
