package apiserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// memBackend is an in-memory Backend for the unit tests of the server: it
// stores documents as given and records the updates it receives.
type memBackend struct {
	mu      sync.Mutex
	objs    map[string]map[string][]byte // kind -> ns/name -> doc
	watch   chan struct{}
	updates [][2]string // base, doc
	deletes []*metav1.DeleteOptions
}

func newMem() *memBackend {
	return &memBackend{objs: map[string]map[string][]byte{}, watch: make(chan struct{})}
}

func (b *memBackend) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.watch
}

func (b *memBackend) put(kind string, doc []byte) {
	var m map[string]any
	_ = json.Unmarshal(doc, &m)
	b.mu.Lock()
	if b.objs[kind] == nil {
		b.objs[kind] = map[string][]byte{}
	}
	b.objs[kind][metaString(m, "namespace")+"/"+metaString(m, "name")] = doc
	close(b.watch)
	b.watch = make(chan struct{})
	b.mu.Unlock()
}

func (b *memBackend) List(_ context.Context, kind string) ([][]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out [][]byte
	for _, d := range b.objs[kind] {
		out = append(out, d)
	}
	return out, nil
}

func (b *memBackend) Create(_ context.Context, kind string, doc []byte, dryRun bool) ([]string, error) {
	var m map[string]any
	_ = json.Unmarshal(doc, &m)
	b.mu.Lock()
	_, exists := b.objs[kind][metaString(m, "namespace")+"/"+metaString(m, "name")]
	b.mu.Unlock()
	if exists {
		return nil, apierrors.NewAlreadyExists(schema.GroupResource{Resource: kind}, metaString(m, "name"))
	}
	if !dryRun {
		b.put(kind, doc)
	}
	return []string{"created by memBackend"}, nil
}

func (b *memBackend) Update(_ context.Context, kind, ns, name string, base, doc []byte, dryRun bool) ([]string, error) {
	b.mu.Lock()
	b.updates = append(b.updates, [2]string{string(base), string(doc)})
	b.mu.Unlock()
	if !dryRun {
		b.put(kind, doc)
	}
	return nil, nil
}

func (b *memBackend) Delete(_ context.Context, kind, ns, name string, opts *metav1.DeleteOptions) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deletes = append(b.deletes, opts)
	if _, ok := b.objs[kind][ns+"/"+name]; !ok {
		return apierrors.NewNotFound(schema.GroupResource{Resource: kind}, name)
	}
	delete(b.objs[kind], ns+"/"+name)
	close(b.watch)
	b.watch = make(chan struct{})
	return nil
}

func deployment(name string, replicas int, labels string) []byte {
	return []byte(fmt.Sprintf(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":%q,"namespace":"default","labels":%s},
"spec":{"replicas":%d,"selector":{"matchLabels":{"app":%q}},"template":{"metadata":{"labels":{"app":%q}},"spec":{"containers":[{"name":"c","image":"x"}]}}}}`,
		name, labels, replicas, name, name))
}

func start(t *testing.T, b Backend, peer string) (*Server, *httptest.Server) {
	t.Helper()
	return startWith(t, b, Options{Peer: peer, Version: "test"})
}

func startWith(t *testing.T, b Backend, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	s, err := New(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	mux := http.NewServeMux()
	s.Register(mux)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() { hs.CloseClientConnections(); hs.Close(); cancel(); <-done })
	s.cache.sync(ctx)
	return s, hs
}

func do(t *testing.T, method, url, ctype, body string) (int, string) {
	t.Helper()
	return doHeaders(t, method, url, body, map[string]string{"Content-Type": ctype})
}

// doHeaders sends a request with the headers given (empty values left
// out) and returns the status code and body.
func doHeaders(t *testing.T, method, url, body string, headers map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestDiscoveryAndVersion(t *testing.T) {
	_, hs := start(t, newMem(), "p1")
	for path, want := range map[string]string{
		"/version":                 `"major":"1"`,
		"/api":                     `"versions":["v1"]`,
		"/apis":                    `"name":"apps"`,
		"/api/v1":                  `"name":"pods/exec"`,
		"/apis/apps/v1":            `"name":"deployments/scale"`,
		"/openapi/v3":              `"apis/apps/v1"`,
		"/openapi/v3/apis/apps/v1": `"fieldValidation"`,
		"/openapi/v3/api/v1":       `"io.k8s.api.core.v1.PodSpec":{"description":"PodSpec is a description of a pod."`,
	} {
		code, body := do(t, "GET", hs.URL+path, "", "")
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d, want %s in %.300s", path, code, want, body)
		}
	}
	if code, _ := do(t, "GET", hs.URL+"/apis/example.com/v1", "", ""); code != 404 {
		t.Errorf("unserved group: %d, want 404", code)
	}
}

// TestResourceVersions: versions are decimal, grow with each change, name
// the peer that issued them, and a watch from another peer's version (or
// a version no longer kept) is refused with 410.
func TestResourceVersions(t *testing.T) {
	b := newMem()
	b.put("Deployment", deployment("a", 1, `{}`))
	s1, hs1 := start(t, b, "p1")
	s2, _ := start(t, b, "p2")
	_, body := do(t, "GET", hs1.URL+"/apis/apps/v1/namespaces/default/deployments", "", "")
	var l struct {
		Metadata struct{ ResourceVersion string }
	}
	_ = json.Unmarshal([]byte(body), &l)
	var rv1 uint64
	if _, err := fmt.Sscan(l.Metadata.ResourceVersion, &rv1); err != nil || !s1.cache.ours(rv1) {
		t.Fatalf("list version %q: not a decimal of p1 (%v)", l.Metadata.ResourceVersion, err)
	}
	if s2.cache.ours(rv1) && s1.cache.tag != s2.cache.tag {
		t.Fatal("p2 takes p1's version for its own")
	}
	b.put("Deployment", deployment("a", 2, `{}`))
	s1.cache.sync(context.Background())
	if rv := s1.cache.current(); rv <= rv1 {
		t.Fatalf("version did not grow: %d then %d", rv1, rv)
	}
	if _, _, err := s2.cache.since(rv1); err == nil && s1.cache.tag != s2.cache.tag {
		t.Fatal("p2 resumes a watch from p1's version")
	}
	if _, _, err := s1.cache.since(rv1); err != nil {
		t.Fatalf("p1 cannot resume from its own version: %v", err)
	}
	if _, _, err := s1.cache.since(s1.cache.trimmed - rvTags); err == nil {
		t.Fatal("a version older than the kept changes was resumed")
	}
	code, _ := do(t, "GET", hs1.URL+"/apis/apps/v1/namespaces/default/deployments?watch=true&resourceVersion=12345", "", "")
	if code != http.StatusGone {
		t.Fatalf("watch from a foreign version: %d, want 410", code)
	}
}

// TestWatchSelectors: a label-selected watch sees an object enter (ADDED),
// change (MODIFIED), leave the selection (DELETED), and a deletion.
func TestWatchSelectors(t *testing.T) {
	b := newMem()
	s, hs := start(t, b, "p1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", hs.URL+"/apis/apps/v1/namespaces/default/deployments?watch=1&labelSelector=tier%3Dfront", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var ev struct {
				Type   string
				Object map[string]any
			}
			_ = json.Unmarshal(sc.Bytes(), &ev)
			events <- ev.Type + " " + metaString(ev.Object, "name") + " " + fmt.Sprint(path(ev.Object, "spec", "replicas"))
		}
		close(events)
	}()
	step := func(do func(), want string) {
		t.Helper()
		do()
		s.cache.sync(ctx)
		select {
		case got := <-events:
			if got != want {
				t.Fatalf("event %q, want %q", got, want)
			}
		case <-ctx.Done():
			t.Fatalf("no event, want %q", want)
		}
	}
	step(func() {
		b.put("Deployment", deployment("x", 1, `{"tier":"back"}`))
		b.put("Deployment", deployment("a", 1, `{"tier":"front"}`))
	}, "ADDED a 1")
	step(func() { b.put("Deployment", deployment("a", 2, `{"tier":"front"}`)) }, "MODIFIED a 2")
	step(func() { b.put("Deployment", deployment("a", 2, `{"tier":"back"}`)) }, "DELETED a 2")
	step(func() { b.put("Deployment", deployment("x", 5, `{"tier":"front"}`)) }, "ADDED x 5")
	step(func() { _ = b.Delete(ctx, "Deployment", "default", "x", nil) }, "DELETED x 5")
	// Another object under a name (a new uid, as a replaced pod has): the
	// old one is deleted and the new one added, so that kubectl delete
	// --wait, waiting for the old one's deletion, ends.
	step(func() { b.put("Deployment", withUID(deployment("a", 3, `{"tier":"front"}`), "u1")) }, "ADDED a 3")
	step(func() { b.put("Deployment", withUID(deployment("a", 3, `{"tier":"front"}`), "u2")) }, "DELETED a 3")
	select {
	case got := <-events:
		if got != "ADDED a 3" {
			t.Fatalf("event %q after a new uid's DELETED, want ADDED a 3", got)
		}
	case <-ctx.Done():
		t.Fatal("no ADDED after a new uid's DELETED")
	}
	cancel()
	for range events {
	}
}

// TestPatchesWriteOnTheBaseTheClientSaw: every patch type is applied to
// the object as served, and the backend gets both (so it writes only the
// difference); a stale resourceVersion is a 409.
func TestPatches(t *testing.T) {
	b := newMem()
	b.put("Deployment", deployment("a", 1, `{"x":"1"}`))
	_, hs := start(t, b, "p1")
	u := hs.URL + "/apis/apps/v1/namespaces/default/deployments/a"
	for _, c := range []struct{ ctype, body, want string }{
		{"application/merge-patch+json", `{"spec":{"replicas":2}}`, `"replicas":2`},
		{"application/json-patch+json", `[{"op":"replace","path":"/spec/replicas","value":3}]`, `"replicas":3`},
		{"application/strategic-merge-patch+json", `{"spec":{"template":{"spec":{"containers":[{"name":"c","image":"y"}]}}}}`, `"image":"y"`},
		{"application/apply-patch+yaml", "metadata:\n  labels:\n    z: \"2\"\n", `"z":"2"`},
	} {
		code, body := do(t, "PATCH", u+"?fieldManager=test", c.ctype, c.body)
		if code != 200 || !strings.Contains(body, c.want) {
			t.Fatalf("%s: %d %s", c.ctype, code, body)
		}
	}
	if len(b.updates) != 4 || !strings.Contains(b.updates[1][0], `"replicas":2`) || !strings.Contains(b.updates[1][1], `"replicas":3`) {
		t.Fatalf("backend updates (base, doc): %v", b.updates)
	}
	if code, body := do(t, "PATCH", u, "application/merge-patch+json", `{"metadata":{"resourceVersion":"1"},"spec":{"replicas":9}}`); code != 409 {
		t.Fatalf("stale resourceVersion: %d %s", code, body)
	}
	if code, body := do(t, "PATCH", u, "application/json-patch+json", `[{"op":"test","path":"/spec/replicas","value":7}]`); code != 422 {
		t.Fatalf("failed JSON patch test: %d %s", code, body)
	}
	if code, body := do(t, "PATCH", u, "text/plain", `x`); code != 415 {
		t.Fatalf("unknown patch type: %d %s", code, body)
	}
	if code, body := do(t, "PATCH", u+"/scale", "application/merge-patch+json", `{"spec":{"replicas":4}}`); code != 200 || !strings.Contains(body, `"replicas":4`) {
		t.Fatalf("scale: %d %s", code, body)
	}
}

func TestCreateValidation(t *testing.T) {
	b := newMem()
	_, hs := start(t, b, "p1")
	u := hs.URL + "/apis/apps/v1/namespaces/default/deployments"
	bogus := strings.Replace(string(deployment("a", 1, `{}`)), `"replicas":1`, `"replicas":1,"bogus":true`, 1)
	code, body := do(t, "POST", u+"?fieldValidation=Strict", "application/json", bogus)
	if code != 400 || !strings.Contains(body, `unknown field \"spec.bogus\"`) {
		t.Fatalf("strict: %d %s", code, body)
	}
	req, _ := http.NewRequest("POST", u, strings.NewReader(bogus))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 || !strings.Contains(strings.Join(resp.Header.Values("Warning"), " "), "spec.bogus") {
		t.Fatalf("warn: %d %v", resp.StatusCode, resp.Header.Values("Warning"))
	}
	if code, body := do(t, "POST", u, "application/json", string(deployment("a", 1, `{}`))); code != 409 {
		t.Fatalf("create twice: %d %s", code, body)
	}
	wrongNS := bytes.Replace(deployment("b", 1, `{}`), []byte(`"namespace":"default"`), []byte(`"namespace":"other"`), 1)
	if code, body := do(t, "POST", u, "application/json", string(wrongNS)); code != 400 {
		t.Fatalf("namespace mismatch: %d %s", code, body)
	}
	if code, body := do(t, "POST", hs.URL+"/api/v1/namespaces/default/endpoints", "application/json", `{}`); code != 405 {
		t.Fatalf("create of a read-only resource: %d %s", code, body)
	}
}

func TestTables(t *testing.T) {
	b := newMem()
	b.put("Pod", []byte(`{"metadata":{"name":"p","namespace":"default","creationTimestamp":"2026-01-01T00:00:00Z"},
"spec":{"nodeName":"n1","containers":[{"name":"c"}]},"status":{"phase":"Running","podIP":"10.0.0.1",
"containerStatuses":[{"name":"c","ready":true,"restartCount":2,"state":{"running":{}}}]}}`))
	_, hs := start(t, b, "p1")
	req, _ := http.NewRequest("GET", hs.URL+"/api/v1/namespaces/default/pods", nil)
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tbl struct {
		ColumnDefinitions []struct{ Name string }
		Rows              []struct{ Cells []any }
	}
	if err := json.NewDecoder(resp.Body).Decode(&tbl); err != nil {
		t.Fatal(err)
	}
	if len(tbl.Rows) != 1 || len(tbl.ColumnDefinitions) != len(tbl.Rows[0].Cells) {
		t.Fatalf("table: %+v", tbl)
	}
	got := fmt.Sprint(tbl.Rows[0].Cells[:4], tbl.Rows[0].Cells[5:7])
	if got != "[p 1/1 Running 2] [10.0.0.1 n1]" {
		t.Fatalf("pod row: %s", got)
	}
}

// withUID sets metadata.uid of a JSON object.
func withUID(doc []byte, uid string) []byte {
	var m map[string]any
	_ = json.Unmarshal(doc, &m)
	m["metadata"].(map[string]any)["uid"] = uid
	b, _ := json.Marshal(m)
	return b
}

// A watch resumed from a resourceVersion (as kubectl delete --wait starts
// one after its list) gets the DELETED event of an object that existed
// before it started and did not change since.
func TestWatchResumedSeesDeletion(t *testing.T) {
	b := newMem()
	s, hs := start(t, b, "p1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b.put("Deployment", deployment("a", 1, `{"tier":"front"}`))
	s.cache.sync(ctx)
	rv := s.cache.current()
	req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/apis/apps/v1/namespaces/default/deployments?watch=1&fieldSelector=metadata.name%%3Da&resourceVersion=%d", hs.URL, rv), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	_ = b.Delete(ctx, "Deployment", "default", "a", nil)
	s.cache.sync(ctx)
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var ev struct {
			Type   string
			Object map[string]any
		}
		_ = json.Unmarshal(sc.Bytes(), &ev)
		if ev.Type == "BOOKMARK" {
			continue
		}
		if ev.Type != "DELETED" || metaString(ev.Object, "name") != "a" {
			t.Fatalf("event %s %v, want DELETED a", ev.Type, ev.Object)
		}
		return
	}
	t.Fatalf("no DELETED event: %v", sc.Err())
}

// TestAccessReviewInProtobuf: k9s asks SelfSubjectAccessReviews with a
// protobuf body (client-go's typed client) before it lists anything.
func TestAccessReviewInProtobuf(t *testing.T) {
	_, hs := start(t, newMem(), "p1")
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: hs.URL, ContentConfig: rest.ContentConfig{ContentType: "application/vnd.kubernetes.protobuf"}})
	if err != nil {
		t.Fatal(err)
	}
	review, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(), &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "list", Resource: "pods"}},
	}, metav1.CreateOptions{})
	if err != nil || !review.Status.Allowed {
		t.Fatalf("review: %+v %v", review, err)
	}
}

// laggingBackend is a replica behind its peers: it holds an object only
// once CatchUp pulled it.
type laggingBackend struct {
	*memBackend
	pending  map[string][]byte // kind -> doc the peers hold
	catchUps int
}

func (b *laggingBackend) CatchUp(context.Context) {
	b.mu.Lock()
	b.catchUps++
	b.mu.Unlock()
	for kind, doc := range b.pending {
		b.put(kind, doc)
	}
	b.pending = nil
}

// A read or a write of an object another peer created a moment ago, and
// this one has not received yet, catches up before it answers NotFound
// (kubectl patch, edit, label read the object before they write it); a
// list does not.
func TestReadsAndWritesCatchUpBeforeNotFound(t *testing.T) {
	b := &laggingBackend{memBackend: newMem(), pending: map[string][]byte{"Deployment": deployment("first", 2, `{}`)}}
	_, hs := start(t, b, "p1")
	url := hs.URL + "/apis/apps/v1/namespaces/default/deployments/"
	if code, body := do(t, http.MethodGet, url, "", ""); code != http.StatusOK || strings.Contains(body, `"first"`) || b.catchUps != 0 {
		t.Fatalf("list: %d %s, %d catch-ups; want 200 without the object, and none", code, body, b.catchUps)
	}
	if code, body := do(t, http.MethodGet, url+"first", "", ""); code != http.StatusOK || !strings.Contains(body, `"first"`) {
		t.Fatalf("get of an object a peer holds: %d %s, want 200", code, body)
	}
	if b.catchUps != 1 {
		t.Fatalf("catch-ups = %d after a get that found nothing here, want 1", b.catchUps)
	}
	b.pending = map[string][]byte{"Deployment": deployment("late", 2, `{}`)}
	if code, body := do(t, http.MethodDelete, url+"late", "", ""); code != http.StatusOK {
		t.Fatalf("delete of an object a peer holds: %d %s, want 200", code, body)
	}
	if code, body := do(t, http.MethodDelete, url+"late", "", ""); code != http.StatusNotFound {
		t.Fatalf("second delete: %d %s, want 404", code, body)
	}
	if b.catchUps != 3 {
		t.Fatalf("catch-ups = %d, want one more per delete that found nothing (3)", b.catchUps)
	}
	b.pending = map[string][]byte{"Deployment": deployment("later", 1, `{}`)}
	if code, body := do(t, http.MethodPatch, url+"later/scale", "application/merge-patch+json", `{"spec":{"replicas":4}}`); code != http.StatusOK || !strings.Contains(body, `"replicas":4`) {
		t.Fatalf("scale of an object a peer holds: %d %s", code, body)
	}
}

// staleBackend is a replica that has not received a delete made through
// another peer: its updates change nothing (ErrUnchanged) and its CatchUp
// brings the delete of the objects in gone.
type staleBackend struct {
	*memBackend
	gone     map[string]bool // kind/ns/name deleted elsewhere
	catchUps int
}

func (b *staleBackend) Update(_ context.Context, kind, ns, name string, base, doc []byte, dryRun bool) ([]string, error) {
	return nil, ErrUnchanged
}

func (b *staleBackend) CatchUp(context.Context) {
	b.catchUps++
	for k := range b.gone {
		kind, rest, _ := strings.Cut(k, "/")
		ns, name, _ := strings.Cut(rest, "/")
		_ = b.Delete(context.Background(), kind, ns, name, nil)
	}
	b.gone = nil
}

// An update that changed nothing, on a replica that may lag behind, looks
// again after catching up: an object deleted through another peer meanwhile
// is NotFound for an update or a patch, and made again, from the applied
// configuration alone, by a server-side apply; an object still there is
// answered as updated.
func TestUnchangedUpdateCatchesUp(t *testing.T) {
	b := &staleBackend{memBackend: newMem()}
	_, hs := start(t, b, "p1")
	url := hs.URL + "/apis/apps/v1/namespaces/default/deployments/"
	b.put("Deployment", deployment("web", 2, `{"old":"1"}`))
	b.put("Deployment", deployment("api", 2, `{}`))
	b.put("Deployment", deployment("db", 2, `{}`))

	b.gone = map[string]bool{"Deployment/default/web": true}
	code, body := do(t, http.MethodPatch, url+"web?fieldManager=test", "application/apply-patch+yaml", string(deployment("web", 2, `{"new":"1"}`)))
	if code != http.StatusCreated || b.catchUps != 1 {
		t.Fatalf("apply of an object deleted elsewhere: %d %s, %d catch-ups; want 201 after one", code, body, b.catchUps)
	}
	docs, _ := b.List(context.Background(), "Deployment")
	var web string
	for _, d := range docs {
		if strings.Contains(string(d), `"name":"web"`) {
			web = string(d)
		}
	}
	if !strings.Contains(web, `"new":"1"`) || strings.Contains(web, `"old"`) {
		t.Fatalf("made again: %s, want the applied labels only", web)
	}

	b.gone = map[string]bool{"Deployment/default/api": true}
	if code, body := do(t, http.MethodPatch, url+"api", "application/merge-patch+json", `{"spec":{"replicas":2}}`); code != http.StatusNotFound {
		t.Fatalf("patch of an object deleted elsewhere: %d %s, want 404", code, body)
	}
	if code, body := do(t, http.MethodPatch, url+"db", "application/merge-patch+json", `{"spec":{"replicas":2}}`); code != http.StatusOK || b.catchUps != 3 {
		t.Fatalf("patch that changed nothing of an object still there: %d %s, %d catch-ups; want 200 after the third", code, body, b.catchUps)
	}
}
