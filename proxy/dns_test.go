package proxy

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

func packQuery(t testing.TB, id uint16, name string, typ dnsmessage.Type) []byte {
	t.Helper()
	m := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}},
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// exchangeRaw sends q over network to server and returns the raw answer,
// or nil on timeout.
func exchangeRaw(t testing.TB, network, server string, q []byte) []byte {
	t.Helper()
	c, err := net.Dial(network, server)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if network == "tcp" {
		q = append(binary.BigEndian.AppendUint16(nil, uint16(len(q))), q...)
	}
	if _, err := c.Write(q); err != nil {
		t.Fatal(err)
	}
	if network == "tcp" {
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return nil
		}
		r := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, r); err != nil {
			return nil
		}
		return r
	}
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func ask(t testing.TB, network, server, name string, typ dnsmessage.Type) dnsmessage.Message {
	t.Helper()
	r := exchangeRaw(t, network, server, packQuery(t, 4242, name, typ))
	if r == nil {
		t.Fatalf("%s %s %v: no answer", network, name, typ)
	}
	var m dnsmessage.Message
	if err := m.Unpack(r); err != nil {
		t.Fatalf("%s %s: bad answer: %v", network, name, err)
	}
	if m.ID != 4242 || !m.Response || len(m.Questions) != 1 || m.Questions[0].Name.String() != name {
		t.Fatalf("%s %s: answer header %+v questions %v", network, name, m.Header, m.Questions)
	}
	return m
}

func dnsPeer(t *testing.T, upstreams ...string) *peer {
	dnsAddr := net.JoinHostPort(addr(53), strconv.Itoa(freePort(t, true, addr(53))))
	p := newPeer(t, "a", addr(2), map[string]string{}, nil, func(c *Config) {
		c.DNSAddr = dnsAddr
		c.Upstreams = upstreams
	})
	p.Update([]Service{
		{Namespace: "default", Name: "web", ClusterIP: addr(50), Ports: []ServicePort{{Port: 80}}},
		{Namespace: "prod", Name: "db", ClusterIP: "fd00::50", Ports: []ServicePort{{Port: 5432}}},
		{Namespace: "prod", Name: "headless", Ports: []ServicePort{{Port: 1}}},
	})
	return p
}

// The DNS server moves to a new address and answers there; the old one
// is closed.
func TestSetDNSAddr(t *testing.T) {
	p := dnsPeer(t)
	to := net.JoinHostPort(addr(54), strconv.Itoa(freePort(t, true, addr(54))))
	if err := p.SetDNSAddr(to); err != nil {
		t.Fatal(err)
	}
	old := p.dns
	p.dns = to
	if m := ask(t, "udp", p.dns, "web.default.svc.cluster.local.", dnsmessage.TypeA); len(m.Answers) != 1 {
		t.Fatalf("no answer at %s", to)
	}
	if c, err := net.Dial("tcp", old); err == nil {
		c.Close()
		t.Fatalf("the old DNS address %s still accepts", old)
	}
}

func TestDNS(t *testing.T) {
	p := dnsPeer(t)
	for _, network := range []string{"udp", "tcp"} {
		for _, name := range []string{"web.default.svc.cluster.local.", "web.default.svc.", "WEB.Default.SVC.Cluster.Local."} {
			m := ask(t, network, p.dns, name, dnsmessage.TypeA)
			if m.RCode != dnsmessage.RCodeSuccess || !m.Authoritative || len(m.Answers) != 1 {
				t.Fatalf("%s A %s: %v, %d answers", network, name, m.RCode, len(m.Answers))
			}
			a, ok := m.Answers[0].Body.(*dnsmessage.AResource)
			if !ok || netip.AddrFrom4(a.A).String() != addr(50) || m.Answers[0].Header.TTL != 5 {
				t.Fatalf("%s A %s: answer %v", network, name, m.Answers[0].GoString())
			}
		}
		// Known names, other types: NOERROR, no answer, SOA for caching.
		for _, c := range []struct {
			name string
			typ  dnsmessage.Type
		}{
			{"web.default.svc.cluster.local.", dnsmessage.TypeAAAA},
			{"web.default.svc.cluster.local.", dnsmessage.TypeMX},
			{"db.prod.svc.cluster.local.", dnsmessage.TypeA},
			{"headless.prod.svc.cluster.local.", dnsmessage.TypeA},
			{"cluster.local.", dnsmessage.TypeSOA},
		} {
			m := ask(t, network, p.dns, c.name, c.typ)
			if m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 0 || len(m.Authorities) != 1 {
				t.Errorf("%s %v %s: %v, %d answers, %d authorities", network, c.typ, c.name, m.RCode, len(m.Answers), len(m.Authorities))
			}
		}
		m := ask(t, network, p.dns, "db.prod.svc.cluster.local.", dnsmessage.TypeAAAA)
		if a, ok := m.Answers[0].Body.(*dnsmessage.AAAAResource); !ok || netip.AddrFrom16(a.AAAA).String() != "fd00::50" {
			t.Errorf("%s AAAA: %v", network, m.Answers)
		}
		// Unknown names in the cluster: NXDOMAIN.
		for _, name := range []string{"nope.default.svc.cluster.local.", "web.other.svc.cluster.local.", "nope.default.svc.", "pod.cluster.local."} {
			if m := ask(t, network, p.dns, name, dnsmessage.TypeA); m.RCode != dnsmessage.RCodeNameError || !m.Authoritative {
				t.Errorf("%s %s: %v, want NXDOMAIN", network, name, m.RCode)
			}
		}
		// Elsewhere: REFUSED (no upstream).
		if m := ask(t, network, p.dns, "example.com.", dnsmessage.TypeA); m.RCode != dnsmessage.RCodeRefused {
			t.Errorf("%s example.com.: %v, want REFUSED", network, m.RCode)
		}
	}
	// Malformed: no answer, counted, server still fine.
	before := p.Stats().DNSMalformed
	for _, q := range [][]byte{{1, 2, 3}, {0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0}, {0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}} {
		c, err := net.Dial("udp", p.dns)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(q)
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, err := c.Read(make([]byte, 512)); err == nil {
			t.Errorf("malformed query %x answered with %d bytes", q, n)
		}
		c.Close()
	}
	if r := exchangeRaw(t, "tcp", p.dns, []byte{1, 2, 3}); r != nil {
		t.Errorf("malformed TCP query answered")
	}
	waitFor(t, "malformed count", func() bool { return p.Stats().DNSMalformed == before+4 })

	// Go's resolver is happy with it.
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, p.dns)
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ips, err := r.LookupHost(ctx, "web.default.svc.cluster.local.")
	if err != nil || !slices.Equal(ips, []string{addr(50)}) {
		t.Errorf("Go resolver: %v, %v", ips, err)
	}
	if _, err := r.LookupHost(ctx, "nope.default.svc.cluster.local."); err == nil {
		t.Errorf("Go resolver found an unknown service")
	}
	s := p.Stats()
	t.Logf("stats %+v", s)
	if s.DNSQueries == 0 || s.DNSAnswers == 0 || s.DNSNXDomain == 0 || s.DNSRefused == 0 {
		t.Errorf("DNS counters %+v", s)
	}

	// Updates are seen at once; removed services are gone.
	p.Update(nil)
	if m := ask(t, "udp", p.dns, "web.default.svc.cluster.local.", dnsmessage.TypeA); m.RCode != dnsmessage.RCodeNameError {
		t.Errorf("removed service: %v, want NXDOMAIN", m.RCode)
	}
}

// fakeUpstream answers every A query with 192.0.2.7 over UDP and TCP.
func fakeUpstream(t *testing.T) string {
	a := net.JoinHostPort(addr(54), strconv.Itoa(freePort(t, true, addr(54))))
	answer := func(q []byte) []byte {
		var m dnsmessage.Message
		if m.Unpack(q) != nil || len(m.Questions) != 1 {
			return nil
		}
		m.Response = true
		m.RecursionAvailable = true
		m.Answers = []dnsmessage.Resource{{
			Header: dnsmessage.ResourceHeader{Name: m.Questions[0].Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
			Body:   &dnsmessage.AResource{A: [4]byte{192, 0, 2, 7}},
		}}
		b, _ := m.Pack()
		return b
	}
	pc, err := net.ListenPacket("udp", a)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", a)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if r := answer(buf[:n]); r != nil {
				pc.WriteTo(r, from)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			var l [2]byte
			c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := io.ReadFull(c, l[:]); err == nil {
				q := make([]byte, binary.BigEndian.Uint16(l[:]))
				if _, err := io.ReadFull(c, q); err == nil {
					r := answer(q)
					c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(r))), r...))
				}
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { pc.Close(); ln.Close(); wg.Wait() })
	return a
}

func TestDNSForwards(t *testing.T) {
	dead := net.JoinHostPort(addr(55), strconv.Itoa(freePort(t, true, addr(55)))) // nobody answers: tried, then the next
	p := dnsPeer(t, dead, fakeUpstream(t))
	for _, network := range []string{"udp", "tcp"} {
		m := ask(t, network, p.dns, "example.com.", dnsmessage.TypeA)
		if m.RCode != dnsmessage.RCodeSuccess || len(m.Answers) != 1 {
			t.Fatalf("%s forwarded: %v, %d answers", network, m.RCode, len(m.Answers))
		}
		// The cluster's names are still answered here.
		if m := ask(t, network, p.dns, "nope.default.svc.cluster.local.", dnsmessage.TypeA); m.RCode != dnsmessage.RCodeNameError {
			t.Errorf("%s: cluster name forwarded: %v", network, m.RCode)
		}
	}
	if s := p.Stats(); s.DNSForwarded != 2 {
		t.Errorf("forwarded %d, want 2", s.DNSForwarded)
	}
}

func TestResolvConf(t *testing.T) {
	got := ResolvConf("10.1.0.1", "shop", "")
	want := "nameserver 10.1.0.1\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"
	if got != want {
		t.Errorf("ResolvConf:\n%s\nwant\n%s", got, want)
	}
	if got := ResolvConf("10.1.0.1", "a", "corp.example."); got != "nameserver 10.1.0.1\nsearch a.svc.corp.example svc.corp.example corp.example\noptions ndots:5\n" {
		t.Errorf("ResolvConf with domain: %q", got)
	}
	path := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(path, []byte("# c\nnameserver 127.0.0.53\nnameserver fe80::1%eth0\nnameserver 2001:db8::1\nsearch x\noptions edns0\n"), 0o644)
	ups, err := HostResolvers(path)
	if err != nil || !slices.Equal(ups, []string{"127.0.0.53:53", "[2001:db8::1]:53"}) {
		t.Errorf("HostResolvers: %v, %v", ups, err)
	}
}
