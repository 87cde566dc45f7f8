package apiserver

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
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

// imageBackend serves chorus.sh/v1 images and peers live and deletes
// images, as the agent does.
type imageBackend struct {
	*memBackend
	mu      sync.Mutex
	images  []string
	deleted []string // "name" or "collection all=VALUE"
}

func (b *imageBackend) ListLive(r *http.Request, kind, ns string) ([][]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out [][]byte
	switch kind {
	case "Image":
		for _, n := range b.images {
			out = append(out, []byte(`{"metadata":{"name":"`+n+`"},"reference":"`+n+`","digest":"sha256:0123456789abcdef","size":2500000,"peers":2}`))
		}
	case "Peer":
		out = append(out, []byte(`{"metadata":{"name":"p1"},"status":{"phase":"Alive","serving":true,"pods":3}}`))
	default:
		return nil, false
	}
	return out, true
}

func (b *imageBackend) DeleteLive(r *http.Request, kind, ns, name string) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, n := range b.images {
		if n == name {
			b.images = append(b.images[:i], b.images[i+1:]...)
			b.deleted = append(b.deleted, name)
			return []byte(`{"metadata":{"name":"` + name + `"},"removedFrom":"p1"}`), nil
		}
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Group: "chorus.sh", Resource: "images"}, name)
}

func (b *imageBackend) DeleteLiveCollection(r *http.Request, kind, ns string) ([][]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deleted = append(b.deleted, "collection all="+r.URL.Query().Get("all"))
	var out [][]byte
	for _, n := range b.images {
		out = append(out, []byte(`{"metadata":{"name":"`+n+`"}}`))
	}
	b.images = nil
	return out, nil
}

// TestLiveChorusGroup: chorus.sh/v1 is discovered like any group, with the
// verbs each live resource serves; images are listed (Table too),
// created through the handler given (any body), deleted one by one and
// as a collection through the LiveDeleter; the leave subresource of a
// live peer reaches its handler, and not for a peer that is not listed.
func TestLiveChorusGroup(t *testing.T) {
	b := &imageBackend{memBackend: newMem(), images: []string{"docker.io~example~web:1", "docker.io~example~db:2"}}
	var created, left []string
	var mu sync.Mutex
	opts := Options{Peer: "p1", Version: "test",
		Create: map[string]http.Handler{"images.chorus.sh": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			mu.Lock()
			created = append(created, r.Header.Get("Content-Type")+" "+string(body))
			mu.Unlock()
			w.WriteHeader(http.StatusCreated)
		})},
		Subresources: map[string]http.Handler{"peers/leave": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			left = append(left, r.Method+" "+r.PathValue("name"))
			mu.Unlock()
		})}}
	_, hs := startWith(t, b, opts)
	if code, body := do(t, "GET", hs.URL+"/apis", "", ""); code != 200 || !strings.Contains(body, `"name":"chorus.sh"`) {
		t.Fatalf("/apis: %d %s", code, body)
	}
	code, body := do(t, "GET", hs.URL+"/apis/chorus.sh/v1", "", "")
	for _, want := range []string{`"name":"images","singularName":"image","namespaced":false,"kind":"Image","verbs":["get","list","create","delete","deletecollection"],"shortNames":["img"]`,
		`"name":"peers","singularName":"peer","namespaced":false,"kind":"Peer","verbs":["get","list"]`,
		`"name":"peers/leave","singularName":"","namespaced":false,"kind":"Peer","verbs":["create"]`} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("discovery lacks %s: %d %s", want, code, body)
		}
	}
	if code, body := do(t, "GET", hs.URL+"/openapi/v3/apis/chorus.sh/v1", "", ""); code != 200 || !strings.Contains(body, `"com.github.chorus-sh.chorus.api.Image"`) {
		t.Errorf("OpenAPI: %d %.300s", code, body)
	}
	if code, body := do(t, "GET", hs.URL+"/apis/chorus.sh/v1/images/docker.io~example~db:2", "", ""); code != 200 ||
		!strings.Contains(body, `"apiVersion":"chorus.sh/v1"`) || !strings.Contains(body, `"kind":"Image"`) {
		t.Errorf("get: %d %s", code, body)
	}
	req, _ := http.NewRequest("GET", hs.URL+"/apis/chorus.sh/v1/images", nil)
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	tb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`"name":"Digest"`, `"name":"Peers"`, `"cells":["docker.io~example~db:2","sha256:0123456789ab","2.5MB","\u003cunknown\u003e",2,"docker.io~example~db:2"]`} {
		if !strings.Contains(string(tb), want) {
			t.Errorf("Table lacks %s: %s", want, tb)
		}
	}
	if code, _ := do(t, "POST", hs.URL+"/apis/chorus.sh/v1/images", "application/x-tar", "TAR"); code != http.StatusCreated || len(created) != 1 || created[0] != "application/x-tar TAR" {
		t.Errorf("create: %d %q", code, created)
	}
	if code, body := do(t, "DELETE", hs.URL+"/apis/chorus.sh/v1/images/docker.io~example~web:1", "", ""); code != 200 || !strings.Contains(body, `"removedFrom":"p1"`) || !strings.Contains(body, `"kind":"Image"`) {
		t.Errorf("delete: %d %s", code, body)
	}
	if code, _ := do(t, "DELETE", hs.URL+"/apis/chorus.sh/v1/images/docker.io~example~web:1", "", ""); code != 404 {
		t.Errorf("delete again: %d, want 404", code)
	}
	if code, body := do(t, "DELETE", hs.URL+"/apis/chorus.sh/v1/images?all=true", "", ""); code != 200 || !strings.Contains(body, `"kind":"ImageList"`) || !strings.Contains(body, "db:2") {
		t.Errorf("delete collection: %d %s", code, body)
	}
	if strings.Join(b.deleted, ",") != "docker.io~example~web:1,collection all=true" {
		t.Errorf("deleted %q", b.deleted)
	}
	for _, c := range []struct{ method, path string }{
		{"PUT", "/apis/chorus.sh/v1/images/x"},
		{"PATCH", "/apis/chorus.sh/v1/images/x"},
		{"GET", "/apis/chorus.sh/v1/images?watch=true"},
		{"DELETE", "/apis/chorus.sh/v1/peers/p1"},
		{"POST", "/apis/chorus.sh/v1/peers"},
	} {
		if code, _ := do(t, c.method, hs.URL+c.path, "application/json", `{}`); code != http.StatusMethodNotAllowed {
			t.Errorf("%s %s: %d, want 405", c.method, c.path, code)
		}
	}
	if code, _ := do(t, "POST", hs.URL+"/apis/chorus.sh/v1/peers/p1/leave", "application/json", `{}`); code != 200 {
		t.Errorf("leave: %d", code)
	}
	if code, _ := do(t, "POST", hs.URL+"/apis/chorus.sh/v1/peers/p9/leave", "application/json", `{}`); code != 404 {
		t.Errorf("leave of an unknown peer: %d, want 404", code)
	}
	if strings.Join(left, ",") != "POST p1" {
		t.Errorf("leave handler saw %q", left)
	}
}

// TestYAMLAliasBombRefused: a YAML body whose aliases would expand it far
// beyond its size is refused before anything is expanded.
func TestYAMLAliasBombRefused(t *testing.T) {
	_, hs := start(t, newMem(), "p1")
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: bomb\n  annotations:\n    big: &big " + strings.Repeat("x", 1<<20) + "\n")
	for i := range 400 {
		fmt.Fprintf(&b, "    k%d: *big\n", i)
	}
	code, body := do(t, "POST", hs.URL+"/api/v1/namespaces", "application/yaml", b.String())
	if code != http.StatusBadRequest || !strings.Contains(body, "alias *big makes the document expand") {
		t.Fatalf("alias bomb: %d %.300s", code, body)
	}
	// Aliases that stay small are fine.
	code, body = do(t, "POST", hs.URL+"/api/v1/namespaces", "application/yaml",
		"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: small\n  labels: &l {a: b}\n  annotations: *l\n")
	if code != http.StatusCreated {
		t.Fatalf("small aliases: %d %s", code, body)
	}
}
