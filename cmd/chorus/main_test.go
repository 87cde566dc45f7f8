package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
)

// cliResult is what one CLI run printed and returned.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs the chorus command line in-process with captured streams.
func runCLI(t *testing.T, ctx context.Context, stdin string, args ...string) cliResult {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(ctx, args, strings.NewReader(stdin), &out, &errOut)
	return cliResult{stdout: out.String(), stderr: errOut.String(), code: code}
}

// recorded is one request the fake agent received.
type recorded struct {
	method, path, query, contentType string
	auth                             string // the Authorization header
	body                             []byte
}

// fakeAgent mocks the agent's HTTP API.
type fakeAgent struct {
	t   *testing.T
	mux *http.ServeMux
	srv *httptest.Server

	mu    sync.Mutex
	reqs  []recorded
	token string // when set, requests without "Bearer <token>" get a 401
}

func newFakeAgent(t *testing.T) *fakeAgent {
	t.Helper()
	f := &fakeAgent{t: t, mux: http.NewServeMux()}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery,
			contentType: r.Header.Get("Content-Type"), auth: r.Header.Get("Authorization"), body: body})
		token := f.token
		f.mu.Unlock()
		if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
			w.Header().Set("WWW-Authenticate", `Bearer realm="chorus"`)
			writeStatus(w, http.StatusUnauthorized, "Unauthorized", unauthorizedMsg)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		f.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	// Unknown paths answer a Status, as the agent does.
	f.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusNotFound, "NotFound", "the server could not find the requested resource")
	})
	return f
}

// addr is the fake agent's URL (plain HTTP: -s host:port would mean HTTPS).
func (f *fakeAgent) addr() string { return f.srv.URL }

// run runs the CLI against this agent.
func (f *fakeAgent) run(args ...string) cliResult {
	f.t.Helper()
	return runCLI(f.t, context.Background(), "", append([]string{"-s", f.addr()}, args...)...)
}

// runStdin runs the CLI against this agent with stdin.
func (f *fakeAgent) runStdin(stdin string, args ...string) cliResult {
	f.t.Helper()
	return runCLI(f.t, context.Background(), stdin, append([]string{"-s", f.addr()}, args...)...)
}

// reply answers pattern with a JSON body.
func (f *fakeAgent) reply(pattern string, code int, body any) {
	f.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body)
	})
}

// list answers pattern with a List of items.
func (f *fakeAgent) list(pattern string, items ...any) {
	if items == nil {
		items = []any{}
	}
	f.reply(pattern, http.StatusOK, api.List{TypeMeta: api.TypeMeta{APIVersion: "v1", Kind: "List"}, Items: items})
}

func (f *fakeAgent) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

func writeStatus(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(apiStatus{Kind: "Status", APIVersion: "v1", Status: "Failure",
		Message: msg, Reason: reason, Code: code})
}

// ago returns a time d before now, plus a little so ages don't round down
// while the test runs.
func ago(d time.Duration) *time.Time {
	t := time.Now().Add(-d - 300*time.Millisecond)
	return &t
}

func int32p(i int32) *int32 { return &i }

// Fixtures.

func runningPod(name, node, ip string, age time.Duration) api.Pod {
	return api.Pod{
		TypeMeta: api.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		Metadata: api.ObjectMeta{Name: name, Namespace: "default", CreationTimestamp: ago(age),
			Labels: map[string]string{"app": "web", api.LabelDeployment: "web"}},
		Spec: api.PodSpec{NodeName: node, Containers: []api.Container{{Name: "web", Image: "docker.io/example/web:1"}}},
		Status: api.PodStatus{Phase: api.PodRunning, PodIP: ip, HostIP: "127.0.0.11",
			ContainerStatuses: []api.ContainerStatus{{Name: "web", Ready: true,
				State: api.ContainerState{Running: &api.ContainerStateRunning{StartedAt: ago(age)}}}}},
	}
}

func crashingPod(name string, age time.Duration) api.Pod {
	p := runningPod(name, "n2", "10.88.12.7", age)
	p.Status.ContainerStatuses[0] = api.ContainerStatus{Name: "web", RestartCount: 4,
		State: api.ContainerState{Waiting: &api.ContainerStateWaiting{Reason: "CrashLoopBackOff"}},
		LastState: api.ContainerState{Terminated: &api.ContainerStateTerminated{ExitCode: 1, Reason: "Error",
			FinishedAt: ago(30 * time.Second)}}}
	return p
}

func webDeployment(age time.Duration) api.Deployment {
	labels := map[string]string{"app": "web"}
	return api.Deployment{
		TypeMeta: api.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		Metadata: api.ObjectMeta{Name: "web", Namespace: "default", CreationTimestamp: ago(age), Labels: labels},
		Spec: api.DeploymentSpec{Replicas: int32p(3), Selector: &api.LabelSelector{MatchLabels: labels},
			Template: api.PodTemplateSpec{Metadata: api.ObjectMeta{Labels: labels},
				Spec: api.PodSpec{Containers: []api.Container{{Name: "web", Image: "docker.io/example/web:1"}}}}},
		Status: api.DeploymentStatus{Replicas: 3, UpdatedReplicas: 3, ReadyReplicas: 2, AvailableReplicas: 2, UnavailableReplicas: 1},
	}
}

func webService(age time.Duration) api.Service {
	return api.Service{
		TypeMeta: api.TypeMeta{APIVersion: "v1", Kind: "Service"},
		Metadata: api.ObjectMeta{Name: "web", Namespace: "default", CreationTimestamp: ago(age),
			Annotations: map[string]string{annotationEndpoints: "10.88.11.5:8080,10.88.12.7:8080"}},
		Spec: api.ServiceSpec{Type: "NodePort", ClusterIP: "10.96.0.10", Selector: map[string]string{"app": "web"},
			Ports: []api.ServicePort{{Port: 8080, NodePort: 31234, Protocol: "TCP", TargetPort: api.FromInt(8080)}}},
	}
}

func testNode(name, ip string, pods int, age time.Duration) node {
	return node{APIVersion: "v1", Kind: "Node",
		Metadata: api.ObjectMeta{Name: name, CreationTimestamp: ago(age), Labels: map[string]string{"zone": "a"}},
		Status: nodeStatus{Phase: "Alive", Addresses: []nodeAddress{{Type: "InternalIP", Address: ip}},
			Capacity: map[string]string{"cpu": "2", "memory": "24Gi", "pods": "110"},
			NodeInfo: nodeInfo{KubeletVersion: "v0.1.0"}, PodCount: pods}}
}
