package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// selfSigned returns a PEM certificate and key for names.
func selfSigned(t testing.TB, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		DNSNames: names, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

func ingressPeer(t testing.TB, name, ip string, hops map[string]string, allowed []string) (*peer, string, string) {
	t.Helper()
	hp, sp := freePort(t, false, ip), 0
	for sp == 0 || sp == hp {
		sp = freePort(t, false, ip)
	}
	httpAddr, httpsAddr := net.JoinHostPort(ip, strconv.Itoa(hp)), net.JoinHostPort(ip, strconv.Itoa(sp))
	p := newPeer(t, name, ip, hops, allowed, func(c *Config) { c.IngressHTTPAddr, c.IngressHTTPSAddr = httpAddr, httpsAddr })
	return p, httpAddr, httpsAddr
}

func request(t *testing.T, c *http.Client, url, host string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s (Host %s): %v", url, host, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestIngressServer: host and path rules route to two services whose pods
// run on either peer, over HTTP and HTTPS (SNI picks the certificate);
// 404 without a match, 503 for a backend without endpoints or unknown.
func TestIngressServer(t *testing.T) {
	hops := map[string]string{}
	pa, pb := startPod(t, "pa", addr(21)), startPod(t, "pb", addr(22))
	a, httpA, httpsA := ingressPeer(t, "a", addr(2), hops, []string{pa.ip})
	_ = newPeer(t, "b", addr(3), hops, []string{pb.ip})
	a.Update([]Service{
		{Namespace: "default", Name: "web", Ports: []ServicePort{{Port: 80, Endpoints: []Endpoint{pa.ep("a", "a")}}}},
		{Namespace: "shop", Name: "api", Ports: []ServicePort{{Port: 8080, Endpoints: []Endpoint{pb.ep("b", "a")}}}},
		{Namespace: "default", Name: "empty", Ports: []ServicePort{{Port: 80}}},
	})
	webCert, webKey := selfSigned(t, "web.example.com")
	wildCert, wildKey := selfSigned(t, "*.shop.example")
	err := a.UpdateIngress(IngressTable{
		Rules: []IngressRule{
			{Host: "web.example.com", Paths: []IngressPath{{Path: "/", Type: PathPrefix, Backend: IngressBackend{"default", "web", 80}}}},
			{Host: "*.shop.example", Paths: []IngressPath{
				{Path: "/api", Type: PathPrefix, Backend: IngressBackend{"shop", "api", 8080}},
				{Path: "/down", Type: PathExact, Backend: IngressBackend{"default", "empty", 80}},
				{Path: "/gone", Type: PathExact, Backend: IngressBackend{"default", "nosuch", 80}},
				{Path: "/noport", Type: PathExact, Backend: IngressBackend{"default", "web", 0}},
			}},
		},
		Certs: []IngressCert{{Hosts: []string{"web.example.com"}, CertPEM: webCert, KeyPEM: webKey},
			{Hosts: []string{"*.shop.example"}, CertPEM: wildCert, KeyPEM: wildKey},
			{Hosts: []string{"bad.example"}, CertPEM: []byte("junk"), KeyPEM: webKey}},
	})
	if err == nil || !strings.Contains(err.Error(), "bad.example") {
		t.Fatalf("a certificate that does not parse: %v", err)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	for _, x := range []struct {
		host, path string
		code       int
		body       string
	}{
		{"web.example.com", "/", 200, "pa"},
		{"web.example.com:80", "/anything", 200, "pa"},
		{"x.shop.example", "/api/v1", 200, "pb"},
		{"x.shop.example", "/apis", 404, ""},
		{"y.x.shop.example", "/api", 404, ""},
		{"x.shop.example", "/down", 503, ""},
		{"x.shop.example", "/gone", 503, ""},
		{"x.shop.example", "/noport", 503, ""},
		{"other.example", "/", 404, ""},
	} {
		code, body := request(t, c, "http://"+httpA+x.path, x.host)
		if code != x.code || (x.body != "" && body != x.body) {
			t.Errorf("http %s%s: %d %q, want %d %q", x.host, x.path, code, body, x.code, x.body)
		}
	}
	// HTTPS: the certificate follows the SNI name.
	for _, x := range []struct{ sni, path, cn, body string }{
		{"web.example.com", "/", "web.example.com", "pa"},
		{"q.shop.example", "/api", "*.shop.example", "pb"},
	} {
		tc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{ServerName: x.sni, InsecureSkipVerify: true,
				VerifyConnection: func(cs tls.ConnectionState) error {
					if cn := cs.PeerCertificates[0].Subject.CommonName; cn != x.cn {
						t.Errorf("SNI %s: certificate %s, want %s", x.sni, cn, x.cn)
					}
					return nil
				}}}}
		code, body := request(t, tc, "https://"+httpsA+x.path, x.sni)
		tc.CloseIdleConnections()
		if code != 200 || body != x.body {
			t.Errorf("https %s%s: %d %q", x.sni, x.path, code, body)
		}
	}
	s := a.Stats()
	if s.IngressNotFound != 3 || s.IngressUnavailable != 3 || s.IngressRequests < 5 {
		t.Errorf("ingress stats: %+v", s)
	}
}
