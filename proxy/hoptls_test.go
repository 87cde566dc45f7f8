package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/trust"
)

// testCA is a cluster CA for hop TLS tests: the trust package's, so that
// the tests use the configurations the agent uses.
type testCA struct{ ca *trust.CA }

func newTestCA(t testing.TB) testCA {
	t.Helper()
	s, err := trust.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := s.CA()
	if err != nil {
		t.Fatal(err)
	}
	return testCA{ca}
}

func (c testCA) cert(t testing.TB, name, ip string) tls.Certificate {
	t.Helper()
	cert, err := c.ca.IssuePeer(name, []net.IP{net.ParseIP(ip)}, nil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// withHopTLS makes a peer's hops mutual TLS with a certificate of ca.
func withHopTLS(t testing.TB, ca testCA, name, ip string) peerOpt {
	cert := ca.cert(t, name, ip)
	return func(c *Config) {
		c.HopServerTLS = ca.ca.PeerOnlyServerTLS(cert)
		c.HopClientTLS = ca.ca.PeerOnlyClientTLS(cert)
	}
}

// hopAttempt sends a valid hop header for target over c and returns what
// came back until the end (or 3 s).
func hopAttempt(c net.Conn, target string) ([]byte, error) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	hdr := appendHopHeader(nil, netip.MustParseAddrPort(target))
	if _, err := c.Write(append(hdr, "GET / HTTP/1.0\r\n\r\n"...)); err != nil {
		return nil, err
	}
	return io.ReadAll(c)
}

func TestHopTLS(t *testing.T) {
	ca := newTestCA(t)
	pa := startPod(t, "pa", addr(21))
	hops := map[string]string{}
	a := newPeer(t, "a", addr(2), hops, []string{pa.ip}, withHopTLS(t, ca, "a", addr(2)))
	b := newPeer(t, "b", addr(3), hops, nil, withHopTLS(t, ca, "b", addr(3)))
	np := freePort(t, false, addr(2), addr(3))
	web := svc{ns: "default", name: "web", port: 80, nodePort: np, eps: []nodeEP{{"a", pa}}}
	update(a, web)
	update(b, web)

	// A peer of the cluster: served through the hop, several times (the
	// later ones resume the TLS session).
	if seen := getN(t, b.nodePort(np), 5); seen["pa"] != 5 {
		t.Fatalf("through b's hop: %v", seen)
	}
	waitFor(t, "5 hops served", func() bool {
		s := a.Stats()
		return s.HopsServed == 5 && s.HopsUnauthenticated == 0
	})
	// Half-close and bulk through a TLS hop.
	echo := echoPod(t, addr(21), true)
	c, err := b.DialEndpoint(context.Background(), Endpoint{Node: "a", IP: addr(21), Port: echo})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(*tls.Conn); !ok {
		t.Errorf("hop connection is a %T, want *tls.Conn", c)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "over tls")
	c.(interface{ CloseWrite() error }).CloseWrite()
	got, err := io.ReadAll(c)
	c.Close()
	if err != nil || string(got) != "OVER TLS" {
		t.Errorf("half-close through a TLS hop: %q, %v", got, err)
	}
	// Later hops to the same peer resume the TLS session.
	c, err = b.DialEndpoint(context.Background(), Endpoint{Node: "a", IP: addr(21), Port: echo})
	if err != nil {
		t.Fatal(err)
	}
	if !c.(*tls.Conn).ConnectionState().DidResume {
		t.Error("a second hop to the same peer did not resume the TLS session")
	}
	c.Close()

	other := newTestCA(t)
	tries := []struct {
		name string
		dial func() (net.Conn, error)
	}{
		{"plain TCP", func() (net.Conn, error) { return net.Dial("tcp", a.hop) }},
		{"TLS without a certificate", func() (net.Conn, error) {
			return tls.Dial("tcp", a.hop, &tls.Config{RootCAs: ca.ca.Pool(), ServerName: addr(2)})
		}},
		{"TLS with a certificate of another CA", func() (net.Conn, error) {
			return tls.Dial("tcp", a.hop, &tls.Config{RootCAs: ca.ca.Pool(), ServerName: addr(2),
				Certificates: []tls.Certificate{other.cert(t, "x", addr(4))}})
		}},
	}
	for i, try := range tries {
		c, err := try.dial()
		if err != nil {
			t.Fatalf("%s: dial: %v", try.name, err)
		}
		got, err := hopAttempt(c, pa.addr())
		if len(got) != 0 {
			t.Errorf("%s: got %q (%v), want nothing", try.name, got, err)
		}
		waitFor(t, try.name+" counted", func() bool { return a.Stats().HopsUnauthenticated == uint64(i+1) })
	}

	// A peer of another cluster: refused both ways (its certificate is not
	// trusted by a, and a's is not trusted by it).
	x := newPeer(t, "x", addr(4), hops, nil, withHopTLS(t, other, "x", addr(4)))
	if _, err := x.DialEndpoint(context.Background(), pa.ep("a", "x")); err == nil {
		t.Error("a peer of another CA went through a's hop")
	}
	if _, err := b.DialEndpoint(context.Background(), Endpoint{Node: "x", IP: addr(23), Port: 80}); err == nil ||
		!errors.As(err, new(*tls.CertificateVerificationError)) {
		t.Errorf("b to the hop of another CA's peer: %v, want a certificate verification error", err)
	}
	waitFor(t, "a's stats", func() bool {
		s := a.Stats()
		return s.HopsServed == 7 && s.HopsUnauthenticated == 4 && s.HopsMalformed == 0
	})
}

func TestHopTLSMustRequireClientCerts(t *testing.T) {
	ca := newTestCA(t)
	cfg := ca.ca.ServerTLS(ca.cert(t, "a", addr(2))) // verifies a client certificate only if given
	hop := net.JoinHostPort(addr(2), strconv.Itoa(freePort(t, false, addr(2))))
	p := New(Config{HopAddr: hop, HopServerTLS: cfg})
	defer p.Close()
	if err := p.Start(context.Background()); err == nil {
		t.Fatal("Start accepted a hop TLS configuration that does not require client certificates")
	}
}

// closedAtOnce reports whether the server ends c without sending anything.
func closedAtOnce(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	n, err := c.Read(make([]byte, 1))
	c.Close()
	var ne net.Error
	return n == 0 && err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func TestListenerConnectionCap(t *testing.T) {
	ca := newTestCA(t)
	echo := echoPod(t, addr(27), false) // first, so that its cleanup runs after the peers'
	hops := map[string]string{}
	capped := func(c *Config) { c.MaxConns = 2 }
	a := newPeer(t, "a", addr(2), hops, []string{addr(27)}, capped, withHopTLS(t, ca, "a", addr(2)))
	b := newPeer(t, "b", addr(3), hops, nil, withHopTLS(t, ca, "b", addr(3)))
	np := freePort(t, false, addr(2))
	a.Update([]Service{{Namespace: "default", Name: "echo", Ports: []ServicePort{
		{Port: 7, NodePort: np, Endpoints: []Endpoint{{Node: "a", IP: addr(27), Port: echo, Local: true}}},
	}}})

	// Two connections are relayed and held open; the third is closed at once.
	var held []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", a.nodePort(np))
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(c, "x"); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatalf("held connection: %v", err)
		}
		held = append(held, c)
		defer c.Close()
	}
	// (It is reset: the dial itself may see the reset.)
	over, err := net.Dial("tcp", a.nodePort(np))
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatal(err)
	}
	if err == nil && !closedAtOnce(over) {
		t.Error("third connection to a listener capped at 2 was not closed at once")
	}
	if s := a.Stats(); s.OverLimit != 1 || s.Accepted != 2 {
		t.Errorf("stats after one connection over the cap: %+v", s)
	}
	// Another listener has its own cap: the hop listener serves b.
	hc, err := b.DialEndpoint(context.Background(), Endpoint{Node: "a", IP: addr(27), Port: echo})
	if err != nil {
		t.Fatalf("hop while the NodePort listener is at its cap: %v", err)
	}
	hc2, err := b.DialEndpoint(context.Background(), Endpoint{Node: "a", IP: addr(27), Port: echo})
	if err != nil {
		t.Fatalf("second hop: %v", err)
	}
	if _, err := b.DialEndpoint(context.Background(), Endpoint{Node: "a", IP: addr(27), Port: echo}); err == nil {
		t.Error("third hop to a hop listener capped at 2 was served")
	}
	waitFor(t, "stats after a hop over the cap", func() bool {
		s := a.Stats()
		return s.OverLimit == 2 && s.HopsServed == 2
	})
	hc.Close()
	hc2.Close()

	// Below the cap again: served (the slot is freed just after the
	// relay ends, so a try may still meet the cap).
	held[0].Close()
	waitFor(t, "a connection served again", func() bool {
		c, err := net.Dial("tcp", a.nodePort(np))
		if err != nil {
			return false // reset: still at the cap
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "y")
		_, err = io.ReadFull(c, make([]byte, 1))
		return err == nil
	})
	held[1].Close()
}
