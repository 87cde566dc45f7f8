package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// twoPeers is the usual fixture: peer a (127.0.77.2) and peer b
// (127.0.77.3), pod pa on a and pod pb on b, and service default/web on a
// NodePort free on both peers.
type twoPeers struct {
	a, b     *peer
	pa, pb   *pod
	nodePort int
	web      svc
}

func newTwoPeers(t *testing.T, allowB ...string) *twoPeers {
	f := &twoPeers{}
	f.pa = startPod(t, "pa", addr(21))
	f.pb = startPod(t, "pb", addr(22))
	hops := map[string]string{}
	f.a = newPeer(t, "a", addr(2), hops, []string{f.pa.ip})
	f.b = newPeer(t, "b", addr(3), hops, append([]string{f.pb.ip}, allowB...))
	f.nodePort = freePort(t, false, addr(2), addr(3))
	f.web = svc{ns: "default", name: "web", port: 80, nodePort: f.nodePort,
		eps: []nodeEP{{"a", f.pa}, {"b", f.pb}}}
	update(f.a, f.web)
	update(f.b, f.web)
	return f
}

func TestNodePortBalancesAcrossPeers(t *testing.T) {
	f := newTwoPeers(t)
	for _, p := range []*peer{f.a, f.b} {
		seen := getN(t, p.nodePort(f.nodePort), 40)
		t.Logf("peer %s: %v", p.name, seen)
		if seen["pa"] == 0 || seen["pb"] == 0 || seen["pa"]+seen["pb"] != 40 {
			t.Fatalf("peer %s: answers %v, want both pods", p.name, seen)
		}
		// The split is not exact: a connection the client has finished
		// with may still be counted (its teardown in flight) at the next
		// pick. TestPickLeastConnections checks the policy itself.
	}
	sa, sb := f.a.Stats(), f.b.Stats()
	if sa.HopsServed == 0 || sb.HopsServed == 0 {
		t.Errorf("hops served: a %d, b %d; want both > 0", sa.HopsServed, sb.HopsServed)
	}
	if sa.Accepted != 40 || sa.Unserved != 0 || sa.DialFailures != 0 || sa.Listeners != 1 {
		t.Errorf("peer a stats: %+v", sa)
	}
}

func TestRetryDeadEndpoints(t *testing.T) {
	f := newTwoPeers(t, addr(24))
	deadLocal := startPod(t, "dead-local", addr(23))
	deadLocal.close()
	deadRemote := startPod(t, "dead-remote", addr(24)) // on b, which allows it
	deadRemote.close()
	ghost := startPod(t, "ghost", addr(25)) // on a node with no hop
	ghost.close()

	web := f.web
	web.eps = []nodeEP{{"a", deadLocal}, {"b", deadRemote}, {"c", ghost}, {"a", f.pa}, {"b", f.pb}}
	update(f.a, web)
	seen := getN(t, f.a.nodePort(f.nodePort), 40)
	if seen["pa"] == 0 || seen["pb"] == 0 {
		t.Fatalf("answers %v, want both live pods", seen)
	}
	s := f.a.Stats()
	t.Logf("answers %v, stats %+v", seen, s)
	if s.DialFailures < 3 || s.Retries < 3 || s.Unserved != 0 {
		t.Errorf("dial failures %d, retries %d, unserved %d; want >= 3, >= 3, 0", s.DialFailures, s.Retries, s.Unserved)
	}
	if n := f.b.Stats().HopDialFailures; n == 0 {
		t.Errorf("peer b hop dial failures = 0, want > 0")
	}

	// Every endpoint dead: the client connection is closed, counted.
	web.eps = []nodeEP{{"a", deadLocal}, {"b", deadRemote}}
	update(f.a, web)
	if body, err := get(f.a.nodePort(f.nodePort)); err == nil {
		t.Fatalf("all endpoints dead: got %q", body)
	}
	waitFor(t, "unserved", func() bool { return f.a.Stats().Unserved == 1 })

	// No endpoint: closed at once.
	web.eps = nil
	update(f.a, web)
	start := time.Now()
	if body, err := get(f.a.nodePort(f.nodePort)); err == nil {
		t.Fatalf("no endpoints: got %q", body)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("no endpoints: closed after %v", d)
	}
	waitFor(t, "no endpoints", func() bool { return f.a.Stats().NoEndpoints == 1 })
	if _, err := f.a.Dial(context.Background(), "default", "web", 80); !errors.Is(err, ErrNoEndpoints) {
		t.Errorf("Dial with no endpoints: %v, want ErrNoEndpoints", err)
	}
}

// keepAlive is one HTTP/1.1 connection for several requests.
type keepAlive struct {
	c net.Conn
	r *bufio.Reader
}

func dialKeepAlive(t *testing.T, a string) *keepAlive {
	c, err := net.DialTimeout("tcp", a, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &keepAlive{c: c, r: bufio.NewReader(c)}
}

func (k *keepAlive) get(t *testing.T) string {
	t.Helper()
	k.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(k.c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(k.r, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestUpdateKeepsConnectionsAndListeners(t *testing.T) {
	f := newTwoPeers(t)
	onlyA, onlyB := f.web, f.web
	onlyA.eps = []nodeEP{{"a", f.pa}}
	onlyB.eps = []nodeEP{{"b", f.pb}}
	update(f.a, onlyA)
	ap := netip.MustParseAddrPort(f.a.nodePort(f.nodePort))
	f.a.mu.Lock()
	l0 := f.a.listeners[ap]
	f.a.mu.Unlock()

	local := dialKeepAlive(t, f.a.nodePort(f.nodePort))
	if got := local.get(t); got != "pa" {
		t.Fatalf("first answer %q, want pa", got)
	}
	update(f.b, onlyA) // b reaches pa through a's hop
	remote := dialKeepAlive(t, f.b.nodePort(f.nodePort))
	if got := remote.get(t); got != "pa" {
		t.Fatalf("first answer through hop %q, want pa", got)
	}

	// Move the service to pb only, several times over, and back: the
	// established connections stay on pa.
	for range 3 {
		update(f.a, onlyB)
		update(f.a, onlyB) // idempotent
		update(f.b, onlyB)
		if got := local.get(t); got != "pa" {
			t.Fatalf("after update: %q, want pa on the same connection", got)
		}
		if got := remote.get(t); got != "pa" {
			t.Fatalf("after update, through hop: %q, want pa on the same connection", got)
		}
		if got, err := get(f.a.nodePort(f.nodePort)); err != nil || got != "pb" {
			t.Fatalf("new connection after update: %q, %v; want pb", got, err)
		}
	}
	f.a.mu.Lock()
	l1 := f.a.listeners[ap]
	f.a.mu.Unlock()
	if l0 == nil || l0 != l1 {
		t.Fatalf("listener reopened on endpoint change: %p -> %p", l0, l1)
	}
	waitFor(t, "one active connection", func() bool { return f.a.Stats().Active == 1 })
	if s := f.a.Stats(); s.Listeners != 1 || s.ListenErrors != 0 {
		t.Errorf("stats %+v, want 1 listener", s)
	}

	// Removing the NodePort closes the listener; the connection stays.
	noNP := onlyB
	noNP.nodePort = 0
	update(f.a, noNP)
	if !refused(f.a.nodePort(f.nodePort)) {
		t.Errorf("NodePort still open after removal")
	}
	if got := local.get(t); got != "pa" {
		t.Fatalf("after listener removal: %q, want pa on the same connection", got)
	}
	update(f.a, onlyB)
	if got, err := get(f.a.nodePort(f.nodePort)); err != nil || got != "pb" {
		t.Fatalf("NodePort back: %q, %v", got, err)
	}
}

func TestUpdateNoChangeIsCheap(t *testing.T) {
	pa := startPod(t, "pa", addr(21))
	p := newPeer(t, "a", addr(2), map[string]string{}, nil)
	s := svc{ns: "default", name: "web", port: freePort(t, false, addr(2)),
		clusterIP: map[string]string{"a": addr(2)}, eps: []nodeEP{{"a", pa}}}
	update(p, s)
	in := []Service{s.forPeer("a")}
	allocs := testing.AllocsPerRun(100, func() { p.Update(in) })
	t.Logf("allocations per unchanged Update of one service: %.0f", allocs)
	if allocs > 40 {
		t.Errorf("unchanged Update allocates %.0f times", allocs)
	}
}

func TestClusterIPsShareAPort(t *testing.T) {
	p1 := startPod(t, "one", addr(31))
	p2 := startPod(t, "two", addr(32))
	self := newPeer(t, "a", addr(2), map[string]string{}, nil)
	port := freePort(t, false, addr(50), addr(51))
	s1 := svc{ns: "default", name: "one", port: port, clusterIP: map[string]string{"a": addr(50)}, eps: []nodeEP{{"a", p1}}}
	s2 := svc{ns: "other", name: "two", port: port, clusterIP: map[string]string{"a": addr(51)}, eps: []nodeEP{{"a", p2}}}
	update(self, s1, s2)
	for _, c := range []struct{ ip, want string }{{addr(50), "one"}, {addr(51), "two"}} {
		seen := getN(t, net.JoinHostPort(c.ip, strconv.Itoa(port)), 10)
		if seen[c.want] != 10 {
			t.Errorf("%s: answers %v, want only %s", c.ip, seen, c.want)
		}
	}
	// The same (ip, port) claimed twice: one service keeps it.
	s3 := s2
	s3.ns, s3.name, s3.clusterIP = "x", "clash", map[string]string{"a": addr(50)}
	update(self, s1, s2, s3)
	if seen := getN(t, net.JoinHostPort(addr(50), strconv.Itoa(port)), 5); seen["one"] != 5 {
		t.Errorf("clash: answers %v, want the first service to keep its address", seen)
	}
	// Removing a service closes its listener only.
	update(self, s2)
	if !refused(net.JoinHostPort(addr(50), strconv.Itoa(port))) {
		t.Errorf("ClusterIP listener of a removed service still open")
	}
	if got, err := get(net.JoinHostPort(addr(51), strconv.Itoa(port))); err != nil || got != "two" {
		t.Errorf("other service: %q, %v", got, err)
	}
}

func TestListenerRetriedAtNextUpdate(t *testing.T) {
	pa := startPod(t, "pa", addr(21))
	self := newPeer(t, "a", addr(2), map[string]string{}, nil)
	port := freePort(t, false, addr(60))
	blocker, err := net.Listen("tcp", net.JoinHostPort(addr(60), strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	s := svc{ns: "default", name: "web", port: port, clusterIP: map[string]string{"a": addr(60)}, eps: []nodeEP{{"a", pa}}}
	update(self, s)
	update(self, s)
	st := self.Stats()
	if st.ListenersFailing != 1 || st.ListenErrors != 2 || st.Listeners != 0 {
		t.Fatalf("port in use: stats %+v", st)
	}
	blocker.Close()
	update(self, s)
	st = self.Stats()
	if st.ListenersFailing != 0 || st.Listeners != 1 {
		t.Fatalf("port freed: stats %+v", st)
	}
	if got, err := get(net.JoinHostPort(addr(60), strconv.Itoa(port))); err != nil || got != "pa" {
		t.Fatalf("after retry: %q, %v", got, err)
	}
}

func TestHopRefusesAndRejects(t *testing.T) {
	defer func(d time.Duration) { hopHandshakeTimeout = d }(hopHandshakeTimeout)
	hopHandshakeTimeout = 300 * time.Millisecond
	f := newTwoPeers(t)
	ctx := context.Background()
	other := startPod(t, "other", addr(26))

	// Allowed target: served.
	c, err := f.b.DialEndpoint(ctx, f.pa.ep("a", "b"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	// A target AllowHop rejects (a pod that is not a's).
	if _, err := f.b.DialEndpoint(ctx, other.ep("a", "b")); !errors.Is(err, ErrHopRefused) {
		t.Fatalf("refused target: err %v, want ErrHopRefused", err)
	}
	// Unknown node.
	if _, err := f.b.DialEndpoint(ctx, other.ep("zz", "b")); err == nil {
		t.Fatal("unknown node: no error")
	}
	// Malformed headers: answered with hopMalformed, then closed.
	for _, hdr := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"CHOP\x01\x0e127.0.077.21:80",
		"CHOP\x01\x00",
		"CHOP\x03\x0c127.0.0.1:80",
		"CHOP\x01\x0c0.0.0.0:80000",
	} {
		hc, err := net.Dial("tcp", f.a.hop)
		if err != nil {
			t.Fatal(err)
		}
		hc.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(hc, hdr)
		got, err := io.ReadAll(hc)
		hc.Close()
		if len(got) != 1 || got[0] != hopMalformed {
			t.Errorf("header %q: answer %q, %v; want [%d] then the end", hdr, got, err, hopMalformed)
		}
	}
	// A header that never comes: refused at the deadline.
	hc, err := net.Dial("tcp", f.a.hop)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(hc, "CHOP\x01")
	hc.SetDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(hc)
	hc.Close()
	if len(got) != 1 || got[0] != hopMalformed {
		t.Errorf("slow header: answer %q", got)
	}
	waitFor(t, "hop counters", func() bool {
		s := f.a.Stats()
		return s.HopsServed == 1 && s.HopsRefused == 1 && s.HopsMalformed == 6
	})
}

// echoPod answers every connection with what it read, then half-closes;
// with upper set it reads to EOF first and answers in upper case.
func echoPod(t *testing.T, ip string, upper bool) (port int) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				if upper {
					b, _ := io.ReadAll(c)
					io.WriteString(c, strings.ToUpper(string(b)))
				} else {
					io.Copy(c, c)
				}
				c.(*net.TCPConn).CloseWrite()
				io.Copy(io.Discard, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().(*net.TCPAddr).Port
}

func TestHalfCloseAndBulk(t *testing.T) {
	hops := map[string]string{}
	a := newPeer(t, "a", addr(2), hops, []string{addr(27)})
	b := newPeer(t, "b", addr(3), hops, nil)
	upper := echoPod(t, addr(27), true)
	echo := echoPod(t, addr(27), false)
	np := freePort(t, false, addr(2), addr(3))
	np2 := freePort(t, false, addr(2), addr(3))
	for _, p := range []*peer{a, b} {
		p.Update([]Service{{Namespace: "default", Name: "upper", Ports: []ServicePort{
			{Port: 1, NodePort: np, Endpoints: []Endpoint{{Node: "a", IP: addr(27), Port: upper, Local: p == a}}},
			{Port: 2, NodePort: np2, Endpoints: []Endpoint{{Node: "a", IP: addr(27), Port: echo, Local: p == a}}},
		}}})
	}
	for _, p := range []*peer{a, b} {
		// Request, half-close, whole answer.
		c, err := net.Dial("tcp", p.nodePort(np))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "hello, ")
		time.Sleep(10 * time.Millisecond)
		io.WriteString(c, "pod")
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || string(got) != "HELLO, POD" {
			t.Errorf("peer %s: half-close answer %q, %v", p.name, got, err)
		}

		// 4 MiB both ways at once.
		c, err = net.Dial("tcp", p.nodePort(np2))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		data := make([]byte, 4<<20)
		for i := range data {
			data[i] = byte(i * 7)
		}
		go func() {
			c.Write(data)
			c.(*net.TCPConn).CloseWrite()
		}()
		back, err := io.ReadAll(c)
		c.Close()
		if err != nil || len(back) != len(data) || string(back) != string(data) {
			t.Errorf("peer %s: bulk echo: %d bytes back of %d, %v", p.name, len(back), len(data), err)
		}
	}
}

func TestDialAndSplice(t *testing.T) {
	f := newTwoPeers(t)
	ctx := context.Background()
	if _, err := f.b.Dial(ctx, "default", "nope", 80); !errors.Is(err, ErrUnknownService) {
		t.Fatalf("unknown service: %v", err)
	}
	// A port-forward: the agent splices a client connection with Dial's.
	ln, err := net.Listen("tcp", net.JoinHostPort(addr(2), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := f.b.Dial(ctx, "default", "web", 80)
			if err != nil {
				c.Close()
				continue
			}
			wg.Add(1)
			go func() { defer wg.Done(); Splice(c, up) }()
		}
	}()
	seen := getN(t, ln.Addr().String(), 10)
	ln.Close()
	wg.Wait()
	if seen["pa"] == 0 || seen["pb"] == 0 {
		t.Errorf("port-forward answers %v, want both pods", seen)
	}
	// Dial released its endpoints.
	pl := f.b.table.Load().pools[poolKey{"default", "web", 80, TCP}]
	for _, b := range *pl.backends.Load() {
		if n := b.active.Load(); n != 0 {
			t.Errorf("endpoint %v: %d connections still counted", b.ep, n)
		}
	}
}

func TestCloseEndsEverything(t *testing.T) {
	pa := startPod(t, "pa", addr(21))
	echo := echoPod(t, addr(21), false)
	before := goleak.IgnoreCurrent()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dnsAddr := net.JoinHostPort(addr(53), strconv.Itoa(freePort(t, true, addr(53))))
	hop := net.JoinHostPort(addr(2), strconv.Itoa(freePort(t, false, addr(2))))
	p := New(Config{NodeIP: addr(2), HopAddr: hop, DNSAddr: dnsAddr,
		PeerHop:  func(string) (string, bool) { return hop, true },
		AllowHop: func(string, int) bool { return true }, Log: testLogger(t)})
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	np := freePort(t, false, addr(2))
	p.Update([]Service{{Namespace: "default", Name: "echo", Ports: []ServicePort{
		{Port: 7, NodePort: np, Endpoints: []Endpoint{{Node: "a", IP: addr(21), Port: echo, Local: true}}},
	}}})
	// Idle connections of every kind.
	var conns []net.Conn
	dial := func(a string) net.Conn {
		c, err := net.Dial("tcp", a)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		return c
	}
	c := dial(net.JoinHostPort(addr(2), strconv.Itoa(np)))
	io.WriteString(c, "x")
	io.ReadFull(c, make([]byte, 1))
	hc, err := p.DialEndpoint(ctx, Endpoint{Node: "a", IP: pa.ip, Port: pa.port}) // Local false: through own hop
	if err == nil {
		conns = append(conns, hc)
	}
	dial(dnsAddr)
	dial(hop) // no header yet
	waitFor(t, "active", func() bool { return p.Stats().Active == 1 })

	cancel() // Start's context: closes the proxy
	waitFor(t, "close", func() bool { return p.ctx.Err() != nil })
	p.Close()
	p.Update([]Service{{Namespace: "default", Name: "x", ClusterIP: addr(2), Ports: []ServicePort{{Port: np}}}})
	if !refused(net.JoinHostPort(addr(2), strconv.Itoa(np))) {
		t.Error("listener open after Close")
	}
	for _, c := range conns {
		c.Close()
	}
	goleak.VerifyNone(t, before)
	if err := p.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Close: %v", err)
	}
}
