package proxy

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// TestLoadBalancerPortOnEveryPeer: a LoadBalancer port is served on every
// peer's own address at the service port, next to its NodePort.
func TestLoadBalancerPortOnEveryPeer(t *testing.T) {
	f := newTwoPeers(t)
	lbPort := freePort(t, false, addr(2), addr(3))
	for _, p := range []*peer{f.a, f.b} {
		s := f.web.forPeer(p.name)
		s.Ports[0].Port = lbPort
		s.Ports[0].LoadBalancer = true
		p.Update([]Service{s})
	}
	for _, p := range []*peer{f.a, f.b} {
		for _, a := range []string{p.nodePort(lbPort), p.nodePort(f.nodePort)} {
			seen := getN(t, a, 20)
			if seen["pa"]+seen["pb"] != 20 || len(seen) != 2 {
				t.Fatalf("%s: %v, want both pods", a, seen)
			}
		}
	}
}

// TestSessionAffinity: with ClientIP affinity every connection of one
// client address goes to one endpoint, also through the other peer's
// hop; without it, both endpoints answer; after the timeout the client
// is balanced again.
func TestSessionAffinity(t *testing.T) {
	f := newTwoPeers(t)
	svc := f.web.forPeer("a")
	svc.Affinity = time.Hour
	f.a.Update([]Service{svc})
	seen := getN(t, f.a.nodePort(f.nodePort), 30)
	if len(seen) != 1 {
		t.Fatalf("with affinity one client reached %v", seen)
	}
	svc.Affinity = 0
	f.a.Update([]Service{svc})
	if seen := getN(t, f.a.nodePort(f.nodePort), 30); len(seen) != 2 {
		t.Fatalf("without affinity: %v, want both pods", seen)
	}
	// The binding lasts timeout after the last connection.
	pl := newPool(poolKey{"ns", "s", 80, TCP})
	a, b := Endpoint{Node: "a", IP: "10.0.0.1", Port: 1}, Endpoint{Node: "b", IP: "10.0.0.2", Port: 1}
	pl.setEndpoints([]Endpoint{a, b})
	pl.setAffinity(10 * time.Second)
	client := netip.MustParseAddr("192.0.2.1")
	now := time.Unix(1000, 0)
	first := pl.pickFor(client, nil, now)
	pl.chosen(client, first, now)
	first.release()
	for i := range 5 {
		now = now.Add(9 * time.Second)
		got := pl.pickFor(client, nil, now)
		if got != first {
			t.Fatalf("connection %d within the timeout went to %v, not %v", i, got.ep, first.ep)
		}
		pl.chosen(client, got, now)
		got.release()
	}
	// A dead endpoint is not kept for affinity's sake.
	first.failedAt.Store(now.UnixNano())
	if got := pl.pickFor(client, nil, now); got == first {
		t.Fatal("affinity kept an endpoint whose dial just failed")
	} else {
		got.release()
	}
	first.failedAt.Store(0)
	pl.aff.Load().m[client] = affinityEntry{ep: first.ep, until: now}
	other := 0
	for range 10 {
		got := pl.pickFor(client, nil, now.Add(time.Second))
		if got != first {
			other++
		}
		got.release()
	}
	if other == 0 {
		t.Fatal("an expired binding still held")
	}
}

// TestHeadlessDNS: a service without ClusterIP answers with its Ready
// pods' addresses, and a pod's hostname under the service with its own.
func TestHeadlessDNS(t *testing.T) {
	p := dnsPeer(t)
	p.Update([]Service{
		{Namespace: "prod", Name: "db", Ports: []ServicePort{{Port: 5432}},
			Addresses: []string{"10.88.1.7", "10.88.2.9", "10.88.1.7", "junk"},
			Hostnames: map[string]string{"db-0": "10.88.1.7", "db-1": "10.88.2.9"}},
		{Namespace: "prod", Name: "empty"},
	})
	for _, network := range []string{"udp", "tcp"} {
		m := ask(t, network, p.dns, "db.prod.svc.cluster.local.", dnsmessage.TypeA)
		var got []string
		for _, a := range m.Answers {
			got = append(got, netip.AddrFrom4(a.Body.(*dnsmessage.AResource).A).String())
		}
		if m.RCode != dnsmessage.RCodeSuccess || !slices.Equal(got, []string{"10.88.1.7", "10.88.2.9"}) {
			t.Fatalf("%s headless: %v %v", network, m.RCode, got)
		}
		m = ask(t, network, p.dns, "db-1.db.prod.svc.cluster.local.", dnsmessage.TypeA)
		if len(m.Answers) != 1 || netip.AddrFrom4(m.Answers[0].Body.(*dnsmessage.AResource).A).String() != "10.88.2.9" {
			t.Fatalf("%s db-1.db: %v", network, m.Answers)
		}
		if m := ask(t, network, p.dns, "empty.prod.svc.cluster.local.", dnsmessage.TypeA); m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 0 {
			t.Fatalf("%s headless without pods: %v %d answers, want NODATA", network, m.RCode, len(m.Answers))
		}
		if m := ask(t, network, p.dns, "db-7.db.prod.svc.cluster.local.", dnsmessage.TypeA); m.RCode != dnsmessage.RCodeNameError {
			t.Fatalf("%s unknown host: %v", network, m.RCode)
		}
	}
	// Many pods: the answer is bounded to fit a UDP response.
	var many []string
	for i := range 100 {
		many = append(many, "10.88.3."+strconv.Itoa(i+1))
	}
	p.Update([]Service{{Namespace: "prod", Name: "big", Addresses: many}})
	if m := ask(t, "udp", p.dns, "big.prod.svc.cluster.local.", dnsmessage.TypeA); len(m.Answers) != maxDNSAnswers || m.Truncated {
		t.Fatalf("100 pods: %d answers (truncated %v), want %d", len(m.Answers), m.Truncated, maxDNSAnswers)
	}
}

// udpEcho is a UDP server answering "<name>:<datagram>".
func udpEcho(t *testing.T, name, ip string) (int, func()) {
	t.Helper()
	c, err := net.ListenPacket("udp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			c.WriteTo(append([]byte(name+":"), buf[:n]...), from)
		}
	}()
	stop := func() { c.Close(); <-done }
	t.Cleanup(stop)
	return c.LocalAddr().(*net.UDPAddr).Port, stop
}

func udpAsk(t *testing.T, c *net.UDPConn, msg string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 70000)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no answer to %q: %v", msg, err)
	}
	return string(buf[:n])
}

// TestUDPService: datagrams to a UDP NodePort and ClusterIP reach a local
// pod and a pod behind the other peer's hop, and come back from the
// address the client sent to; each client keeps its endpoint; idle flows
// are closed.
func TestUDPService(t *testing.T) {
	hops := map[string]string{}
	portA, _ := udpEcho(t, "pa", addr(21))
	portB, _ := udpEcho(t, "pb", addr(22))
	a := newPeer(t, "a", addr(2), hops, []string{addr(21)})
	b := newPeer(t, "b", addr(3), hops, []string{addr(22)})
	a.udpIdle = 300 * time.Millisecond
	nodePort := freePort(t, true, addr(2))
	cport := freePort(t, true, addr(51))
	services := func(eps ...Endpoint) []Service {
		return []Service{{Namespace: "default", Name: "echo", ClusterIP: addr(51),
			Ports: []ServicePort{{Protocol: UDP, Port: cport, NodePort: nodePort, Endpoints: eps}}}}
	}
	local := Endpoint{Node: "a", IP: addr(21), Port: portA, Local: true}
	remote := Endpoint{Node: "b", IP: addr(22), Port: portB}
	a.Update(services(local, remote))
	_ = b
	seen := map[string]bool{}
	for range 8 {
		for _, target := range []string{a.nodePort(nodePort), net.JoinHostPort(addr(51), strconv.Itoa(cport))} {
			raddr, _ := net.ResolveUDPAddr("udp", target)
			c, err := net.DialUDP("udp", nil, raddr) // a connected socket drops answers from any other address
			if err != nil {
				t.Fatal(err)
			}
			first := udpAsk(t, c, "ping")
			if first != "pa:ping" && first != "pb:ping" {
				t.Fatalf("%s: %q", target, first)
			}
			seen[first[:2]] = true
			big := bytes.Repeat([]byte("x"), 60000)
			if got := udpAsk(t, c, string(big)); got != first[:3]+string(big) {
				t.Fatalf("%s: a 60000-byte datagram came back as %d bytes from another flow", target, len(got))
			}
			c.Close()
		}
	}
	if !seen["pa"] || !seen["pb"] {
		t.Fatalf("answered by %v, want the local pod and the pod behind the hop", seen)
	}
	waitFor(t, "idle UDP flows closed", func() bool { return a.Stats().Active == 0 })
	if s := b.Stats(); s.HopsServed == 0 {
		t.Fatalf("peer b served no UDP hop: %+v", s)
	}
	// No endpoints: datagrams are dropped and counted.
	a.Update(services())
	before := a.Stats().NoEndpoints
	raddr, _ := net.ResolveUDPAddr("udp", a.nodePort(nodePort))
	c, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("lost"))
	waitFor(t, "a datagram counted as without endpoints", func() bool { return a.Stats().NoEndpoints > before })
}

func FuzzUDPFrame(f *testing.F) {
	f.Add(appendFrame(nil, []byte("hello")))
	f.Add([]byte{0xff, 0xff, 1})
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		buf := make([]byte, maxDatagram)
		n, err := readFrame(bytes.NewReader(b), buf)
		if err != nil {
			return
		}
		if !bytes.Equal(appendFrame(nil, buf[:n]), b[:n+2]) {
			t.Fatalf("frame %q decodes to %q", b, buf[:n])
		}
	})
}

// TestUDPDialDoesNotBlockOtherClients: while one client's endpoint is a
// peer whose hop never answers (its dial takes the whole dial timeout),
// another client of the same listener is served at once.
func TestUDPDialDoesNotBlockOtherClients(t *testing.T) {
	hops := map[string]string{}
	portA, _ := udpEcho(t, "pa", addr(21))
	silent, err := net.Listen("tcp", net.JoinHostPort(addr(4), "0")) // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	hops["z"] = silent.Addr().String()
	a := newPeer(t, "a", addr(2), hops, []string{addr(21)})
	nodePort := freePort(t, true, addr(2))
	dead := Endpoint{Node: "z", IP: addr(99), Port: 9}
	local := Endpoint{Node: "a", IP: addr(21), Port: portA, Local: true}
	svc := func(eps ...Endpoint) []Service {
		return []Service{{Namespace: "default", Name: "echo", Ports: []ServicePort{{Protocol: UDP, NodePort: nodePort, Port: 9, Endpoints: eps}}}}
	}
	a.Update(svc(dead))
	raddr, _ := net.ResolveUDPAddr("udp", a.nodePort(nodePort))
	c1, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	c1.Write([]byte("first")) // its dial hangs on the silent hop
	waitFor(t, "the first client's flow", func() bool { return a.Stats().Active == 1 })
	a.Update(svc(dead, local))
	c2, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	start := time.Now()
	if got := udpAsk(t, c2, "second"); got != "pa:second" {
		t.Fatalf("second client: %q", got)
	}
	if d := time.Since(start); d > dialTimeout/2 {
		t.Fatalf("the second client waited %v behind the first one's dial", d)
	}
	// The first client is served too once its dead endpoint is given up:
	// the datagram it sent meanwhile was kept for the dial.
	c1.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 100)
	n, err := c1.Read(buf)
	if err != nil || string(buf[:n]) != "pa:first" {
		t.Fatalf("first client: %q %v", buf[:n], err)
	}
}
