package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/chorus-sh/chorus/tests/images"
	"github.com/chorus-sh/chorus/trust"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
)

// TestSecureByDefault: peers started with no security flag form a
// protected cluster. The first creates the secret and its token (0600);
// a peer joins only with it; a peer without it, or a serf client
// advertising a fake API address, neither joins nor learns anything; the
// API is TLS with the token (plain HTTP and token-less requests are
// refused); the kubeconfig each peer writes works for kubectl; service
// hops between peers are mutual TLS (a plain client at a hop port gets
// nothing); a restart with no flag keeps the secret.
func TestSecureByDefault(t *testing.T) {
	s1 := harness.NewPeer(t, bin, "sec1", "127.0.0.161")
	s2 := harness.NewPeer(t, bin, "sec2", "127.0.0.162", "--join", "127.0.0.161") // the harness passes sec1's token
	other, err := trust.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	// A peer with the token of another cluster, asking to join sec1.
	intruder := harness.NewPeer(t, bin, "sec3", "127.0.0.163", "--join", "127.0.0.161", "--join-token", other.Token())
	s1.Start()
	if !strings.Contains(s1.Log(), "created a new cluster") {
		t.Fatalf("the first peer did not say it created a cluster:\n%s", s1.Log())
	}
	for _, f := range []string{s1.TokenFile(), s1.Kubeconfig} {
		fi, err := os.Stat(f)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", f, fi, err)
		}
	}
	secret, err := trust.ReadTokenFile(s1.TokenFile())
	if err != nil {
		t.Fatal(err)
	}
	s2.Start()
	intruder.Start()
	waitNodes(t, s1, map[string]string{"sec1": "Alive", "sec2": "Alive"})
	if s, err := trust.ReadTokenFile(s2.TokenFile()); err != nil || s != secret {
		t.Fatalf("the joined peer did not keep the cluster's token: %v", err)
	}
	if _, err := s1.CLI("apply", "-f", manifest(t, appYAML)); err != nil {
		t.Fatal(err)
	}
	converged(t, "sec2 gets the state", s1, s2)

	// A serf member that has no key, advertising an API address.
	evil := fakeMember(t, "127.0.0.164", "127.0.0.161:7946")

	// Several rounds of gossip and anti-entropy later, nothing leaked.
	time.Sleep(6 * time.Second)
	for _, p := range []*harness.Peer{s1, s2} {
		if seen := nodesSeen(p); len(seen) != 2 {
			t.Fatalf("%s sees %v: an outsider got in", p.Name, seen)
		}
	}
	if seen := nodesSeen(intruder); len(seen) != 1 {
		t.Fatalf("the intruder sees %v", seen)
	}
	if out, _ := intruder.CLI("get", "deployments", "-A"); strings.Contains(out, "cart") {
		t.Fatalf("the intruder learned the state:\n%s", out)
	}
	if n := len(evil.Members()); n != 1 {
		t.Fatalf("the keyless serf member sees %d members: %v", n, evil.Members())
	}

	// A peer asked to --join without a token refuses to start.
	cmd := exec.Command(bin, "agent", "--name", "sec5", "--bind", "127.0.0.165", "--data-dir", filepath.Join(t.TempDir(), "d"), "--join", "127.0.0.161", "--discover=false")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--join needs the cluster's join token") {
		t.Fatalf("agent --join without a token: %v\n%s", err, out)
	}

	// The API: TLS only, the token required but for /healthz. self is
	// the peer's description of itself.
	const self = "/apis/chorus.sh/v1/peers?fieldSelector=status.serving%3Dtrue"
	plain := http.Client{Timeout: 5 * time.Second}
	for _, path := range []string{"/healthz", "/api/v1/pods"} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+s1.API+path, nil)
		req.Header.Set("Authorization", "Bearer "+s1.Token)
		if resp, err := plain.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || strings.Contains(string(b), "items") {
				t.Fatalf("plain HTTP %s: %s %q", path, resp.Status, b)
			}
		}
	}
	if code, _, body := httpStatus(t, s1, "/healthz", ""); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz over TLS: %d %q", code, body)
	}
	for _, path := range []string{"/api/v1/pods", "/version", self, "/apis/chorus.sh/v1/images", "/metrics"} {
		if code, _, _ := httpStatus(t, s1, path, ""); code != http.StatusUnauthorized {
			t.Fatalf("%s without the token: %d", path, code)
		}
		if code, _, _ := httpStatus(t, s1, path, "Bearer "+other.APIToken()); code != http.StatusUnauthorized {
			t.Fatalf("%s with another cluster's token: %d", path, code)
		}
	}
	if code, _, body := httpStatus(t, s2, self, "Bearer "+secret.APIToken()); code != http.StatusOK || !strings.Contains(body, `"name":"sec2"`) {
		t.Fatalf("%s with the derived token: %d %q", self, code, body)
	}

	// kubectl with the kubeconfig a peer wrote: TLS verified, token accepted.
	for _, p := range []*harness.Peer{s1, s2} {
		for path, want := range map[string]string{"/healthz": "ok", self: `"name":"` + p.Name + `"`} {
			out, err := exec.Command("kubectl", "--kubeconfig", p.Kubeconfig, "get", "--raw", path).CombinedOutput()
			if err != nil || !strings.Contains(string(out), want) {
				t.Fatalf("kubectl --kubeconfig %s get --raw %s: %v %s", p.Kubeconfig, path, err, out)
			}
		}
	}
	// `kubectl version` gets past TLS and authentication (the server's
	// answer to /version is another matter).
	out, _ = exec.Command("kubectl", "--kubeconfig", s1.Kubeconfig, "version").CombinedOutput()
	for _, bad := range []string{"certificate", "Unauthorized", "x509", "tls:"} {
		if strings.Contains(string(out), bad) {
			t.Fatalf("kubectl version: %s", out)
		}
	}
	// `chorus kubeconfig` for sec2 from sec1's data dir works too.
	kc, err := exec.Command(bin, "-s", s2.API, "kubeconfig", "--data-dir", s1.DataDir).Output()
	if err != nil {
		t.Fatalf("chorus kubeconfig: %v", err)
	}
	kpath := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kpath, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("kubectl", "--kubeconfig", kpath, "get", "--raw", self).CombinedOutput(); err != nil || !strings.Contains(string(out), `"name":"sec2"`) {
		t.Fatalf("kubectl with the printed kubeconfig: %v %s", err, out)
	}

	// Service hops are mutual TLS: service traffic through the peer that
	// does not run the pod works; a plain TCP client at the pod's peer's
	// hop port, sending a valid hop header for the pod, gets nothing.
	imgs, err := images.BuildAll(context.Background(), images.CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []*harness.Peer{s1, s2} {
		if out, err := p.CLI("image", "load", imgs["web"]); err != nil {
			t.Fatalf("image load on %s: %v %s", p.Name, err, out)
		}
	}
	if _, err := s1.CLI("apply", "-f", manifest(t, harness.WebDeployment("hopweb", 1))); err != nil {
		t.Fatal(err)
	}
	if out, err := s1.CLI("expose", "deployment", "hopweb", "--type=NodePort", "--port=8080"); err != nil {
		t.Fatalf("expose: %v %s", err, out)
	}
	var pod api.Pod
	harness.Eventually(t, 60*time.Second, "the hopweb pod ready", func() (bool, string) {
		pods, err := s1.Pods("default")
		if err != nil {
			return false, err.Error()
		}
		for _, p := range pods {
			if strings.HasPrefix(p.Metadata.Name, "hopweb-") && harness.IsReady(&p) {
				pod = p
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d pods, none ready", len(pods))
	})
	owner, through := s1, s2
	if pod.Spec.NodeName == "sec2" {
		owner, through = s2, s1
	}
	var nodePort string
	harness.Eventually(t, 30*time.Second, "the NodePort", func() (bool, string) {
		out, _ := s1.CLI("get", "services", "hopweb")
		m := regexp.MustCompile(`8080:(\d+)/TCP`).FindStringSubmatch(out)
		if m != nil {
			nodePort = m[1]
		}
		return m != nil, out
	})
	harness.Eventually(t, 30*time.Second, "hopweb through "+through.Name+" (a TLS hop to "+owner.Name+")", func() (bool, string) {
		failed, pods := answers("http://"+through.Bind+":"+nodePort+"/", 10)
		return failed == 0 && pods[pod.Metadata.Name] == 10, fmt.Sprintf("%d failed, answered by %v", failed, pods)
	})
	target := pod.Status.PodIP + ":8080"
	raw, err := net.DialTimeout("tcp", owner.Bind+":7948", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	hdr := append([]byte{'C', 'H', 'O', 'P', 1, byte(len(target))}, target...)
	raw.Write(append(hdr, "GET / HTTP/1.0\r\n\r\n"...))
	got, err := io.ReadAll(raw)
	raw.Close()
	if len(got) != 0 {
		t.Fatalf("a plain TCP hop to %s through %s got %q (%v), want nothing", target, owner.Name, got, err)
	}
	harness.Eventually(t, 10*time.Second, "the refused hop counted", func() (bool, string) {
		code, _, body := httpStatus(t, owner, "/metrics", "Bearer "+secret.APIToken())
		m := regexp.MustCompile(`(?m)^chorus_proxy_hops_unauthenticated_total (\d+)`).FindStringSubmatch(body)
		return code == http.StatusOK && m != nil && m[1] != "0", fmt.Sprintf("%d %v", code, m)
	})

	// A restart with no flag keeps the secret and rejoins.
	s2.Stop()
	s2.Start()
	if n := strings.Count(s2.Log(), "joined cluster with its token"); n != 1 {
		t.Fatalf("sec2 took a join token %d times, want once (the first start)", n)
	}
	if s, err := trust.ReadTokenFile(s2.TokenFile()); err != nil || s != secret {
		t.Fatalf("the restarted peer changed its secret: %v", err)
	}
	waitNodes(t, s1, map[string]string{"sec1": "Alive", "sec2": "Alive"})
	converged(t, "the restarted peer serves the state", s1, s2)
}

// fakeMember starts a serf member with no gossip key, advertising an API
// address, and has it try to join seed; it is shut down with the test.
func fakeMember(t *testing.T, bind, seed string) *serf.Serf {
	t.Helper()
	conf := serf.DefaultConfig()
	conf.NodeName = "evil"
	conf.Tags = map[string]string{"api": bind + ":7070", "hop": bind + ":7948"}
	conf.MemberlistConfig = memberlist.DefaultLANConfig()
	conf.MemberlistConfig.BindAddr = bind
	conf.MemberlistConfig.BindPort = 7946
	conf.MemberlistConfig.AdvertiseAddr = bind
	conf.MemberlistConfig.AdvertisePort = 7946
	conf.MemberlistConfig.LogOutput = io.Discard
	conf.LogOutput = io.Discard
	s, err := serf.Create(conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := s.Join([]string{seed}, true)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("a serf member without the key joined %s", seed)
		}
	case <-ctx.Done():
	}
	return s
}

// TestDiscoveryNeedsToken: by mDNS, a peer with the cluster's token joins
// it and a peer without it stays alone (it starts a cluster of its own).
func TestDiscoveryNeedsToken(t *testing.T) {
	// mDNS needs multicast on the loopback interface, off by default.
	if out, err := exec.Command("ip", "link", "set", "lo", "multicast", "on").CombinedOutput(); err != nil {
		t.Fatalf("enable multicast on lo: %v %s", err, out)
	}
	d1 := harness.NewPeer(t, bin, "md1", "127.0.0.166", "--discover")
	d1.Start()
	d2 := harness.NewPeer(t, bin, "md2", "127.0.0.167", "--discover", "--join-token-file", d1.TokenFile())
	d3 := harness.NewPeer(t, bin, "md3", "127.0.0.168", "--discover")
	d2.Start()
	d3.Start()
	waitNodes(t, d1, map[string]string{"md1": "Alive", "md2": "Alive"})
	if _, err := d1.CLI("apply", "-f", manifest(t, appYAML)); err != nil {
		t.Fatal(err)
	}
	converged(t, "state shared with a discovered peer", d1, d2)
	time.Sleep(4 * time.Second)
	if seen := nodesSeen(d3); len(seen) != 1 {
		t.Fatalf("the peer without the token sees %v", seen)
	}
	if seen := nodesSeen(d1); len(seen) != 2 {
		t.Fatalf("md1 sees %v", seen)
	}
	if out, _ := d3.CLI("get", "deployments", "-A"); strings.Contains(out, "cart") {
		t.Fatalf("the peer without the token learned the state:\n%s", out)
	}
}

// TestInsecureCluster: --insecure runs an open cluster as before (plain
// HTTP, no token, no gossip key) and says so loudly.
func TestInsecureCluster(t *testing.T) {
	i1 := harness.NewPeer(t, bin, "ins1", "127.0.0.169", "--insecure")
	i2 := harness.NewPeer(t, bin, "ins2", "127.0.0.170", "--insecure", "--join", "127.0.0.169")
	i1.Start()
	i2.Start()
	if !strings.Contains(i1.Log(), "INSECURE: this peer runs an open cluster") {
		t.Fatalf("no warning:\n%s", i1.Log())
	}
	if _, err := os.Stat(i1.TokenFile()); !os.IsNotExist(err) {
		t.Fatalf("an insecure peer wrote a join token: %v", err)
	}
	waitNodes(t, i2, map[string]string{"ins1": "Alive", "ins2": "Alive"})
	resp, err := http.Get("http://" + i1.API + "/version")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("plain HTTP without a token on an insecure peer: %s", resp.Status)
	}
	if out, err := i2.CLI("get", "nodes", "--no-headers"); err != nil || !strings.Contains(out, "ins1") {
		t.Fatalf("CLI through the kubeconfig of an insecure peer: %v %q", err, out)
	}
}
