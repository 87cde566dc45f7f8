package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/tests/harness"
)

const ingressApp = `apiVersion: apps/v1
kind: Deployment
metadata: {name: blue}
spec:
  replicas: 1
  selector: {matchLabels: {app: blue}}
  template:
    metadata: {labels: {app: blue}}
    spec:
      containers: [{name: web, image: example/web:1, readinessProbe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 1}}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: green}
spec:
  replicas: 1
  selector: {matchLabels: {app: green}}
  template:
    metadata: {labels: {app: green}}
    spec:
      containers: [{name: web, image: example/web:1, readinessProbe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 1}}]
---
apiVersion: v1
kind: Service
metadata: {name: blue}
spec:
  selector: {app: blue}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: green}
spec:
  selector: {app: green}
  ports: [{name: web, port: 8081, targetPort: 8080}]
`

// testCA makes a CA and a certificate it signs for names, and writes the
// leaf's PEM files to dir.
func testCA(t testing.TB, dir string, names ...string) (pool *x509.CertPool, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ingress test CA"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return pool, certFile, keyFile
}

// ingressGet sends GET url with the Host header host; it returns the status
// and the body.
func ingressGet(c *http.Client, url, host string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestIngress drives the real kubectl against two real peers serving
// Ingresses on other ports than 80 and 443 (--ingress-http-port,
// --ingress-https-port): kubectl create ingress with host and path rules
// (Prefix, Exact, a wildcard host, a named service port) routing to two
// services; every peer answers; TLS from a kubernetes.io/tls Secret made by
// kubectl create secret tls, the certificate checked against the test's
// CA through SNI; 404 when nothing matches; 503 for a backend without a
// Ready endpoint or without a service; kubectl get ingress and
// ingressclass with their columns.
func TestIngress(t *testing.T) {
	peers := startCluster(t, 2, 203, "ing", "--ingress-http-port", "18081", "--ingress-https-port", "18443")
	loadServiceImages(t, peers[0])
	k1, k2 := kubectlFor(t, peers[0]), kubectlFor(t, peers[1])
	must := kubectlMust(t)
	must(k1("apply", "-f", manifest(t, ingressApp)))
	roots, certFile, keyFile := testCA(t, t.TempDir(), "shop.example", "*.apps.example")
	must(k2("create", "secret", "tls", "shop-tls", "--cert="+certFile, "--key="+keyFile))
	must(k2("create", "ingress", "shop", "--class=chorus",
		"--rule=shop.example/blue*=blue:80,tls=shop-tls",
		"--rule=shop.example/green=green:web",
		"--rule=*.apps.example/*=green:web,tls=shop-tls",
		"--rule=gone.example/*=missing:80"))

	harness.Eventually(t, 90*time.Second, "kubectl get ingress lists it with both peers", func() (bool, string) {
		out, err := k1("get", "ingress")
		ok := err == nil && regexp.MustCompile(`(?m)^NAME\s+CLASS\s+HOSTS\s+ADDRESS\s+PORTS\s+AGE$`).MatchString(out) &&
			regexp.MustCompile(`(?m)^shop\s+chorus\s+shop\.example,\*\.apps\.example,gone\.example\s+127\.0\.0\.203,127\.0\.0\.204\s+80, 443\s+\S+$`).MatchString(out)
		return ok, out
	})
	out := must(k2("get", "ingressclass"))
	if !regexp.MustCompile(`(?m)^chorus\s+chorus\.sh/ingress\s+<none>\s+`).MatchString(out) {
		t.Errorf("kubectl get ingressclass:\n%s", out)
	}

	c := &http.Client{Timeout: 5 * time.Second}
	defer c.CloseIdleConnections()
	// The backend sees the path unchanged: the web image answers "/" with
	// "hello from <pod>" and any other path with 404 "no page <path> on
	// <pod>", so the pod that answered shows in either; the Ingress's own
	// 404 names no pod.
	const noRule = "404 not found: no Ingress rule matches"
	for _, p := range peers {
		base := "http://" + p.Bind + ":18081"
		for _, x := range []struct {
			host, path string
			code       int
			want       string
		}{
			{"shop.example", "/blue", 404, "no page /blue on blue-"},
			{"shop.example", "/blue/cart", 404, "no page /blue/cart on blue-"},
			{"SHOP.example:18081", "/blue/", 404, "no page /blue/ on blue-"},
			{"shop.example", "/green", 404, "no page /green on green-"},
			{"shop.example", "/green/x", 404, noRule},
			{"shop.example", "/bluesky", 404, noRule},
			{"a.apps.example", "/", 200, "hello from green-"},
			{"b.apps.example", "/x", 404, "no page /x on green-"},
			{"a.b.apps.example", "/", 404, noRule},
			{"other.example", "/", 404, noRule},
			{"gone.example", "/", 503, "503 service unavailable: default/missing port 0 has no Ready endpoint"},
		} {
			harness.Eventually(t, 60*time.Second, fmt.Sprintf("%s%s via %s", x.host, x.path, p.Name), func() (bool, string) {
				code, body, err := ingressGet(c, base+x.path, x.host)
				return err == nil && code == x.code && strings.HasPrefix(body, x.want), fmt.Sprintf("%d %q %v", code, body, err)
			})
		}
	}
	// A catch-all Prefix "/" and a longer Exact rule of the same host.
	must(k1("create", "ingress", "root", "--rule=root.example/*=blue:80", "--rule=root.example/ready=green:web"))
	for _, p := range peers {
		base := "http://" + p.Bind + ":18081"
		harness.Eventually(t, 30*time.Second, "root.example through "+p.Name, func() (bool, string) {
			code, body, err := ingressGet(c, base+"/", "root.example")
			return err == nil && code == 200 && strings.HasPrefix(body, "hello from blue-"), fmt.Sprintf("%d %q %v", code, body, err)
		})
		code, body, err := ingressGet(c, base+"/ready", "root.example")
		if err != nil || code != 200 || body != "ready\n" {
			t.Fatalf("root.example/ready via %s: %d %q %v", p.Name, code, body, err)
		}
		code, body, err = ingressGet(c, base+"/ready/x", "root.example")
		if err != nil || code != 404 || !strings.HasPrefix(body, "no page /ready/x on blue-") {
			t.Fatalf("root.example/ready/x via %s (the Exact rule must not match): %d %q %v", p.Name, code, body, err)
		}
	}

	// HTTPS: the Secret's certificate, verified against the test CA for
	// each SNI name.
	for _, p := range peers {
		for _, x := range []struct{ sni, path, want string }{{"shop.example", "/blue", "no page /blue on blue-"}, {"x.apps.example", "/", "hello from green-"}} {
			tc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: x.sni}}}
			harness.Eventually(t, 30*time.Second, "https "+x.sni+" via "+p.Name, func() (bool, string) {
				code, body, err := ingressGet(tc, "https://"+p.Bind+":18443"+x.path, x.sni)
				return err == nil && strings.HasPrefix(body, x.want), fmt.Sprintf("%d %q %v", code, body, err)
			})
			tc.CloseIdleConnections()
		}
	}

	// IngressClasses: one of chorus' controller is served, one of another
	// controller is not; deleting an Ingress stops its routes.
	classes := `apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: edge}
spec: {controller: chorus.sh/ingress}
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {name: nginx}
spec: {controller: k8s.io/ingress-nginx}
`
	must(k1("apply", "-f", manifest(t, classes)))
	must(k2("create", "ingress", "edge", "--class=edge", "--rule=edge.example/*=green:web"))
	must(k2("create", "ingress", "other", "--class=nginx", "--rule=nginx.example/*=green:web"))
	for _, p := range peers {
		base := "http://" + p.Bind + ":18081/"
		harness.Eventually(t, 30*time.Second, "class edge served, class nginx not, via "+p.Name, func() (bool, string) {
			c1, b1, err1 := ingressGet(c, base, "edge.example")
			c2, b2, err2 := ingressGet(c, base, "nginx.example")
			return err1 == nil && err2 == nil && c1 == 200 && strings.HasPrefix(b1, "hello from green-") && c2 == 404 && strings.HasPrefix(b2, noRule),
				fmt.Sprintf("edge %d %q %v; nginx %d %q %v", c1, b1, err1, c2, b2, err2)
		})
	}
	out = must(k1("get", "ingressclass"))
	if !regexp.MustCompile(`(?m)^edge\s+chorus\.sh/ingress\s`).MatchString(out) || !regexp.MustCompile(`(?m)^nginx\s+k8s\.io/ingress-nginx\s`).MatchString(out) {
		t.Errorf("kubectl get ingressclass after apply:\n%s", out)
	}
	must(k1("delete", "ingress", "edge"))
	harness.Eventually(t, 30*time.Second, "a deleted Ingress routes nothing", func() (bool, string) {
		code, body, err := ingressGet(c, "http://"+peers[1].Bind+":18081/", "edge.example")
		return err == nil && code == 404 && strings.HasPrefix(body, noRule), fmt.Sprintf("%d %q %v", code, body, err)
	})

	// No Ready endpoint: 503 on every peer.
	must(k1("scale", "deployment", "blue", "--replicas=0"))
	for _, p := range peers {
		harness.Eventually(t, 60*time.Second, "503 for blue via "+p.Name, func() (bool, string) {
			code, body, err := ingressGet(c, "http://"+p.Bind+":18081/", "root.example")
			return err == nil && code == 503, fmt.Sprintf("%d %q %v", code, body, err)
		})
	}
}
