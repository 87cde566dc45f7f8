package trust

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestTokenRoundTrip(t *testing.T) {
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	tok := s.Token()
	if !strings.HasPrefix(tok, "chorus1.") || strings.ContainsAny(tok, " \n+/=") {
		t.Fatalf("token %q: want chorus1. and base64url", tok)
	}
	got, err := ParseToken("  " + tok + "\n")
	if err != nil || got != s {
		t.Fatalf("ParseToken(Token()) = %v, %v", got, err)
	}
	other, _ := NewSecret()
	if other == s || other.Token() == tok || other.APIToken() == s.APIToken() || bytes.Equal(other.GossipKey(), s.GossipKey()) || other.ClusterID() == s.ClusterID() {
		t.Fatal("two secrets derive the same values")
	}
	if len(s.GossipKey()) != 32 || bytes.Equal(s.GossipKey(), s[:]) {
		t.Fatalf("gossip key %x", s.GossipKey())
	}
}

func TestParseTokenErrors(t *testing.T) {
	s, _ := NewSecret()
	tok := s.Token()
	flipped := []byte(tok)
	flipped[12] ^= 1
	if flipped[12] == '.' || flipped[12] == '/' {
		flipped[12] = 'A'
	}
	for _, c := range []struct{ in, want string }{
		{"", "empty"},
		{"hello", "not a chorus join token"},
		{"chorus1.abc", "truncated"},
		{"chorus1.abc.def", "not 32 bytes"},
		{tok[:len(tok)-1], "damaged"},
		{string(flipped), ""},
	} {
		_, err := ParseToken(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseToken(%q) = %v, want an error with %q", c.in, err, c.want)
		}
	}
}

func TestTokenFile(t *testing.T) {
	s, _ := NewSecret()
	path := filepath.Join(t.TempDir(), TokenFile)
	if err := WriteFile(path, []byte(s.Token()+"\n")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v, %v: want 0600", fi.Mode(), err)
	}
	got, err := ReadTokenFile(path)
	if err != nil || got != s {
		t.Fatalf("ReadTokenFile: %v %v", got, err)
	}
	if _, err := ReadTokenFile(filepath.Join(t.TempDir(), "missing")); !os.IsNotExist(err) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestCAIsDerivedAndIssuesPeerCerts(t *testing.T) {
	s, _ := NewSecret()
	ca1, err := s.CA()
	if err != nil {
		t.Fatal(err)
	}
	ca2, err := s.CA()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca1.CertPEM(), ca2.CertPEM()) {
		t.Fatal("the same secret gave two CA certificates")
	}
	other, _ := NewSecret()
	ca3, _ := other.CA()
	now := time.Now()
	cert, err := ca2.IssuePeer("n1", []net.IP{net.ParseIP("127.0.0.5"), net.ParseIP("127.0.0.1")}, []string{"n1"}, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.5", "127.0.0.1", "n1"} {
		if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: ca1.Pool(), DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("verify for %s against the same cluster's CA: %v", host, err)
		}
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: ca1.Pool(), DNSName: "127.0.0.6"}); err == nil {
		t.Error("the certificate is valid for an address it was not issued for")
	}
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: ca3.Pool(), DNSName: "127.0.0.5"}); err == nil {
		t.Error("another cluster's CA trusts the certificate")
	}
	chains, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: ca1.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Fatal(err)
	}
	if name, ok := PeerName(&tls.ConnectionState{VerifiedChains: chains}); !ok || name != "n1" {
		t.Fatalf("PeerName = %q %v", name, ok)
	}
	if _, ok := PeerName(&tls.ConnectionState{}); ok {
		t.Fatal("PeerName of a connection without a client certificate")
	}
}

// TestPeerTLS: a peer's server and another peer's client agree over a real
// TLS connection; a client of another cluster is refused.
func TestPeerTLS(t *testing.T) {
	s, _ := NewSecret()
	ca, _ := s.CA()
	srvCert, _ := ca.IssuePeer("srv", []net.IP{net.ParseIP("127.0.0.1")}, nil, time.Now())
	cliCert, _ := ca.IssuePeer("cli", nil, nil, time.Now())
	ln, err := tls.Listen("tcp", "127.0.0.1:0", ca.ServerTLS(srvCert))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	names := make(chan string, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			if tc.Handshake() != nil {
				names <- "handshake failed"
			} else {
				st := tc.ConnectionState()
				n, _ := PeerName(&st)
				names <- "peer:" + n
			}
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), ca.PeerClientTLS(cliCert))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if n := <-names; n != "peer:cli" {
		t.Fatalf("server saw %q", n)
	}
	o, _ := NewSecret()
	oca, _ := o.CA()
	if c, err := tls.Dial("tcp", ln.Addr().String(), oca.PeerClientTLS(cliCert)); err == nil {
		c.Close()
		t.Fatal("a client trusting another cluster's CA accepted the server")
	}
	<-names
}

func TestKubeconfigRoundTrip(t *testing.T) {
	s, _ := NewSecret()
	ca, _ := s.CA()
	b, err := AdminKubeconfig(s.ClusterID(), "https://127.0.0.5:7070", ca.CertPEM(), s.APIToken())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"apiVersion: v1\n", "kind: Config\n", "current-context: " + s.ClusterID(), "certificate-authority-data: ", "server: https://127.0.0.5:7070", "token: " + s.APIToken()} {
		if !strings.Contains(string(b), want) {
			t.Errorf("kubeconfig lacks %q:\n%s", want, b)
		}
	}
	cc, err := ParseKubeconfig(b, "")
	if err != nil {
		t.Fatal(err)
	}
	if cc.Server != "https://127.0.0.5:7070" || !bytes.Equal(cc.CAPEM, ca.CertPEM()) || cc.Token != s.APIToken() {
		t.Fatalf("parsed %+v", cc)
	}
}

func TestParseKubeconfigFiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "ca.pem"), []byte("PEM"), 0o600)
	os.WriteFile(filepath.Join(dir, "tok"), []byte("tok-1\n"), 0o600)
	k := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://h:1", certificate-authority: ca.pem}}]
users: [{name: u, user: {tokenFile: tok}}]
contexts: [{name: x, context: {cluster: c, user: u, namespace: dev}}]
current-context: x
preferences: {}
`
	cc, err := ParseKubeconfig([]byte(k), dir)
	if err != nil {
		t.Fatal(err)
	}
	if cc.Server != "https://h:1" || string(cc.CAPEM) != "PEM" || cc.Token != "tok-1" || cc.Namespace != "dev" {
		t.Fatalf("parsed %+v", cc)
	}
	for _, c := range []struct{ in, want string }{
		{"apiVersion: v1\n", "current-context: not set"},
		{"current-context: x\n", `no context named "x"`},
		{"current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n", `no cluster named "c"`},
		{"current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: c, cluster: {}}]\n", "clusters[0].cluster.server: not set"},
		{"[", "error"},
	} {
		if _, err := ParseKubeconfig([]byte(c.in), dir); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseKubeconfig(%q) = %v, want %q", c.in, err, c.want)
		}
	}
}

func FuzzParseToken(f *testing.F) {
	s, _ := NewSecret()
	f.Add(s.Token())
	f.Add("chorus1.")
	f.Add("chorus1.AAAA.BBBB")
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseToken(in)
		if err != nil {
			return
		}
		if again, err := ParseToken(got.Token()); err != nil || again != got {
			t.Fatalf("a parsed token does not round-trip: %v", err)
		}
	})
}

func FuzzParseKubeconfig(f *testing.F) {
	s, _ := NewSecret()
	b, _ := AdminKubeconfig("c", "https://127.0.0.1:7070", []byte("x"), s.APIToken())
	f.Add(b)
	f.Add([]byte("current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: s}}]\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		cc, err := ParseKubeconfig(in, "/nonexistent")
		if err == nil && cc.Server == "" {
			t.Fatal("a kubeconfig without a server was accepted")
		}
	})
}

func TestSealerRoundTripAndBinding(t *testing.T) {
	s, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	sl, err := NewSealer(s.DataKey())
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte("hunter2")
	sealed := sl.Seal(plain, []byte("Secret/default/a"))
	if bytes.Contains(sealed, plain) {
		t.Fatal("sealed value holds the clear value")
	}
	got, err := sl.Open(sealed, []byte("Secret/default/a"))
	if err != nil || string(got) != "hunter2" {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if _, err := sl.Open(sealed, []byte("Secret/default/b")); !errors.Is(err, ErrUnseal) {
		t.Fatalf("Open under another object's name: %v, want ErrUnseal", err)
	}
	other, _ := NewSecret()
	sl2, _ := NewSealer(other.DataKey())
	if _, err := sl2.Open(sealed, []byte("Secret/default/a")); !errors.Is(err, ErrUnseal) {
		t.Fatalf("Open with another cluster's key: %v, want ErrUnseal", err)
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := sl.Open(sealed, []byte("Secret/default/a")); !errors.Is(err, ErrUnseal) {
		t.Fatalf("Open of a damaged value: %v, want ErrUnseal", err)
	}
	if _, err := sl.Open(nil, nil); !errors.Is(err, ErrUnseal) {
		t.Fatalf("Open(nil): %v", err)
	}
	if bytes.Equal(s.DataKey(), s.GossipKey()) || bytes.Equal(DataKeyFromGossipKey(s.GossipKey()), s.GossipKey()) {
		t.Fatal("the data key must differ from the gossip key")
	}
}
