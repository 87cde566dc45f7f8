package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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

// reply answers pattern with a JSON body.
func (f *fakeAgent) reply(pattern string, code int, body any) {
	f.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(body)
	})
}

// peer makes the agent describe itself as the peer name of version v
// (the chorus.sh/v1 Peer the CLI asks for with status.serving=true).
func (f *fakeAgent) peer(name, v string) {
	f.reply("GET "+api.PathChorusV1+"/peers", http.StatusOK, api.PeerList{Items: []api.Peer{{
		ObjectMeta: metav1.ObjectMeta{Name: name}, Status: api.PeerStatus{Phase: api.PeerAlive, Serving: true, Version: v}}}})
}

func (f *fakeAgent) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

func writeStatus(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure,
		Message: msg, Reason: metav1.StatusReason(reason), Code: int32(code)})
}

// writeFile writes content to path, creating its directory.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
