package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/trust"
)

// tlsAgent is an agent of a protected cluster: TLS with a certificate of
// the cluster CA, the derived API token required.
func tlsAgent(t *testing.T) (trust.Secret, *httptest.Server) {
	t.Helper()
	s, _ := trust.NewSecret()
	ca, err := s.CA()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssuePeer("n1", []net.IP{net.IPv4(127, 0, 0, 1)}, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+s.APIToken() {
			writeStatus(w, http.StatusUnauthorized, "Unauthorized", unauthorizedMsg)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"PeerList","apiVersion":"chorus.sh/v1","items":[{"metadata":{"name":"n1"},"status":{"phase":"Alive","serving":true}}]}`))
	}))
	srv.TLS = ca.ServerTLS(cert)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return s, srv
}

// TestKubeconfigGivesServerCAAndToken: the CLI takes the server, the CA
// and the token from --kubeconfig or KUBECONFIG; -s host:port means HTTPS
// and overrides the server only. (chorus' own commands: kubectl's are
// kubectl's, TestKubectlArgs.)
func TestKubeconfigGivesServerCAAndToken(t *testing.T) {
	s, srv := tlsAgent(t)
	ca, _ := s.CA()
	kc, err := trust.AdminKubeconfig(s.ClusterID(), srv.URL, ca.CertPEM(), s.APIToken())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, kc, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if r := runCLI(t, ctx, "", "--kubeconfig", path, "dashboard"); r.code != 0 || !strings.Contains(r.stdout, "/dashboard/") {
		t.Fatalf("--kubeconfig: %+v", r)
	}
	hostPort := strings.TrimPrefix(srv.URL, "https://")
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "missing")+string(filepath.ListSeparator)+path)
	if r := runCLI(t, ctx, "", "-s", hostPort, "dashboard"); r.code != 0 || !strings.Contains(r.stdout, "/dashboard/") {
		t.Fatalf("KUBECONFIG and -s host:port: %+v", r)
	}
	// --token overrides the kubeconfig's.
	if r := runCLI(t, ctx, "", "-s", hostPort, "--token", "wrong", "dashboard"); r.code != 1 || !strings.Contains(r.stderr, "Unauthorized") {
		t.Fatalf("--token wrong: %+v", r)
	}
	// A CA given as a file, the token as a flag.
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, ca.CertPEM(), 0o600)
	t.Setenv("KUBECONFIG", "")
	if r := runCLI(t, ctx, "", "-s", hostPort, "--certificate-authority", caFile, "--token", s.APIToken(), "dashboard"); r.code != 0 {
		t.Fatalf("--certificate-authority: %+v", r)
	}

	// Without the CA: a clear error, and nothing sent.
	if r := runCLI(t, ctx, "", "-s", hostPort, "--token", s.APIToken(), "dashboard"); r.code != 1 || !strings.Contains(r.stderr, "cannot trust chorus agent at "+hostPort) || !strings.Contains(r.stderr, "--kubeconfig") {
		t.Fatalf("no CA: %+v", r)
	}
	// Another cluster's CA is refused.
	o, _ := trust.NewSecret()
	oca, _ := o.CA()
	os.WriteFile(caFile, oca.CertPEM(), 0o600)
	if r := runCLI(t, ctx, "", "-s", hostPort, "--certificate-authority", caFile, "--token", s.APIToken(), "dashboard"); r.code != 1 || !strings.Contains(r.stderr, "cannot trust") {
		t.Fatalf("another cluster's CA: %+v", r)
	}
	// A plain HTTP agent asked over HTTPS.
	plain := newFakeAgent(t)
	plainHost := strings.TrimPrefix(plain.addr(), "http://")
	if r := runCLI(t, ctx, "", "-s", plainHost, "image", "ls"); r.code != 1 || !strings.Contains(r.stderr, "speaks plain HTTP") {
		t.Fatalf("plain HTTP agent: %+v", r)
	}
	// A missing --kubeconfig is an error.
	if r := runCLI(t, ctx, "", "--kubeconfig", filepath.Join(t.TempDir(), "nope"), "image", "ls"); r.code != 1 || !strings.Contains(r.stderr, "no such file") {
		t.Fatalf("missing kubeconfig: %+v", r)
	}
}

// TestKubeconfigCommand: `chorus kubeconfig` prints a kubeconfig for the
// peer of -s from a data dir's token or a token file, and checks it.
func TestKubeconfigCommand(t *testing.T) {
	s, srv := tlsAgent(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, trust.TokenFile), []byte(s.Token()+"\n"), 0o600)
	ctx := context.Background()
	hostPort := strings.TrimPrefix(srv.URL, "https://")
	for _, args := range [][]string{{"--data-dir", dir}, {"--join-token-file", filepath.Join(dir, trust.TokenFile)}} {
		r := runCLI(t, ctx, "", append([]string{"-s", hostPort, "kubeconfig"}, args...)...)
		if r.code != 0 {
			t.Fatalf("kubeconfig %v: %+v", args, r)
		}
		cc, err := trust.ParseKubeconfig([]byte(r.stdout), "")
		if err != nil || cc.Server != "https://"+hostPort || cc.Token != s.APIToken() || cc.Context != s.ClusterID() {
			t.Fatalf("kubeconfig %v: %+v %v\n%s", args, cc, err, r.stdout)
		}
		// The printed kubeconfig works.
		kpath := filepath.Join(t.TempDir(), "k")
		os.WriteFile(kpath, []byte(r.stdout), 0o600)
		if r := runCLI(t, ctx, "", "--kubeconfig", kpath, "dashboard"); r.code != 0 {
			t.Fatalf("printed kubeconfig: %+v", r)
		}
	}
	o, _ := trust.NewSecret()
	other := filepath.Join(t.TempDir(), "token")
	os.WriteFile(other, []byte(o.Token()), 0o600)
	if r := runCLI(t, ctx, "", "-s", hostPort, "kubeconfig", "--join-token-file", other); r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "does not accept this credential") {
		t.Fatalf("another cluster's token: %+v", r)
	}
	t.Setenv("KUBECONFIG", "")
	if r := runCLI(t, ctx, "", "-s", hostPort, "kubeconfig"); r.code != 1 || !strings.Contains(r.stderr, "needs a credential") {
		t.Fatalf("no credential: %+v", r)
	}
}
