package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/chorus-sh/chorus/tests/images"
)

// httpStatus GETs path from p (trusting its cluster CA) with the
// Authorization header auth (none when "") and returns the status, the
// WWW-Authenticate header and the body.
func httpStatus(t *testing.T, p *harness.Peer, path, auth string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, p.URL(path), nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := p.HTTPClient(10 * time.Second).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(b)
}

// chorusWithCA runs `chorus -s <peer> --certificate-authority <its CA>
// args...` with no kubeconfig and no CHORUS_TOKEN: the credential is
// whatever args give.
func chorusWithCA(t *testing.T, p *harness.Peer, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-s", p.API, "--certificate-authority", p.CAFile()}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECONFIG=", "CHORUS_TOKEN=")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("chorus %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

// TestAPIToken: two peers sharing an explicit API token (which replaces
// the one derived from the cluster secret), one given it by --api-token,
// the other by --api-token-file. Without the token the CLI is refused;
// with it, it works, and logs and exec through the peer that does not run
// the pod reach the peer that does (as that peer, not with the token).
// The health check and the dashboard page are open, the metrics are not.
func TestAPIToken(t *testing.T) {
	imgs, err := images.BuildAll(context.Background(), images.CacheDir())
	if err != nil {
		t.Fatal(err)
	}
	const token = "Shared-token.of_the+cluster/42="
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a1 := harness.NewPeer(t, bin, "a1", "127.0.0.96", "--api-token", token)
	a2 := harness.NewPeer(t, bin, "a2", "127.0.0.97", "--api-token-file", tokenFile, "--join", "127.0.0.96")
	peers := []*harness.Peer{a1, a2}
	for _, p := range peers {
		p.Token = token // for the harness' own calls (CHORUS_TOKEN)
		p.Start()
		if !strings.Contains(p.Log(), `requires a token"`) || strings.Contains(p.Log(), "the API is open") {
			t.Fatalf("peer %s does not say that its API requires a token:\n%s", p.Name, p.Log())
		}
		if _, err := p.CLI("image", "load", imgs["web"]); err != nil {
			t.Fatal(err)
		}
	}
	waitNodes(t, a1, map[string]string{"a1": "Alive", "a2": "Alive"})

	// Without the token, or with another, the CLI is refused (kubectl's
	// words, the peer's reason).
	noToken := "error: You must be logged in to the server ("
	wrongToken := noToken
	refused := func(errOut, want string) bool { return strings.Contains(errOut, want) }
	for _, p := range peers {
		if out, errOut, code := chorusWithCA(t, p, "", "get", "nodes"); code != 1 || out != "" || !refused(errOut, noToken) {
			t.Fatalf("get nodes through %s without a token: %d %q %q", p.Name, code, out, errOut)
		}
		if out, errOut, code := chorusWithCA(t, p, "", "--token", "not-"+token, "get", "nodes"); code != 1 || out != "" || !refused(errOut, wrongToken) {
			t.Fatalf("get nodes through %s with a wrong token: %d %q %q", p.Name, code, out, errOut)
		}
		if _, errOut, code := chorusWithCA(t, p, "", "image", "ls"); code != 1 || errOut != "Error from server (Unauthorized): this peer requires an API token (chorus --kubeconfig <data-dir>/kubeconfig, --token or CHORUS_TOKEN)\n" {
			t.Fatalf("image ls through %s without a token: %d %q", p.Name, code, errOut)
		}
		out, errOut, code := chorusWithCA(t, p, "", "--token", token, "get", "nodes", "--no-headers")
		if code != 0 || !strings.Contains(out, "a1 ") || !strings.Contains(out, "a2 ") {
			t.Fatalf("get nodes through %s with --token: %d %q %q", p.Name, code, out, errOut)
		}
	}
	if _, errOut, code := chorusWithCA(t, a1, harness.WebDeployment("auth", 2), "apply", "-f", "-"); code != 1 || !strings.Contains(errOut, "the server has asked for the client to provide credentials") {
		t.Fatalf("apply without a token: %d %q", code, errOut)
	}
	if out, errOut, code := chorusWithCA(t, a1, harness.WebDeployment("auth", 2), "--token", token, "apply", "-f", "-"); code != 0 ||
		out != "deployment.apps/auth created\n" {
		t.Fatalf("apply with --token: %d %q %q", code, out, errOut)
	}

	byNode := map[string]string{} // node -> a ready pod of auth on it
	harness.Eventually(t, 90*time.Second, "2 ready pods of auth", func() (bool, string) {
		pods, err := a1.Pods("default")
		if err != nil {
			return false, err.Error()
		}
		clear(byNode)
		ready := 0
		for _, p := range pods {
			if p.Metadata.Labels[api.LabelDeployment] == "auth" && harness.IsReady(&p) {
				byNode[p.Spec.NodeName] = p.Metadata.Name
				ready++
			}
		}
		return ready == 2, fmt.Sprint(byNode)
	})
	// Through the peer that does not run the pod: it passes the request on,
	// as itself.
	other := map[string]*harness.Peer{"a1": a2, "a2": a1}
	for node, pod := range byNode {
		via := other[node]
		where := fmt.Sprintf("%s (on %s) through %s", pod, node, via.Name)
		out, errOut, code := chorusWithCA(t, via, "", "--token", token, "logs", pod)
		if code != 0 || !strings.Contains(out, "listening on :8080") {
			t.Fatalf("logs of %s: %d %q %q", where, code, out, errOut)
		}
		out, errOut, code = chorusWithCA(t, via, "", "--token", token, "exec", pod, "--", "/app", "echo", "hi")
		if code != 0 || out != "hi\n" || errOut != "" {
			t.Fatalf("exec in %s: %d %q %q", where, code, out, errOut)
		}
		if _, errOut, code := chorusWithCA(t, via, "", "logs", pod); code != 1 || !refused(errOut, noToken) {
			t.Fatalf("logs of %s without a token: %d %q", where, code, errOut)
		}
		if _, errOut, code := chorusWithCA(t, via, "", "exec", pod, "--", "/app", "echo", "hi"); code != 1 || !refused(errOut, noToken) {
			t.Fatalf("exec in %s without a token: %d %q", where, code, errOut)
		}
	}

	for _, p := range peers {
		code, challenge, body := httpStatus(t, p, "/metrics", "")
		if code != http.StatusUnauthorized || challenge != `Bearer realm="chorus"` || !strings.Contains(body, `"reason": "Unauthorized"`) {
			t.Fatalf("/metrics of %s without the token: %d %q %q", p.Name, code, challenge, body)
		}
		if code, _, body := httpStatus(t, p, "/metrics", "Bearer "+token); code != http.StatusOK || !strings.Contains(body, "chorus_build_info{") {
			t.Fatalf("/metrics of %s with the token: %d %q", p.Name, code, body)
		}
		if code, _, body := httpStatus(t, p, "/healthz", ""); code != http.StatusOK || body != "ok\n" {
			t.Fatalf("/healthz of %s: %d %q", p.Name, code, body)
		}
		if code, _, body := httpStatus(t, p, "/dashboard/", ""); code != http.StatusOK || !strings.HasPrefix(body, "<!doctype html>") {
			t.Fatalf("/dashboard/ of %s: %d", p.Name, code)
		}
		if code, _, _ := httpStatus(t, p, "/api/v1/pods", ""); code != http.StatusUnauthorized {
			t.Fatalf("/api/v1/pods of %s without the token: %d", p.Name, code)
		}
	}
	// The dashboard's URL carries the token for the page.
	out, err := a1.CLI("dashboard")
	if want := "https://" + a1.API + "/dashboard/#token=Shared-token.of_the%2Bcluster%2F42%3D\n"; err != nil || out != want {
		t.Fatalf("dashboard: %q %v, want %q", out, err, want)
	}
}
