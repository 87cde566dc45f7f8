package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

const (
	dnsTTL = 5 // seconds, for answers and negative answers
	// maxDNSAnswers bounds the addresses of one answer, so that it fits
	// in a 512-byte UDP response (a headless service with more Ready pods
	// answers with the first ones by address).
	maxDNSAnswers   = 24
	dnsMaxInflight  = 64               // forwarded queries and TCP connections at once
	dnsTCPIdle      = 10 * time.Second // a TCP DNS connection idle this long is closed
	upstreamTimeout = 2 * time.Second  // per upstream resolver try
)

type dnsServer struct {
	p         *Proxy
	udp       *net.UDPConn
	tcp       *net.TCPListener
	upstreams []string
	sem       chan struct{}
}

// startDNS binds UDP and TCP on addr.
func (p *Proxy) startDNS(addr string) (*dnsServer, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("proxy: DNS address: %w", err)
	}
	udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, fmt.Errorf("proxy: DNS over UDP: %w", err)
	}
	if ap.Port() == 0 { // take the same port for TCP
		ap = udp.LocalAddr().(*net.UDPAddr).AddrPort()
	}
	tcp, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
	if err != nil {
		udp.Close()
		return nil, fmt.Errorf("proxy: DNS over TCP: %w", err)
	}
	d := &dnsServer{p: p, udp: udp, tcp: tcp, sem: make(chan struct{}, dnsMaxInflight)}
	for _, u := range p.cfg.Upstreams {
		if u == addr || u == ap.String() {
			p.log.Warn("DNS upstream is this server, ignored", "upstream", u)
			continue
		}
		d.upstreams = append(d.upstreams, u)
	}
	return d, nil
}

func (d *dnsServer) run() {
	d.p.wg.Add(2)
	go d.udpLoop()
	go func() {
		defer d.p.wg.Done()
		acceptLoop(d.p, d.tcp, d.serveTCP)
	}()
}

func (d *dnsServer) close() {
	d.udp.Close()
	d.tcp.Close()
}

func (d *dnsServer) udpLoop() {
	defer d.p.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := d.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || d.p.ctx.Err() != nil {
				return
			}
			continue
		}
		resp, fwd := d.p.answerDNS(buf[:n], len(d.upstreams) > 0)
		if fwd {
			select {
			case d.sem <- struct{}{}:
				q := bytes.Clone(buf[:n])
				d.p.wg.Add(1)
				go func() {
					defer d.p.wg.Done()
					defer func() { <-d.sem }()
					if r := d.forward(q, false); r != nil {
						d.udp.WriteToUDPAddrPort(r, from)
					}
				}()
				continue
			default:
				resp = dnsError(buf[:n], dnsmessage.RCodeServerFailure)
			}
		}
		if resp != nil {
			d.udp.WriteToUDPAddrPort(resp, from)
		}
	}
}

// serveTCP answers length-prefixed queries on one connection until it is
// idle for dnsTCPIdle, closed, or sends a malformed query.
func (d *dnsServer) serveTCP(c *net.TCPConn) {
	defer c.Close()
	select {
	case d.sem <- struct{}{}:
		defer func() { <-d.sem }()
	default:
		return
	}
	var l [2]byte
	for {
		c.SetReadDeadline(time.Now().Add(dnsTCPIdle))
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		q := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		resp, fwd := d.p.answerDNS(q, len(d.upstreams) > 0)
		if fwd {
			resp = d.forward(q, true)
		}
		if resp == nil {
			return
		}
		c.SetWriteDeadline(time.Now().Add(dnsTCPIdle))
		if _, err := c.Write(binary.BigEndian.AppendUint16(l[:0:0], uint16(len(resp)))); err != nil {
			return
		}
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}

// answerDNS answers one query from the service table. It returns nil to
// drop the query (malformed, counted), and forward=true when the name is
// outside the cluster and canForward is set.
func (p *Proxy) answerDNS(req []byte, canForward bool) (resp []byte, forward bool) {
	var ps dnsmessage.Parser
	h, err := ps.Start(req)
	if err == nil && h.Response {
		err = errors.New("not a query")
	}
	var q dnsmessage.Question
	if err == nil {
		q, err = ps.Question()
	}
	if err == nil {
		if ps.SkipQuestion() != dnsmessage.ErrSectionDone {
			err = errors.New("more than one question")
		}
	}
	if err != nil {
		p.stats.dnsMalformed.Add(1)
		return nil, false
	}
	p.stats.dnsQueries.Add(1)

	rh := dnsmessage.Header{
		ID:                 h.ID,
		Response:           true,
		OpCode:             h.OpCode,
		RecursionDesired:   h.RecursionDesired,
		RecursionAvailable: canForward,
	}
	if h.OpCode != 0 {
		rh.RCode = dnsmessage.RCodeNotImplemented
		return p.buildDNS(rh, q, nil, "")
	}
	name := strings.ToLower(q.Name.String())
	ips, known := p.table.Load().names[name]
	zone := p.zoneOf(name)
	switch {
	case known:
		rh.Authoritative = true
		if q.Class != dnsmessage.ClassINET && q.Class != dnsmessage.ClassANY {
			rh.RCode = dnsmessage.RCodeRefused
			p.stats.dnsRefused.Add(1)
			return p.buildDNS(rh, q, nil, "")
		}
		var as []netip.Addr
		for _, ip := range ips {
			switch {
			case q.Type == dnsmessage.TypeA && ip.Is4(),
				q.Type == dnsmessage.TypeAAAA && ip.Is6(),
				q.Type == dnsmessage.TypeALL:
				as = append(as, ip)
			}
		}
		if len(as) > maxDNSAnswers {
			as = as[:maxDNSAnswers]
		}
		if len(as) > 0 {
			return p.buildDNS(rh, q, as, "")
		}
		return p.buildDNS(rh, q, nil, zone) // NODATA
	case zone != "":
		rh.Authoritative = true
		if name != zone && name != "svc."+zone {
			rh.RCode = dnsmessage.RCodeNameError
			p.stats.dnsNXDomain.Add(1)
		}
		return p.buildDNS(rh, q, nil, zone)
	case canForward:
		p.stats.dnsForwarded.Add(1)
		return nil, true
	default:
		rh.RCode = dnsmessage.RCodeRefused
		p.stats.dnsRefused.Add(1)
		return p.buildDNS(rh, q, nil, "")
	}
}

// zoneOf returns the zone this server is authoritative for that holds
// name: the cluster domain or "svc."; "" if none.
func (p *Proxy) zoneOf(name string) string {
	d := p.domain + "."
	switch {
	case name == d || strings.HasSuffix(name, "."+d):
		return d
	case name == "svc." || strings.HasSuffix(name, ".svc."):
		return "svc."
	}
	return ""
}

// buildDNS builds a response echoing q with an answer for each of as and
// the SOA of zone in the authority section (if not "", for negative
// caching). It returns nil if the response cannot be built.
func (p *Proxy) buildDNS(h dnsmessage.Header, q dnsmessage.Question, as []netip.Addr, zone string) ([]byte, bool) {
	b := dnsmessage.NewBuilder(make([]byte, 0, 128), h)
	b.EnableCompression()
	err := b.StartQuestions()
	if err == nil {
		err = b.Question(q)
	}
	if err == nil && len(as) > 0 {
		err = b.StartAnswers()
		for _, a := range as {
			if err != nil {
				break
			}
			rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: dnsTTL}
			if a.Is4() {
				rh.Type = dnsmessage.TypeA
				err = b.AResource(rh, dnsmessage.AResource{A: a.As4()})
			} else {
				rh.Type = dnsmessage.TypeAAAA
				err = b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
			}
		}
		if err == nil {
			p.stats.dnsAnswers.Add(1)
		}
	}
	if err == nil && zone != "" {
		err = b.StartAuthorities()
		if err == nil {
			err = b.SOAResource(dnsmessage.ResourceHeader{
				Name: mustName(zone), Type: dnsmessage.TypeSOA, Class: dnsmessage.ClassINET, TTL: dnsTTL,
			}, dnsmessage.SOAResource{
				NS:      mustName("ns.dns." + p.domain + "."),
				MBox:    mustName("hostmaster." + p.domain + "."),
				Serial:  1,
				Refresh: 60, Retry: 10, Expire: 3600, MinTTL: dnsTTL,
			})
		}
	}
	var msg []byte
	if err == nil {
		msg, err = b.Finish()
	}
	if err != nil {
		p.stats.dnsMalformed.Add(1)
		return nil, false
	}
	return msg, false
}

func mustName(s string) dnsmessage.Name {
	n, err := dnsmessage.NewName(s)
	if err != nil {
		return dnsmessage.MustNewName(".")
	}
	return n
}

// dnsError answers the query req with rcode and nothing else; nil if req
// is not a query.
func dnsError(req []byte, rcode dnsmessage.RCode) []byte {
	var ps dnsmessage.Parser
	h, err := ps.Start(req)
	if err != nil {
		return nil
	}
	q, err := ps.Question()
	if err != nil {
		return nil
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{
		ID: h.ID, Response: true, OpCode: h.OpCode, RecursionDesired: h.RecursionDesired, RCode: rcode,
	})
	if b.StartQuestions() != nil || b.Question(q) != nil {
		return nil
	}
	msg, err := b.Finish()
	if err != nil {
		return nil
	}
	return msg
}

// forward asks the upstream resolvers in turn; SERVFAIL if none answers.
func (d *dnsServer) forward(q []byte, tcp bool) []byte {
	for _, up := range d.upstreams {
		ctx, cancel := context.WithTimeout(d.p.ctx, upstreamTimeout)
		r, err := exchange(ctx, up, q, tcp)
		cancel()
		if err == nil {
			return r
		}
		d.p.log.Debug("DNS upstream failed", "upstream", up, "err", err)
		if d.p.ctx.Err() != nil {
			return nil
		}
	}
	return dnsError(q, dnsmessage.RCodeServerFailure)
}

// exchange sends q to the resolver at addr and returns the response with
// the same ID.
func exchange(ctx context.Context, addr string, q []byte, tcp bool) ([]byte, error) {
	if len(q) < 12 {
		return nil, errors.New("short query")
	}
	network := "udp"
	if tcp {
		network = "tcp"
	}
	var dl net.Dialer
	c, err := dl.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if tcp {
		msg := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(q)), uint16(len(q)))
		if _, err := c.Write(append(msg, q...)); err != nil {
			return nil, err
		}
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return nil, err
		}
		r := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, r); err != nil {
			return nil, err
		}
		if len(r) < 12 || r[0] != q[0] || r[1] != q[1] {
			return nil, errors.New("upstream answered another query")
		}
		return r, nil
	}
	if _, err := c.Write(q); err != nil {
		return nil, err
	}
	buf := make([]byte, 65535)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		if n >= 12 && buf[0] == q[0] && buf[1] == q[1] && buf[2]&0x80 != 0 {
			return bytes.Clone(buf[:n]), nil
		}
	}
}

// ResolvConf returns the resolv.conf that pods of namespace should get,
// with the peer's DNS server at dnsIP. domain "" is "cluster.local".
func ResolvConf(dnsIP, namespace, domain string) string {
	domain = strings.Trim(domain, ".")
	if domain == "" {
		domain = "cluster.local"
	}
	search := "svc." + domain + " " + domain
	if namespace != "" {
		search = namespace + ".svc." + domain + " " + search
	}
	return "nameserver " + dnsIP + "\nsearch " + search + "\noptions ndots:5\n"
}

// HostResolvers returns the nameservers of a resolv.conf file (such as
// /etc/resolv.conf) as "ip:53" addresses, for Config.Upstreams.
func HostResolvers(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(fields[1])
		if err != nil || a.Zone() != "" {
			continue
		}
		out = append(out, netip.AddrPortFrom(a, 53).String())
	}
	return out, sc.Err()
}

// validDomain reports whether d (lower case, no trailing dot) is a DNS
// name of hostname labels short enough to hold service names.
func validDomain(d string) bool {
	if len(d) > 180 {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if len(label) == 0 || len(label) > 63 {
			return false
		}
		for _, c := range []byte(label) {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
