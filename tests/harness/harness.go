// Package harness starts real chorus peers for end-to-end tests: it builds
// the chorus binary, runs `chorus agent` processes on their own 127.0.0.x
// addresses and data dirs, waits for them, kills, stops and restarts them,
// runs CLI commands against them, and removes everything they left behind.
//
// Peers are secure, as by default: the first peer of a cluster creates the
// cluster secret and its join token; a peer started with --join gets the
// token of the peer it joins (--join-token-file) unless its arguments say
// otherwise (--join-token..., --insecure). The CLI and the harness' own
// requests use the kubeconfig each peer writes (HTTPS verified against
// the cluster CA, the API token).
package harness

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/runtime"
	"github.com/chorus-sh/chorus/trust"
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

// BuildBinary builds cmd/chorus and cmd/chorus-agent into dir, as `make
// build` does, and returns the path of chorus (whose `chorus agent` runs
// the chorus-agent next to it).
func BuildBinary(dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "build", "-ldflags", "-X k8s.io/component-base/version.gitVersion=v1.37.2 "+
		"-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37",
		"-o", dir+string(filepath.Separator), "./cmd/chorus", "./cmd/chorus-agent")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/chorus ./cmd/chorus-agent: %v\n%s", err, b)
	}
	return filepath.Join(dir, "chorus"), nil
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
	// Token is the API token CLI (as CHORUS_TOKEN) and GetJSON send. Start
	// sets it from the peer's kubeconfig when it is empty.
	Token string
	// Kubeconfig is the admin kubeconfig the peer writes.
	Kubeconfig string

	bin     string
	logPath string
	dir     string
	cmd     *exec.Cmd
	exited  chan struct{}
	t       testing.TB
	client  *trust.ClientConfig // from the kubeconfig, once the peer has written it
}

// peers holds the peers of the running tests by bind address, so that a
// peer started with --join ADDR gets the join token of the peer at ADDR.
// Tests use fixed addresses and never share one at a time.
var peers = struct {
	sync.Mutex
	byBind map[string]*Peer
}{byBind: map[string]*Peer{}}

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
	p.Kubeconfig = filepath.Join(p.DataDir, "kubeconfig")
	peers.Lock()
	peers.byBind[bind] = p
	peers.Unlock()
	t.Cleanup(p.Destroy)
	return p
}

// TokenFile is the file holding the peer's join token.
func (p *Peer) TokenFile() string { return filepath.Join(p.DataDir, trust.TokenFile) }

// joinArgs returns the arguments that give a peer started with --join the
// join token of the peer it joins: none when its arguments already say how
// it joins (--join-token..., --insecure) or it joins no harness peer.
func (p *Peer) joinArgs() []string {
	seed := ""
	for i, a := range p.Args {
		switch {
		case strings.HasPrefix(a, "--join-token"), a == "--insecure", a == "--insecure=true":
			return nil
		case a == "--join" && i+1 < len(p.Args):
			seed = p.Args[i+1]
		case strings.HasPrefix(a, "--join="):
			seed = strings.TrimPrefix(a, "--join=")
		}
	}
	if seed == "" {
		return nil
	}
	if _, err := os.Stat(filepath.Join(p.DataDir, trust.TokenFile)); err == nil {
		return nil // a restart: the peer keeps its token
	}
	host := strings.Split(seed, ",")[0]
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	peers.Lock()
	sp := peers.byBind[host]
	peers.Unlock()
	if sp == nil {
		return nil
	}
	// The seed may be starting at the same time: it writes its token first
	// thing.
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err := os.Stat(sp.TokenFile())
		if err == nil {
			return []string{"--join-token-file", sp.TokenFile()}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("peer %s joins %s (%s), which has written no join token within 60s: start it (%v)", p.Name, sp.Name, host, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
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
	args = append(args, p.joinArgs()...)
	cmd := exec.Command(p.bin, args...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// A test binary that dies (a timeout, a kill) takes its agents with
	// it: an orphaned agent would hold the test's addresses and ports.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
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
		// The agent writes its kubeconfig once its API listens.
		if p.loadKubeconfig() == nil {
			resp, err := p.HTTPClient(5 * time.Second).Get(p.URL("/healthz"))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return
				}
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

// loadKubeconfig reads the peer's kubeconfig.
func (p *Peer) loadKubeconfig() error {
	b, err := os.ReadFile(p.Kubeconfig)
	if err != nil {
		return err
	}
	cc, err := trust.ParseKubeconfig(b, p.DataDir)
	if err != nil {
		return err
	}
	p.client = cc
	if p.Token == "" {
		p.Token = cc.Token
	}
	return nil
}

// ReloadKubeconfig reads the peer's kubeconfig again and takes its token
// and CA (a rotation of the cluster secret rewrites them).
func (p *Peer) ReloadKubeconfig() error {
	p.Token = ""
	return p.loadKubeconfig()
}

// URL returns the URL of path on the peer's API (https, or http for an
// --insecure peer).
func (p *Peer) URL(path string) string {
	scheme := "https"
	if p.client != nil && strings.HasPrefix(p.client.Server, "http://") {
		scheme = "http"
	}
	return scheme + "://" + p.API + path
}

// HTTPClient returns a client that trusts the peer's cluster CA (and sends
// no credential: see Request).
func (p *Peer) HTTPClient(timeout time.Duration) *http.Client {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if p.client != nil && len(p.client.CAPEM) > 0 {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(p.client.CAPEM)
		tc.RootCAs = pool
	}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
}

// Request returns a request to path on the peer's API with its token.
func (p *Peer) Request(method, path string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequest(method, p.URL(path), body)
	if err != nil {
		return nil, err
	}
	if p.Token != "" {
		req.Header.Set("Authorization", "Bearer "+p.Token)
	}
	return req, nil
}

// CAFile writes the peer's cluster CA certificate to a file and returns
// its path (for chorus --certificate-authority).
func (p *Peer) CAFile() string {
	p.t.Helper()
	if p.client == nil {
		p.t.Fatalf("peer %s has not written its kubeconfig", p.Name)
	}
	path := filepath.Join(p.dir, "ca.pem")
	if err := os.WriteFile(path, p.client.CAPEM, 0o600); err != nil {
		p.t.Fatal(err)
	}
	return path
}

// Env returns the environment of a CLI command run against the peer: its
// kubeconfig (server, CA, token) and its Token.
func (p *Peer) Env() []string {
	env := append(os.Environ(), "KUBECONFIG="+p.Kubeconfig)
	if p.Token != "" {
		env = append(env, "CHORUS_TOKEN="+p.Token)
	}
	return env
}

// Command returns `chorus -s <this peer> args...` with Env (-s is
// host:port, HTTPS, or http://host:port for an --insecure peer).
func (p *Peer) Command(ctx context.Context, args ...string) *exec.Cmd {
	server := p.API
	if strings.HasPrefix(p.URL(""), "http://") {
		server = "http://" + p.API
	}
	cmd := exec.CommandContext(ctx, p.bin, append([]string{"-s", server}, args...)...)
	cmd.Env = p.Env()
	return cmd
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
	peers.Lock()
	if peers.byBind[p.Bind] == p {
		delete(peers.byBind, p.Bind)
	}
	peers.Unlock()
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
	cmd := p.Command(ctx, args...)
	cmd.Stdin = stdin
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
	req, err := p.Request(http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	resp, err := p.HTTPClient(10 * time.Second).Do(req)
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

// Self returns the chorus.sh/v1 Peer the peer answers for itself, with
// its replication figures.
func (p *Peer) Self() (api.Peer, error) {
	var l api.PeerList
	if err := p.GetJSON(api.PathChorusV1+"/peers?fieldSelector=status.serving%3Dtrue", &l); err != nil {
		return api.Peer{}, err
	}
	if len(l.Items) != 1 || l.Items[0].Status.Replication == nil {
		return api.Peer{}, fmt.Errorf("peer %s did not describe itself: %+v", p.Name, l.Items)
	}
	return l.Items[0], nil
}

// Pods returns the pods the peer reports, in namespace ns ("" for all).
func (p *Peer) Pods(ns string) ([]api.Pod, error) {
	path := "/api/v1/pods"
	if ns != "" {
		path = "/api/v1/namespaces/" + ns + "/pods"
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
	return tool(t, "kubectl", "the Kubernetes API tests drive the real kubectl")
}

// Helm returns the path of the real helm (v3); the test fails if there is
// none (`make deps` builds it).
func Helm(t testing.TB) string {
	t.Helper()
	return tool(t, "helm", "the helm test drives the real helm")
}

func tool(t testing.TB, name, why string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s is not on PATH (%s): run `make deps`: %v", name, why, err)
	}
	return p
}
