package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Tests use 127.0.77.0/24 so as not to meet other packages' tests.
func addr(n int) string { return "127.0.77." + strconv.Itoa(n) }

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("PROXY_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
}

// freePort returns a TCP port free on every ip (and, with udp, free for
// UDP on the first).
func freePort(t testing.TB, udp bool, ips ...string) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", net.JoinHostPort(ips[0], "0"))
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		closers := []io.Closer{ln}
		ok := true
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			closers = append(closers, l)
		}
		if ok && udp {
			u, err := net.ListenPacket("udp", net.JoinHostPort(ips[0], strconv.Itoa(port)))
			if err != nil {
				ok = false
			} else {
				closers = append(closers, u)
			}
		}
		for _, c := range closers {
			c.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// pod is a small HTTP server answering with its name.
type pod struct {
	name string
	ip   string
	port int
	srv  *http.Server
	done chan struct{}
}

func startPod(t testing.TB, name, ip string) *pod {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	p := &pod{name: name, ip: ip, port: ln.Addr().(*net.TCPAddr).Port, done: make(chan struct{})}
	big := strings.Repeat("x", 64<<10)
	p.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/big" {
				io.WriteString(w, big)
				return
			}
			io.WriteString(w, name)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		defer close(p.done)
		p.srv.Serve(ln)
	}()
	t.Cleanup(p.close)
	return p
}

func (p *pod) close() {
	p.srv.Close()
	<-p.done
}

func (p *pod) addr() string { return net.JoinHostPort(p.ip, strconv.Itoa(p.port)) }

// ep is the endpoint of p running on node, as seen from the peer self.
func (p *pod) ep(node, self string) Endpoint {
	return Endpoint{Node: node, IP: p.ip, Port: p.port, Local: node == self}
}

// get sends one HTTP/1.0 request on a new connection to a and returns the
// body.
func get(a string) (string, error) {
	c, err := net.DialTimeout("tcp", a, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\nHost: test\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return string(b), nil
}

// getN makes n requests to a and counts the answers by body.
func getN(t testing.TB, a string, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	deadline := time.Now().Add(20 * time.Second)
	for i := range n {
		if time.Now().After(deadline) {
			t.Fatalf("%s: only %d requests in 20 s", a, i)
		}
		body, err := get(a)
		if err != nil {
			t.Fatalf("%s: request %d: %v", a, i, err)
		}
		seen[body]++
	}
	return seen
}

// peer is one Proxy with its addresses.
type peer struct {
	*Proxy
	name string
	ip   string
	hop  string
	dns  string
}

type peerOpt func(*Config)

// newPeer starts a proxy for node name on ip with a hop listener; hops
// maps node names to hop addresses and allowed the pod IPs its hop serves.
func newPeer(t testing.TB, name, ip string, hops map[string]string, allowed []string, opts ...peerOpt) *peer {
	t.Helper()
	hop := net.JoinHostPort(ip, strconv.Itoa(freePort(t, false, ip)))
	var mu sync.Mutex
	hops[name] = hop
	cfg := Config{
		NodeIP:  ip,
		HopAddr: hop,
		PeerHop: func(node string) (string, bool) {
			mu.Lock()
			defer mu.Unlock()
			a, ok := hops[node]
			return a, ok
		},
		AllowHop: func(ip string, port int) bool {
			for _, a := range allowed {
				if a == ip {
					return true
				}
			}
			return false
		},
		Log: testLogger(t),
	}
	for _, o := range opts {
		o(&cfg)
	}
	p := New(cfg)
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return &peer{Proxy: p, name: name, ip: ip, hop: hop, dns: cfg.DNSAddr}
}

func (p *peer) nodePort(port int) string { return net.JoinHostPort(p.ip, strconv.Itoa(port)) }

// svc is a service as the agent knows it: endpoints with their nodes. It
// is converted to proxy input for each peer.
type svc struct {
	ns, name  string
	clusterIP map[string]string // peer name -> ClusterIP
	port      int
	nodePort  int
	eps       []nodeEP
}

type nodeEP struct {
	node string
	pod  *pod
}

func (s svc) forPeer(self string) Service {
	sp := ServicePort{Name: "http", Port: s.port, NodePort: s.nodePort}
	for _, e := range s.eps {
		sp.Endpoints = append(sp.Endpoints, e.pod.ep(e.node, self))
	}
	return Service{Namespace: s.ns, Name: s.name, ClusterIP: s.clusterIP[self], Ports: []ServicePort{sp}}
}

func update(p *peer, svcs ...svc) {
	var out []Service
	for _, s := range svcs {
		out = append(out, s.forPeer(p.name))
	}
	p.Update(out)
}

// waitFor polls cond for up to 5 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// refused reports whether a TCP connection to a is refused.
func refused(a string) bool {
	c, err := net.DialTimeout("tcp", a, time.Second)
	if err == nil {
		c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}
