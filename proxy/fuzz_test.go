package proxy

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func FuzzHopHeader(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1:80", "10.244.1.17:8080", "[fd00::1]:443", "[2001:db8::1234:5678:9abc:def0:1]:65535",
	} {
		h := appendHopHeader(nil, netip.MustParseAddrPort(s))
		f.Add(h)
		f.Add(append(h, "GET / HTTP/1.1\r\n"...)) // the client's bytes follow
		f.Add(h[:len(h)-1])
		f.Add(appendHopHeaderProto(nil, netip.MustParseAddrPort(s), true))
	}
	for _, s := range []string{
		"", "C", "CHOP", "CHOP\x01", "CHOP\x01\x00", "CHOP\x01\xff", "CHOP\x02\x0c127.0.0.1:80", "CHOP\x03\x0c127.0.0.1:80",
		"CHOP\x01\x0c127.000.0.1:80", "CHOP\x01\x0c0.0.0.0:80", "CHOP\x01\x0a1.2.3.4:0",
		"CHOP\x01\x13[::ffff:1.2.3.4]:80", "CHOP\x01\x0e[fe80::1%a]:1", "GET / HTTP/1.1\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		target, n, err := parseHopHeader(b)
		r := bytes.NewReader(b)
		rt, rerr := readHopHeader(r)
		if err != nil {
			if n != 0 || target.IsValid() {
				t.Fatalf("error %v with n %d target %v", err, n, target)
			}
			if rerr == nil {
				t.Fatalf("parse: %v, read: ok %v", err, rt)
			}
			if errors.Is(err, errHopShort) != errors.Is(rerr, errHopShort) {
				t.Fatalf("parse: %v, read: %v", err, rerr)
			}
			return
		}
		if n > len(b) || n > hopFixedLen+maxHopTarget {
			t.Fatalf("n %d of %d bytes", n, len(b))
		}
		if !bytes.Equal(appendHopHeaderProto(nil, target, b[len(hopMagic)] == hopVersionUDP), b[:n]) {
			t.Fatalf("header %q decodes to %v which encodes differently", b[:n], target)
		}
		if target.Port() == 0 || !target.Addr().IsValid() || target.Addr().IsUnspecified() {
			t.Fatalf("accepted target %v", target)
		}
		// The stream reader agrees and reads no byte past the header.
		if rerr != nil || rt != target || r.Len() != len(b)-n {
			t.Fatalf("read: %v %v, %d bytes left; parse: %v, %d of %d", rt, rerr, r.Len(), target, n, len(b))
		}
	})
}

func FuzzDNS(f *testing.F) {
	p := New(Config{})
	defer p.Close()
	p.Update([]Service{
		{Namespace: "default", Name: "web", ClusterIP: "10.96.0.10", Ports: []ServicePort{{Port: 80}}},
		{Namespace: "prod", Name: "db", ClusterIP: "fd00::10", Ports: []ServicePort{{Port: 5432}}},
	})
	q := func(id uint16, name string, typ dnsmessage.Type) []byte {
		b, err := (&dnsmessage.Message{
			Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
			Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}},
		}).Pack()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	for _, name := range []string{"web.default.svc.cluster.local.", "web.default.svc.", "db.prod.svc.cluster.local.",
		"nope.svc.cluster.local.", "cluster.local.", "example.com.", "."} {
		for _, typ := range []dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeAAAA, dnsmessage.TypeALL, dnsmessage.TypeTXT} {
			f.Add(q(7, name, typ), false)
		}
	}
	f.Add(q(1, "example.com.", dnsmessage.TypeA), true)
	two, _ := (&dnsmessage.Message{Questions: []dnsmessage.Question{
		{Name: dnsmessage.MustNewName("a."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET},
		{Name: dnsmessage.MustNewName("b."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET},
	}}).Pack()
	f.Add(two, false)
	f.Add([]byte{}, false)
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1}, false) // pointer loop
	f.Add([]byte{0, 1, 0x28, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1}, false)     // UPDATE opcode
	f.Fuzz(func(t *testing.T, req []byte, canForward bool) {
		resp, fwd := p.answerDNS(req, canForward)
		if fwd {
			if !canForward || resp != nil {
				t.Fatalf("forward %v with canForward %v, resp %d bytes", fwd, canForward, len(resp))
			}
			return
		}
		if resp == nil {
			return
		}
		var m dnsmessage.Message
		if err := m.Unpack(resp); err != nil {
			t.Fatalf("response does not parse: %v", err)
		}
		var ps dnsmessage.Parser
		h, err := ps.Start(req)
		if err != nil {
			t.Fatalf("answered a query whose header does not parse: %v", err)
		}
		qq, err := ps.Question()
		if err != nil {
			t.Fatalf("answered a query without a question: %v", err)
		}
		if m.ID != h.ID || !m.Response || len(m.Questions) != 1 || m.Questions[0] != qq {
			t.Fatalf("response %+v %v to %+v %v", m.Header, m.Questions, h, qq)
		}
		if len(resp) > 512 {
			t.Fatalf("response of %d bytes", len(resp))
		}
	})
}
