package agent

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/trust"
)

var quiet = slog.New(slog.DiscardHandler)

// TestSetupTrust: the first peer creates the secret and its token file;
// a restart finds it; a joining peer stores the token it was given; the
// derived gossip key and API token fill in only what was not given.
func TestSetupTrust(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Name: "n1", Bind: "127.0.0.5", DataDir: dir}
	tr, err := setupTrust(&cfg, quiet, time.Now())
	if err != nil || tr == nil {
		t.Fatalf("first peer: %v %v", tr, err)
	}
	path := filepath.Join(dir, trust.TokenFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", fi, err)
	}
	if cfg.GossipKey != base64.StdEncoding.EncodeToString(tr.secret.GossipKey()) || cfg.APIToken != tr.secret.APIToken() {
		t.Fatalf("derived values not set: %+v", cfg)
	}
	if _, err := tr.creds.Certificate().Leaf.Verify(x509Opts(tr, "127.0.0.5")); err != nil {
		t.Fatalf("the certificate is not valid for the bind address: %v", err)
	}

	// A restart with no flag finds the same secret.
	again := Config{Name: "n1", Bind: "127.0.0.5", DataDir: dir}
	tr2, err := setupTrust(&again, quiet, time.Now())
	if err != nil || tr2.secret != tr.secret || again.APIToken != cfg.APIToken {
		t.Fatalf("restart: %v", err)
	}

	// A peer joining with the token stores it; explicit values win.
	dir2 := t.TempDir()
	tok, _ := os.ReadFile(path)
	j := Config{Name: "n2", Bind: "127.0.0.6", DataDir: dir2, Join: []string{"127.0.0.5"}, JoinToken: string(tok), APIToken: "explicit"}
	tr3, err := setupTrust(&j, quiet, time.Now())
	if err != nil || tr3.secret != tr.secret || j.APIToken != "explicit" || j.GossipKey != cfg.GossipKey {
		t.Fatalf("join: %v %+v", err, j)
	}
	if s, err := trust.ReadTokenFile(filepath.Join(dir2, trust.TokenFile)); err != nil || s != tr.secret {
		t.Fatalf("the joining peer did not store the token: %v", err)
	}

	// Refusals.
	other, _ := trust.NewSecret()
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{Name: "n3", DataDir: t.TempDir(), Join: []string{"127.0.0.5"}}, "--join needs the cluster's join token"},
		{Config{Name: "n3", DataDir: t.TempDir(), JoinToken: "garbage"}, "--join-token: not a chorus join token"},
		{Config{Name: "n1", DataDir: dir, JoinToken: other.Token()}, "belongs to cluster " + tr.secret.ClusterID()},
		{Config{Name: "n3", DataDir: t.TempDir(), JoinToken: other.Token(), Insecure: true}, "--insecure and --join-token"},
	} {
		if _, err := setupTrust(&c.cfg, quiet, time.Now()); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.cfg, err, c.want)
		}
	}
	if b, _ := os.ReadFile(path); string(b) != string(tok) {
		t.Fatal("a refused start changed the token file")
	}

	// --insecure: nothing derived.
	ins := Config{Name: "n4", DataDir: t.TempDir(), Insecure: true}
	if tr, err := setupTrust(&ins, quiet, time.Now()); err != nil || tr != nil || ins.GossipKey != "" || ins.APIToken != "" {
		t.Fatalf("insecure: %v %v %+v", tr, err, ins)
	}
}

func x509Opts(tr *peerTrust, host string) (o x509.VerifyOptions) {
	o.Roots, o.DNSName = tr.ca.Pool(), host
	return o
}

// testPeer returns an agent with its own certificate of the cluster of s.
func testPeer(t *testing.T, s trust.Secret, name string) *Agent {
	t.Helper()
	cfg := Config{Name: name, Bind: "127.0.0.1", DataDir: t.TempDir(), JoinToken: s.Token()}
	tr, err := setupTrust(&cfg, quiet, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return &Agent{cfg: cfg, log: quiet, trust: tr, peerTransport: newPeerTransport(tr)}
}

// fakePeer is another peer's API over TLS that records what it was sent.
func fakePeer(t *testing.T, owner *Agent) (*httptest.Server, chan *http.Request) {
	t.Helper()
	got := make(chan *http.Request, 4)
	srv := httptest.NewUnstartedServer(requireToken(owner.cfg.APIToken, quiet, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r
		io.WriteString(w, `{"items":[]}`)
	})))
	srv.TLS = owner.trust.serverTLS()
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, got
}

// TestForwardCarriesPeerIdentity: a request a peer forwards reaches the
// other peer over TLS verified against the cluster CA, with the
// forwarding peer's certificate as its credential and without the user's
// Authorization header or cookies.
func TestForwardCarriesPeerIdentity(t *testing.T) {
	s, _ := trust.NewSecret()
	n1, n2 := testPeer(t, s, "n1"), testPeer(t, s, "n2")
	peer, got := fakePeer(t, n2)
	addr := strings.TrimPrefix(peer.URL, "https://")
	front := httptest.NewServer(requireToken(n1.cfg.APIToken, quiet, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n1.forwardTo(w, r, "n2", addr, "test")
	})))
	defer front.Close()
	req, _ := http.NewRequest(http.MethodGet, front.URL+"/api/v1/namespaces/default/pods/p/log", nil)
	req.Header.Set("Authorization", "Bearer "+n1.cfg.APIToken)
	req.Header.Set("Cookie", "session=user")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("forwarded request: %s", resp.Status)
	}
	r := <-got
	if r.Header.Get("Authorization") != "" || r.Header.Get("Cookie") != "" {
		t.Fatalf("the user's credential was forwarded: %q %q", r.Header.Get("Authorization"), r.Header.Get("Cookie"))
	}
	if name, ok := trust.PeerName(r.TLS); !ok || name != "n1" || r.Header.Get(headerForwarded) != "n1" {
		t.Fatalf("forwarded as %q %v (header %q), want peer n1", name, ok, r.Header.Get(headerForwarded))
	}

	// The events fan-out goes the same way.
	ereq, _ := http.NewRequest(http.MethodGet, n1.peerURL(addr).String()+"/api/v1/events", nil)
	ereq.Header.Set("Authorization", "Bearer user-token")
	eresp, err := n1.peerDo(t.Context(), ereq)
	if err != nil {
		t.Fatal(err)
	}
	eresp.Body.Close()
	r = <-got
	if eresp.StatusCode != http.StatusOK || r.Header.Get("Authorization") != "" {
		t.Fatalf("events of a peer: %s, Authorization %q", eresp.Status, r.Header.Get("Authorization"))
	}

	// A peer of another cluster is refused: its certificate is not
	// trusted, nor does it trust this cluster's.
	o, _ := trust.NewSecret()
	stranger := testPeer(t, o, "x1")
	sreq, _ := http.NewRequest(http.MethodGet, stranger.peerURL(addr).String()+"/api/v1/events", nil)
	if resp, err := stranger.peerDo(t.Context(), sreq); err == nil {
		resp.Body.Close()
		t.Fatalf("a peer of another cluster got an answer: %s", resp.Status)
	}
	// A client with the right CA but no certificate and no token: 401.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: n1.trust.creds.Pool()}}}
	resp, err = c.Get(peer.URL + "/api/v1/pods")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no certificate, no token: %s", resp.Status)
	}
	select {
	case r := <-got:
		t.Fatalf("the handler served a refused request: %s", r.URL)
	default:
	}
}

// TestInsecurePeerSendsSharedToken: an --insecure peer with an API token
// forwards with that token, never the user's header.
func TestInsecurePeerSendsSharedToken(t *testing.T) {
	a := &Agent{cfg: Config{Name: "n1", APIToken: "shared"}}
	h := http.Header{}
	h.Set("Authorization", "Bearer user")
	a.asPeer(h)
	if h.Get("Authorization") != "Bearer shared" || h.Get(headerForwarded) != "n1" {
		t.Fatalf("headers %v", h)
	}
	open := &Agent{cfg: Config{Name: "n1"}}
	h.Set("Authorization", "Bearer user")
	open.asPeer(h)
	if h.Get("Authorization") != "" {
		t.Fatalf("an open peer forwarded %q", h.Get("Authorization"))
	}
	if u := open.peerURL("h:1"); u.Scheme != "http" {
		t.Fatalf("insecure peer URL %s", u)
	}
}
