// Package harness starts real chorus peers for end-to-end tests: it builds
// the chorus binary, runs `chorus agent` processes on their own 127.0.0.x
// addresses and data dirs, waits for them, kills, stops and restarts them,
// runs CLI commands against them, and removes everything they left behind.
package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/runtime"
)

// ModuleRoot returns the repository root (the directory holding go.mod).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// BuildBinary builds cmd/chorus into dir and returns its path.
func BuildBinary(dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	out := filepath.Join(dir, "chorus")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/chorus")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/chorus: %v\n%s", err, b)
	}
	return out, nil
}

// CheckEnv reports what the end-to-end tests need and this machine lacks.
// A missing dependency is a failure, never a skip: run `make deps`.
func CheckEnv() error {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (containers and network namespaces need it)")
	}
	for _, bin := range []string{"containerd", "runc", "containerd-shim-runc-v2", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	found := false
	for _, d := range []string{"/usr/lib/cni", "/opt/cni/bin"} {
		if _, err := os.Stat(filepath.Join(d, "bridge")); err == nil {
			found = true
		}
	}
	if !found {
		missing = append(missing, "CNI plugins (containernetworking-plugins)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("end-to-end tests need %s: run `make deps` (as root)", strings.Join(missing, ", "))
	}
	return nil
}

// Peer is one `chorus agent` process.
type Peer struct {
	Name    string
	Bind    string
	DataDir string
	API     string // host:port of its HTTP API
	Args    []string
	// Token is the API token CLI (as CHORUS_TOKEN) and GetJSON send: set
	// it for a peer started with --api-token or --api-token-file. The
	// health check Start waits for needs none.
	Token string

	bin     string
	logPath string
	dir     string
	cmd     *exec.Cmd
	exited  chan struct{}
	t       testing.TB
}

// NewPeer prepares a peer; Start runs it. The test's cleanup stops it and
// removes its containers, network and data dir. Peers do not look for
// others by mDNS unless args say --discover (or --discover=true): a test
// must not join whatever other chorus peers run on the machine.
func NewPeer(t testing.TB, bin, name, bind string, args ...string) *Peer {
	t.Helper()
	if !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--discover") }) {
		args = append([]string{"--discover=false"}, args...)
	}
	dir, err := os.MkdirTemp("", "chorus-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	p := &Peer{Name: name, Bind: bind, DataDir: filepath.Join(dir, "data"), API: bind + ":7070", Args: args, bin: bin,
		logPath: filepath.Join(dir, "agent.log"), dir: dir, t: t}
	t.Cleanup(p.Destroy)
	return p
}

// Start runs the agent and waits until its API answers.
func (p *Peer) Start() {
	p.t.Helper()
	if p.cmd != nil {
		p.t.Fatalf("peer %s is already running", p.Name)
	}
	lf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	args := append([]string{"agent", "--name", p.Name, "--bind", p.Bind, "--data-dir", p.DataDir}, p.Args...)
	cmd := exec.Command(p.bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		p.t.Fatalf("start peer %s: %v", p.Name, err)
	}
	p.cmd = cmd
	p.exited = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		lf.Close()
		close(p.exited)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + p.API + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.exited:
			p.cmd = nil
			p.t.Fatalf("peer %s exited at start:\n%s", p.Name, p.Log())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("peer %s did not answer within 60s:\n%s", p.Name, p.Log())
		}
	}
}

// Log returns the agent's log so far.
func (p *Peer) Log() string {
	b, _ := os.ReadFile(p.logPath)
	return string(b)
}

// Kill sends SIGKILL to the agent process (only: its containerd dies with
// it, its containers live on in their shims).
func (p *Peer) Kill() {
	p.signal(syscall.SIGKILL)
}

// Stop sends SIGTERM and waits for the agent to exit.
func (p *Peer) Stop() {
	p.signal(syscall.SIGTERM)
}

func (p *Peer) signal(sig syscall.Signal) {
	if p.cmd == nil {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	_ = p.cmd.Process.Signal(syscall.SIGCONT) // a paused agent handles SIGTERM only once continued
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
	p.cmd = nil
}

// Running reports whether the agent process is up.
func (p *Peer) Running() bool { return p.cmd != nil }

// Destroy stops the agent and removes everything it left on the machine.
func (p *Peer) Destroy() {
	p.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, p.bin, "reset", "--name", p.Name, "--data-dir", p.DataDir).CombinedOutput()
	if err != nil {
		p.t.Errorf("reset peer %s: %v\n%s", p.Name, err, out)
	}
	if p.t.Failed() {
		p.t.Logf("log of peer %s:\n%s", p.Name, p.Log())
	}
	_ = os.RemoveAll(p.dir)
}

// CLI runs `chorus -s <this peer> args...` (with the peer's Token, if any)
// and returns its stdout; stderr is in the error when the command fails.
func (p *Peer) CLI(args ...string) (string, error) {
	return p.CLIInput(nil, args...)
}

// CLIInput is CLI with stdin.
func (p *Peer) CLIInput(stdin io.Reader, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, p.bin, append([]string{"-s", p.API}, args...)...)
	cmd.Stdin = stdin
	if p.Token != "" {
		cmd.Env = append(os.Environ(), "CHORUS_TOKEN="+p.Token)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("chorus %s: %v: %s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// GetJSON GETs an API path (with the peer's Token, if any) and decodes the
// answer into v.
func (p *Peer) GetJSON(path string, v any) error {
	c := http.Client{Timeout: 10 * time.Second}
	req, err := http.NewRequest(http.MethodGet, "http://"+p.API+path, nil)
	if err != nil {
		return err
	}
	if p.Token != "" {
		req.Header.Set("Authorization", "Bearer "+p.Token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

// Pods returns the pods the peer reports, in namespace ns ("" for all).
func (p *Peer) Pods(ns string) ([]api.Pod, error) {
	path := "/chorus/v1/pods"
	if ns != "" {
		path = "/chorus/v1/namespaces/" + ns + "/pods"
	}
	var l struct {
		Items []api.Pod `json:"items"`
	}
	if err := p.GetJSON(path, &l); err != nil {
		return nil, err
	}
	return l.Items, nil
}

// Eventually polls cond every 200ms until it holds or timeout passes; then
// it fails the test with cond's last message.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var msg string
	for {
		var ok bool
		ok, msg = cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %s", what, timeout, msg)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// IsReady reports whether a pod's Ready condition is True.
func IsReady(p *api.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

// KillMachine kills the peer as a machine dies: SIGKILL to the agent (its
// private containerd dies with it), to the containerd shims serving its
// containers, and to every process in its pods' network namespaces.
func (p *Peer) KillMachine() {
	p.Kill()
	runtime.KillPeerProcesses(p.DataDir)
}

// Main builds the chorus binary, checks the machine, and runs the tests of a
// package with bin set to the binary; a missing dependency fails the run.
// Use it from TestMain: os.Exit(harness.Main(m, &bin)).
func Main(m *testing.M, bin *string) int {
	if err := CheckEnv(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "chorus-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if *bin, err = BuildBinary(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// HTTPGet fetches url on a new connection (service proxies balance
// connections, not requests) and returns the body; a status other than
// 200 is an error.
func HTTPGet(url string) (string, error) {
	c := http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

// Pause stops the agent process (SIGSTOP), as a hung machine: its
// containers keep running, but it answers nothing.
func (p *Peer) Pause() {
	if p.cmd != nil {
		_ = p.cmd.Process.Signal(syscall.SIGSTOP)
	}
}

// Resume continues a paused agent (SIGCONT).
func (p *Peer) Resume() {
	if p.cmd != nil {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
	}
}

// WebDeployment returns the manifest of a deployment of the test image
// example/web:1 listening on 8080 with a readiness probe every second:
// the workload of the end-to-end tests.
func WebDeployment(name string, replicas int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s}
spec:
  replicas: %[2]d
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      containers:
      - name: web
        image: example/web:1
        env: [{name: PORT, value: "8080"}]
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 1, failureThreshold: 1}
`, name, replicas)
}

// Kubectl returns the path of the kubectl binary the tests drive. It is a
// failure, not a skip, when it is missing: `make deps` installs it.
func Kubectl(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl is not on PATH (the Kubernetes API tests drive the real kubectl): run `make deps`: %v", err)
	}
	return p
}
