package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/chorus-sh/chorus/tests/images"
	"github.com/chorus-sh/chorus/trust"
)

const rotateSecretYAML = `apiVersion: v1
kind: Secret
metadata: {name: db}
stringData: {password: before-the-rotation}
`

// podSeen is what the continuous check compares of a pod.
type podSeen struct {
	Node     string
	Restarts int32
	Ready    bool
}

// kubeGet GETs path from the API a kubeconfig names, with its CA and token.
func kubeGet(kubeconfig []byte, dir, path string, v any) error {
	cc, err := trust.ParseKubeconfig(kubeconfig, dir)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(cc.CAPEM)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, DisableKeepAlives: true}}
	req, err := http.NewRequest(http.MethodGet, cc.Server+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+cc.Token)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, body)
	}
	return json.Unmarshal(body, v)
}

// readyNodes returns the nodes whose Ready condition is True, as the API
// a kubeconfig names answers.
func readyNodes(kubeconfig []byte, dir string) ([]string, error) {
	var l struct {
		Items []struct {
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Status struct {
				Conditions []struct {
					Type   string `json:"type"`
					Status string `json:"status"`
				} `json:"conditions"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := kubeGet(kubeconfig, dir, "/api/v1/nodes", &l); err != nil {
		return nil, err
	}
	var out []string
	for _, n := range l.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == "Ready" && c.Status == "True" {
				out = append(out, n.Metadata.Name)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// webPods lists the pods of deployment rotweb that the API a kubeconfig
// names answers.
func webPods(kubeconfig []byte, dir string) (map[string]podSeen, error) {
	var l struct {
		Items []api.Pod `json:"items"`
	}
	if err := kubeGet(kubeconfig, dir, "/api/v1/namespaces/default/pods", &l); err != nil {
		return nil, err
	}
	out := map[string]podSeen{}
	for _, p := range l.Items {
		if !strings.HasPrefix(p.Metadata.Name, "rotweb-") {
			continue
		}
		var restarts int32
		for _, cs := range p.Status.ContainerStatuses {
			restarts += cs.RestartCount
		}
		out[p.Metadata.Name] = podSeen{Node: p.Spec.NodeName, Restarts: restarts, Ready: harness.IsReady(&p)}
	}
	return out, nil
}

// TestRotateSecret: `chorus cluster rotate-secret` moves a secured
// three-peer cluster to a new secret while the API (with each peer's
// current kubeconfig) keeps answering and the deployment's pods keep
// running where they ran, without a restart. Afterwards every peer holds
// the new token and kubeconfig, the old token is refused everywhere, the
// new kubeconfig works for kubectl, a Secret from before reads back, apply
// still replicates, a stranger with the old token cannot join, a peer that
// was down during the rotation rejoins once given the new token, and a
// peer restarted after the rotation rejoins.
func TestRotateSecret(t *testing.T) {
	kubectl := harness.Kubectl(t)
	p1 := harness.NewPeer(t, bin, "rot1", "127.0.0.241")
	p2 := harness.NewPeer(t, bin, "rot2", "127.0.0.242", "--join", "127.0.0.241")
	p3 := harness.NewPeer(t, bin, "rot3", "127.0.0.243", "--join", "127.0.0.241")
	// rot4 is down during the whole rotation: it is stopped before
	// anything runs on it.
	down := harness.NewPeer(t, bin, "rot4", "127.0.0.244", "--join", "127.0.0.241")
	peers := []*harness.Peer{p1, p2, p3}
	for _, p := range append(peers, down) {
		p.Start()
	}
	waitNodes(t, p1, map[string]string{"rot1": "Alive", "rot2": "Alive", "rot3": "Alive", "rot4": "Alive"})
	down.Stop()
	all := map[string]string{"rot1": "Alive", "rot2": "Alive", "rot3": "Alive", "rot4": "Dead"}
	waitNodes(t, p1, all)
	waitNodes(t, p2, all)
	waitNodes(t, p3, all)
	oldSecret, err := trust.ReadTokenFile(p1.TokenFile())
	if err != nil {
		t.Fatal(err)
	}

	imgs, err := images.BuildAll(context.Background(), images.CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	if out, err := p1.CLI("image", "load", imgs["web"]); err != nil {
		t.Fatalf("image load: %v %s", err, out)
	}
	if _, err := p1.CLI("apply", "-f", manifest(t, harness.WebDeployment("rotweb", 3))); err != nil {
		t.Fatal(err)
	}
	if _, err := p1.CLI("apply", "-f", manifest(t, rotateSecretYAML)); err != nil {
		t.Fatal(err)
	}
	var before map[string]podSeen
	harness.Eventually(t, 90*time.Second, "3 rotweb pods ready", func() (bool, string) {
		kc, err := os.ReadFile(p1.Kubeconfig)
		if err != nil {
			return false, err.Error()
		}
		pods, err := webPods(kc, p1.DataDir)
		if err != nil {
			return false, err.Error()
		}
		ready := 0
		for _, p := range pods {
			if p.Ready {
				ready++
			}
		}
		before = pods
		return len(pods) == 3 && ready == 3, fmt.Sprintf("%v", pods)
	})
	oldFiles := map[string][2][]byte{}
	for _, p := range peers {
		tok, _ := os.ReadFile(p.TokenFile())
		kc, _ := os.ReadFile(p.Kubeconfig)
		oldFiles[p.Name] = [2][]byte{tok, kc}
	}
	oldKubeconfig := filepath.Join(t.TempDir(), "old-kubeconfig")
	if err := os.WriteFile(oldKubeconfig, oldFiles["rot1"][1], 0o600); err != nil {
		t.Fatal(err)
	}

	// The continuous check: every 100 ms, each peer's API answers, with the
	// kubeconfig that peer held at the previous check (as a client that
	// read it a moment ago), that every peer is Ready and that the pods
	// are where they were, not restarted. Bounded: it stops when told, or
	// after 3 minutes.
	ctx, stop := context.WithTimeout(context.Background(), 3*time.Minute)
	defer stop()
	var mu sync.Mutex
	var failures []string
	checks := 0
	var wg sync.WaitGroup
	wg.Add(1)
	defer func() { stop(); wg.Wait() }() // also when the test fails before the end
	go func() {
		defer wg.Done()
		held := map[string][]byte{}
		for _, p := range peers {
			held[p.Name] = oldFiles[p.Name][1]
		}
		fail := func(p *harness.Peer, format string, args ...any) {
			failures = append(failures, time.Now().Format("15:04:05.000 ")+p.Name+": "+fmt.Sprintf(format, args...))
		}
		for ctx.Err() == nil {
			for _, p := range peers {
				kc := held[p.Name]
				pods, err := webPods(kc, p.DataDir)
				nodes, nerr := readyNodes(kc, p.DataDir)
				mu.Lock()
				checks++
				switch {
				case err != nil:
					fail(p, "pods: %v", err)
				case nerr != nil:
					fail(p, "nodes: %v", nerr)
				case fmt.Sprint(pods) != fmt.Sprint(before):
					fail(p, "pods %v, were %v", pods, before)
				case strings.Join(nodes, ",") != "rot1,rot2,rot3":
					fail(p, "ready nodes %v", nodes)
				}
				mu.Unlock()
				if b, err := os.ReadFile(p.Kubeconfig); err == nil {
					held[p.Name] = b
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()

	// The rotation, through rot2, as a user runs it: the CLI with rot2's
	// kubeconfig (read again at each check) and no other credential.
	began := time.Now()
	cctx, ccancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer ccancel()
	cmd := exec.CommandContext(cctx, bin, "-s", p2.API, "cluster", "rotate-secret", "--timeout", "90s")
	cmd.Env = append(slices.DeleteFunc(os.Environ(), func(e string) bool { return strings.HasPrefix(e, "CHORUS_TOKEN=") }), "KUBECONFIG="+p2.Kubeconfig)
	out, err := cmd.CombinedOutput()
	took := time.Since(began)
	if err != nil || !strings.Contains(string(out), "cluster secret rotated to") || !strings.Contains(string(out), "phase") {
		t.Fatalf("rotate-secret: %v\n%s", err, out)
	}
	t.Logf("rotate-secret took %v:\n%s", took, out)
	time.Sleep(time.Second) // the check goes on a little after the end
	stop()
	wg.Wait()
	mu.Lock()
	if len(failures) > 0 {
		t.Fatalf("%d of %d checks failed during the rotation:\n%s", len(failures), checks, strings.Join(failures, "\n"))
	}
	t.Logf("%d checks of the API and the pods, none failed", checks)
	mu.Unlock()

	newSecret, err := trust.ReadTokenFile(p1.TokenFile())
	if err != nil || newSecret == oldSecret {
		t.Fatalf("rot1's token file: %v (same secret: %v)", err, newSecret == oldSecret)
	}
	for _, p := range peers {
		tok, _ := os.ReadFile(p.TokenFile())
		kc, _ := os.ReadFile(p.Kubeconfig)
		if bytes.Equal(tok, oldFiles[p.Name][0]) || bytes.Equal(kc, oldFiles[p.Name][1]) {
			t.Fatalf("%s: token file or kubeconfig unchanged", p.Name)
		}
		if s, err := trust.ReadTokenFile(p.TokenFile()); err != nil || s != newSecret {
			t.Fatalf("%s holds another token than rot1: %v", p.Name, err)
		}
		if _, err := os.Stat(filepath.Join(p.DataDir, "token.previous")); !os.IsNotExist(err) {
			t.Fatalf("%s still holds the previous token: %v", p.Name, err)
		}
		if err := p.ReloadKubeconfig(); err != nil {
			t.Fatal(err)
		}
		if p.Token != newSecret.APIToken() {
			t.Fatalf("%s's kubeconfig does not carry the new token", p.Name)
		}
		if code, _, body := httpStatus(t, p, "/version", "Bearer "+oldSecret.APIToken()); code != http.StatusUnauthorized {
			t.Fatalf("%s with the old token: %d %s", p.Name, code, body)
		}
		// kubectl with the new kubeconfig, on every peer: the Secret of
		// before reads back.
		got, err := exec.Command(kubectl, "--kubeconfig", p.Kubeconfig, "get", "secret", "db", "-o", "jsonpath={.data.password}").CombinedOutput()
		if err != nil || string(got) != base64.StdEncoding.EncodeToString([]byte("before-the-rotation")) {
			t.Fatalf("kubectl get secret through %s: %v %s", p.Name, err, got)
		}
	}
	if out, err := exec.Command(kubectl, "--kubeconfig", oldKubeconfig, "get", "pods").CombinedOutput(); err == nil {
		t.Fatalf("kubectl with the kubeconfig of before the rotation still works:\n%s", out)
	}

	// Apply through one peer still reaches the others.
	if out, err := exec.Command(kubectl, "--kubeconfig", p2.Kubeconfig, "create", "configmap", "after-rotation", "--from-literal=k=v").CombinedOutput(); err != nil {
		t.Fatalf("kubectl create configmap through rot2: %v %s", err, out)
	}
	for _, p := range []*harness.Peer{p1, p3} {
		harness.Eventually(t, 20*time.Second, "the configmap on "+p.Name, func() (bool, string) {
			out, err := exec.Command(kubectl, "--kubeconfig", p.Kubeconfig, "get", "configmap", "after-rotation", "-o", "jsonpath={.data.k}").CombinedOutput()
			return err == nil && string(out) == "v", string(out)
		})
	}

	// A stranger with the old token cannot join, and says why it might be.
	stranger := harness.NewPeer(t, bin, "rot5", "127.0.0.245", "--join", "127.0.0.241", "--join-token", oldSecret.Token())
	stranger.Start()
	harness.Eventually(t, 15*time.Second, "the stranger's failed join logged", func() (bool, string) {
		return strings.Contains(stranger.Log(), "join token is retired"), "no join failure with the hint in its log"
	})
	time.Sleep(3 * time.Second) // a few more retries and gossip rounds
	if seen := nodesSeen(p1); len(seen) != 4 || seen["rot5"] != "" {
		t.Fatalf("rot1 sees %v: the old token joined", seen)
	}
	if seen := nodesSeen(stranger); len(seen) != 1 {
		t.Fatalf("the stranger sees %v", seen)
	}
	stranger.Destroy()

	// The peer that was down comes back with the old secret: it cannot
	// rejoin and says what to do; given a current peer's token in its
	// data dir, it rejoins and catches up.
	down.Start()
	harness.Eventually(t, 15*time.Second, "rot4's failed join logged", func() (bool, string) {
		return strings.Contains(down.Log(), "join token is retired"), "no join failure with the hint in its log"
	})
	if seen := nodesSeen(p1); seen["rot4"] != "Dead" {
		t.Fatalf("rot1 sees %v: rot4 rejoined with the old secret", seen)
	}
	down.Stop()
	tok, err := os.ReadFile(p1.TokenFile())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(down.TokenFile(), tok, 0o600); err != nil {
		t.Fatal(err)
	}
	down.Start()
	all["rot4"] = "Alive"
	waitNodes(t, p1, all)
	if err := down.ReloadKubeconfig(); err != nil {
		t.Fatal(err)
	}
	converged(t, "the peer that was down catches up", p1, down)

	// A peer restarted after the rotation rejoins with the new token.
	p3.Stop()
	p3.Start()
	waitNodes(t, p1, all)
	waitNodes(t, p3, all)
	if out, err := exec.Command(kubectl, "--kubeconfig", p3.Kubeconfig, "get", "configmap", "after-rotation", "-o", "jsonpath={.data.k}").CombinedOutput(); err != nil || string(out) != "v" {
		t.Fatalf("kubectl through the restarted rot3: %v %s", err, out)
	}
	converged(t, "the restarted peer holds the state", p1, p3)
}
