package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The agent's answer to a request without its token.
const unauthorizedMsg = "this peer requires an API token (chorus --kubeconfig <data-dir>/kubeconfig, --token or CHORUS_TOKEN)"

// requireToken makes the fake agent answer 401, as an agent started with
// --api-token does, to every request that lacks "Bearer <token>".
func (f *fakeAgent) requireToken(token string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.token = token
}

// lastAuth returns the Authorization header of the last request.
func (f *fakeAgent) lastAuth() string {
	f.t.Helper()
	reqs := f.requests()
	if len(reqs) == 0 {
		f.t.Fatal("no request")
	}
	return reqs[len(reqs)-1].auth
}

func TestTokenSentWhenSet(t *testing.T) {
	f := newFakeAgent(t)
	f.list("GET /chorus/v1/namespaces/default/pods")
	f.reply("GET /chorus/v1/version", http.StatusOK, serverVersion{Version: "v0.1.0", Node: "n1"})

	// No token: no header.
	if r := f.run("get", "pods"); r.code != 0 || f.lastAuth() != "" {
		t.Fatalf("no token: %+v, Authorization %q", r, f.lastAuth())
	}
	// --token.
	if r := f.run("--token", "t0k-1", "get", "pods"); r.code != 0 || f.lastAuth() != "Bearer t0k-1" {
		t.Fatalf("--token: %+v, Authorization %q", r, f.lastAuth())
	}
	if r := f.run("version", "--token=t0k-2"); r.code != 0 || f.lastAuth() != "Bearer t0k-2" {
		t.Fatalf("--token after the verb: %+v, Authorization %q", r, f.lastAuth())
	}
	// CHORUS_TOKEN; --token wins over it.
	t.Setenv("CHORUS_TOKEN", "from-env")
	if r := f.run("get", "pods"); r.code != 0 || f.lastAuth() != "Bearer from-env" {
		t.Fatalf("CHORUS_TOKEN: %+v, Authorization %q", r, f.lastAuth())
	}
	if r := f.run("get", "pods", "--token", "from-flag"); r.code != 0 || f.lastAuth() != "Bearer from-flag" {
		t.Fatalf("--token and CHORUS_TOKEN: %+v, Authorization %q", r, f.lastAuth())
	}
	// A token the header could not carry is refused before any request.
	n := len(f.requests())
	for _, bad := range []string{"two words", "new\nline"} {
		r := f.run("get", "pods", "--token", bad)
		if r.code != 1 || !strings.HasPrefix(r.stderr, "error: --token: ") || len(f.requests()) != n {
			t.Fatalf("token %q: %+v", bad, r)
		}
	}
}

// TestTokenOnEveryKindOfRequest: uploads, logs and the upgraded connections
// of exec and port-forward carry the token too.
func TestTokenOnEveryKindOfRequest(t *testing.T) {
	f := newFakeAgent(t)
	f.requireToken("tok")
	serveFakeExec(t, f, nil)
	f.reply("POST /chorus/v1/images", http.StatusOK, map[string]any{"images": []imageInfo{}})
	f.reply("GET /chorus/v1/version", http.StatusOK, serverVersion{Version: "v0.1.0", Node: "n1"})
	f.mux.HandleFunc("GET /chorus/v1/namespaces/default/pods/web-0/log", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "a log line\n")
	})
	f.mux.HandleFunc("POST /chorus/v1/namespaces/default/services/hello/portforward", func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: chorus-portforward\r\nConnection: Upgrade\r\n\r\n")
		_ = brw.Flush()
		_, _ = io.Copy(conn, brw) // an echo server behind the service
	})

	if r := f.run("--token", "tok", "exec", "web-0", "--", "echo", "hi"); r.code != 0 || r.stdout != "web-0: hi\n" || f.lastAuth() != "Bearer tok" {
		t.Fatalf("exec: %+v", r)
	}
	if r := f.run("--token", "tok", "logs", "web-0"); r.code != 0 || r.stdout != "a log line\n" || f.lastAuth() != "Bearer tok" {
		t.Fatalf("logs: %+v", r)
	}
	archive := filepath.Join(t.TempDir(), "web.tar")
	writeFile(t, archive, strings.Repeat("x", 4096))
	if r := f.run("--token", "tok", "image", "load", archive); r.code != 0 || f.lastAuth() != "Bearer tok" {
		t.Fatalf("image load: %+v", r)
	}

	// port-forward: a free local port, then one connection through it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan cliResult, 1)
	go func() {
		done <- runCLI(t, ctx, "", "-s", f.addr(), "--token", "tok", "port-forward", "service/hello", strconv.Itoa(port)+":8080")
	}()
	var conn net.Conn
	for deadline := time.Now().Add(5 * time.Second); ; {
		if conn, err = net.Dial("tcp", ln.Addr().String()); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("port-forward does not listen: %v: %+v", err, <-done)
		}
		time.Sleep(20 * time.Millisecond)
	}
	_, _ = io.WriteString(conn, "ping")
	got := make([]byte, 4)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadFull(conn, got)
	conn.Close()
	cancel()
	r := <-done
	if err != nil || string(got) != "ping" || r.code != 0 {
		t.Fatalf("port-forward: %q %v: %+v", got, err, r)
	}
	if f.lastAuth() != "Bearer tok" || f.requests()[len(f.requests())-1].path != "/chorus/v1/namespaces/default/services/hello/portforward" {
		t.Fatalf("port-forward requests: %+v", f.requests())
	}
	for _, req := range f.requests() {
		if req.auth != "Bearer tok" {
			t.Errorf("%s %s without the token: %q", req.method, req.path, req.auth)
		}
	}
}

// TestUnauthorized: a 401 is printed as every server error is, and the
// command exits 1, whatever it was.
func TestUnauthorized(t *testing.T) {
	f := newFakeAgent(t)
	f.requireToken("right")
	serveFakeExec(t, f, nil)
	want := "Error from server (Unauthorized): " + unauthorizedMsg + "\n"
	for _, args := range [][]string{
		{"get", "pods"},
		{"--token", "wrong", "get", "nodes"},
		{"apply", "-f", "-"},
		{"exec", "web-0", "--", "echo", "hi"},
		{"logs", "web-0"},
		{"version"},
		{"dashboard"},
	} {
		r := f.runStdin("apiVersion: v1\nkind: Namespace\nmetadata: {name: dev}\n", args...)
		if r.code != 1 || r.stderr != want || (r.stdout != "" && !strings.HasPrefix(r.stdout, "Client Version:")) {
			t.Errorf("%v: %+v", args, r)
		}
	}
	// port-forward is refused before it listens (else it would run until
	// the deadline).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r := runCLI(t, ctx, "", "-s", f.addr(), "port-forward", "service/hello", "0:8080"); r.code != 1 || r.stderr != want || r.stdout != "" {
		t.Errorf("port-forward: %+v", r)
	}
	// A 401 without a Status body still reads as Unauthorized.
	g := newFakeAgent(t)
	g.mux.HandleFunc("GET /chorus/v1/namespaces/default/pods", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "go away", http.StatusUnauthorized)
	})
	if r := g.run("get", "pods"); r.code != 1 || r.stderr != "Error from server (Unauthorized): go away\n" {
		t.Errorf("plain 401: %+v", r)
	}
}

func TestDashboardURLCarriesToken(t *testing.T) {
	f := newFakeAgent(t)
	f.requireToken("a+b/c=d&e")
	f.reply("GET /chorus/v1/version", http.StatusOK, serverVersion{Version: "v0.1.0", Node: "n1"})
	page := f.addr() + "/dashboard/"
	// The token is encoded as encodeURIComponent encodes it.
	if r := f.run("--token", "a+b/c=d&e", "dashboard"); r.code != 0 || r.stdout != page+"#token=a%2Bb%2Fc%3Dd%26e\n" {
		t.Fatalf("--token: %+v", r)
	}
	if r := f.run("--token", "a+b/c=d&e", "dashboard", "-n", "dev"); r.code != 0 || r.stdout != page+"#ns=dev&token=a%2Bb%2Fc%3Dd%26e\n" {
		t.Fatalf("--token -n dev: %+v", r)
	}
	t.Setenv("CHORUS_TOKEN", "a+b/c=d&e")
	if r := f.run("dashboard"); r.code != 0 || r.stdout != page+"#token=a%2Bb%2Fc%3Dd%26e\n" {
		t.Fatalf("CHORUS_TOKEN: %+v", r)
	}
	// Without a token, no fragment.
	g := newFakeAgent(t)
	g.reply("GET /chorus/v1/version", http.StatusOK, serverVersion{Version: "v0.1.0", Node: "n1"})
	t.Setenv("CHORUS_TOKEN", "")
	if r := g.run("dashboard"); r.code != 0 || r.stdout != g.addr()+"/dashboard/\n" {
		t.Fatalf("no token: %+v", r)
	}
	if got := fragmentEscape("x y!*'()~-_.é"); got != "x%20y%21%2A%27%28%29~-_.%C3%A9" {
		t.Fatalf("fragmentEscape: %q", got)
	}
}

// TestAgentTokenFlags: the agent's token comes from --api-token, its config
// key or CHORUS_API_TOKEN, or from --api-token-file; a file that gives none
// stops the agent before it starts, naming the flag.
func TestAgentTokenFlags(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	writeFile(t, tokenFile, "  s3cret\n")
	if tok, err := apiToken("", tokenFile); err != nil || tok != "s3cret" {
		t.Fatalf("file: %q %v", tok, err)
	}
	if tok, err := apiToken("direct", ""); err != nil || tok != "direct" {
		t.Fatalf("flag: %q %v", tok, err)
	}
	if tok, err := apiToken("", ""); err != nil || tok != "" {
		t.Fatalf("none: %q %v", tok, err)
	}
	empty := filepath.Join(dir, "empty")
	writeFile(t, empty, " \n\t\n")
	spaced := filepath.Join(dir, "spaced")
	writeFile(t, spaced, "two words\n")
	for _, c := range []struct{ token, file, want string }{
		{"", filepath.Join(dir, "missing"), "--api-token-file: open " + filepath.Join(dir, "missing") + ": no such file or directory"},
		{"", empty, "--api-token-file " + empty + ": the file is empty"},
		{"", dir, "--api-token-file: read " + dir + ": is a directory"},
		{"", spaced, "--api-token-file " + spaced + ": the token holds the byte 0x20 at 3"},
		{"a b", "", "--api-token: the token holds the byte 0x20 at 1"},
		{"x", tokenFile, "--api-token and --api-token-file: give one of them, not both"},
	} {
		if _, err := apiToken(c.token, c.file); err == nil || !strings.HasPrefix(err.Error(), c.want) {
			t.Errorf("token %q file %q: %v, want %q", c.token, c.file, err, c.want)
		}
	}

	// Through the command line, the config file and the environment: each
	// of these fails before the agent starts anything.
	config := filepath.Join(dir, "agent.yaml")
	writeFile(t, config, "api-token-file: "+empty+"\n")
	agentArgs := []string{"agent", "--name", "n1", "--data-dir", filepath.Join(dir, "data")}
	for _, c := range []struct {
		args []string
		env  string
		want string
	}{
		{[]string{"--api-token-file", empty}, "", "error: --api-token-file " + empty + ": the file is empty\n"},
		{[]string{"--config", config}, "", "error: --api-token-file " + empty + ": the file is empty\n"},
		{nil, "CHORUS_API_TOKEN_FILE=" + filepath.Join(dir, "missing"), "error: --api-token-file: open "},
		{nil, "CHORUS_API_TOKEN=bad token", "error: --api-token: the token holds the byte 0x20 at 3"},
	} {
		if k, v, ok := strings.Cut(c.env, "="); ok {
			t.Setenv(k, v)
		}
		r := runCLI(t, context.Background(), "", append(agentArgs, c.args...)...)
		if k, _, ok := strings.Cut(c.env, "="); ok {
			os.Unsetenv(k)
		}
		if r.code != 1 || !strings.HasPrefix(r.stderr, c.want) {
			t.Errorf("%v %s: %+v", c.args, c.env, r)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "data")); !os.IsNotExist(err) {
		t.Errorf("the agent started: %v", err)
	}
}
