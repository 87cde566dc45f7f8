package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

// Hop protocol, version 1 (see the package documentation).
//
//	request:  "CHOP" | version (1 byte, 1) | n (1 byte, 1..maxHopTarget) | target (n bytes, "ip:port")
//	answer:   status (1 byte): hopOK, or an error code after which the server closes
const (
	hopMagic   = "CHOP"
	hopVersion = 1
	// hopVersionUDP is the same header for a UDP target: after the
	// answer, datagrams travel both ways as [2-byte big-endian length]
	// [payload] frames.
	hopVersionUDP = 2
	hopFixedLen   = len(hopMagic) + 2
	maxHopTarget  = 47 // "[" + 39-character IPv6 address + "]:" + 5 digits
)

// Hop answer codes.
const (
	hopOK         byte = 0
	hopRefused    byte = 1 // AllowHop rejected the target
	hopMalformed  byte = 2 // the header was not understood
	hopDialFailed byte = 3 // the target could not be dialled
)

var (
	errHopShort      = errors.New("hop header: short")
	errHopMagic      = errors.New("hop header: bad magic")
	errHopVersion    = errors.New("hop header: unsupported version")
	errHopLength     = errors.New("hop header: bad target length")
	errHopTarget     = errors.New("hop header: bad target")
	errHopDialFailed = errors.New("proxy: hop could not dial the target")
	errHopMalformed  = errors.New("proxy: hop did not understand the header")
)

// appendHopHeader appends the hop request for a TCP target to b.
func appendHopHeader(b []byte, target netip.AddrPort) []byte {
	return appendHopHeaderProto(b, target, false)
}

// appendHopHeaderProto appends the hop request for target to b, a UDP
// target if udp.
func appendHopHeaderProto(b []byte, target netip.AddrPort, udp bool) []byte {
	s := target.String()
	v := byte(hopVersion)
	if udp {
		v = hopVersionUDP
	}
	b = append(b, hopMagic...)
	b = append(b, v, byte(len(s)))
	return append(b, s...)
}

// parseHopHeader decodes the hop request at the start of b and returns the
// target and the header's length. errHopShort means b holds only a prefix
// of a header that may still be valid.
func parseHopHeader(b []byte) (netip.AddrPort, int, error) {
	var zero netip.AddrPort
	for i := 0; i < len(hopMagic) && i < len(b); i++ {
		if b[i] != hopMagic[i] {
			return zero, 0, errHopMagic
		}
	}
	if len(b) > len(hopMagic) && b[len(hopMagic)] != hopVersion && b[len(hopMagic)] != hopVersionUDP {
		return zero, 0, errHopVersion
	}
	if len(b) < hopFixedLen {
		return zero, 0, errHopShort
	}
	n := int(b[hopFixedLen-1])
	if n == 0 || n > maxHopTarget {
		return zero, 0, errHopLength
	}
	if len(b) < hopFixedLen+n {
		return zero, 0, errHopShort
	}
	t, err := parseHopTarget(b[hopFixedLen : hopFixedLen+n])
	if err != nil {
		return zero, 0, err
	}
	return t, hopFixedLen + n, nil
}

// parseHopTarget accepts only the canonical text of a unicast (or
// loopback) address and a non-zero port.
func parseHopTarget(b []byte) (netip.AddrPort, error) {
	s := string(b)
	t, err := netip.ParseAddrPort(s)
	if err != nil || t.Port() == 0 || t.Addr().Zone() != "" || t.Addr().Is4In6() ||
		t.Addr().IsUnspecified() || t.Addr().IsMulticast() || t.String() != s {
		return netip.AddrPort{}, errHopTarget
	}
	return t, nil
}

// readHopHeader reads exactly one hop request from r, never more, so that
// the connection can be spliced as it is afterwards.
func readHopHeader(r io.Reader) (netip.AddrPort, error) {
	t, _, err := readHopHeaderProto(r)
	return t, err
}

// readHopHeaderProto is readHopHeader that also reports a UDP target.
func readHopHeaderProto(r io.Reader) (netip.AddrPort, bool, error) {
	t, v, err := readHopHeaderBytes(r)
	return t, v == hopVersionUDP, err
}

// readHopHeaderBytes reads one hop request and returns its target and
// version byte.
func readHopHeaderBytes(r io.Reader) (netip.AddrPort, byte, error) {
	var zero netip.AddrPort
	var buf [hopFixedLen + maxHopTarget]byte
	n, err := io.ReadFull(r, buf[:hopFixedLen])
	if err != nil {
		if _, _, perr := parseHopHeader(buf[:n]); perr != errHopShort {
			return zero, 0, perr
		}
		return zero, 0, fmt.Errorf("%w: %v", errHopShort, err)
	}
	if _, _, err := parseHopHeader(buf[:hopFixedLen]); err != errHopShort {
		if err == nil {
			err = errHopLength // cannot happen: a target is never empty
		}
		return zero, 0, err
	}
	total := hopFixedLen + int(buf[hopFixedLen-1])
	if _, err := io.ReadFull(r, buf[hopFixedLen:total]); err != nil {
		return zero, 0, fmt.Errorf("%w: %v", errHopShort, err)
	}
	t, _, err := parseHopHeader(buf[:total])
	return t, buf[len(hopMagic)], err
}

// dialHop connects to target through the hop listener at hop and waits for
// its answer, so that a failure is known (and another endpoint can be
// tried) before any client byte is sent. With tlsCfg the connection is TLS
// (handshake included in the timeout) and a *tls.Conn is returned;
// otherwise a *net.TCPConn.
func dialHop(ctx context.Context, hop string, local net.Addr, target netip.AddrPort, timeout time.Duration, tlsCfg *tls.Config) (net.Conn, error) {
	return dialHopProto(ctx, hop, local, target, false, timeout, tlsCfg)
}

// dialHopProto is dialHop for a TCP target, or with udp a UDP one (the
// connection then carries framed datagrams).
func dialHopProto(ctx context.Context, hop string, local net.Addr, target netip.AddrPort, udp bool, timeout time.Duration, tlsCfg *tls.Config) (net.Conn, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	raw, err := dialTCPFrom(ctx, local, hop)
	if err != nil {
		return nil, fmt.Errorf("proxy: hop %s: %w", hop, err)
	}
	deadline, _ := ctx.Deadline()
	raw.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { raw.SetDeadline(time.Unix(1, 0)) })
	var c net.Conn = raw
	if tlsCfg != nil {
		if tlsCfg.ServerName == "" {
			host, _, _ := net.SplitHostPort(hop)
			tlsCfg = tlsCfg.Clone()
			tlsCfg.ServerName = host
		}
		tc := tls.Client(raw, tlsCfg)
		err = tc.Handshake()
		c = tc
	}
	var ans [1]byte
	if err == nil {
		_, err = c.Write(appendHopHeaderProto(make([]byte, 0, hopFixedLen+maxHopTarget), target, udp))
	}
	if err == nil {
		_, err = io.ReadFull(c, ans[:])
	}
	if !stop() && err == nil {
		err = ctx.Err()
	}
	if err != nil {
		raw.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("proxy: hop %s to %s: %w", hop, target, err)
	}
	switch ans[0] {
	case hopOK:
	case hopRefused:
		err = ErrHopRefused
	case hopDialFailed:
		err = errHopDialFailed
	case hopMalformed:
		err = errHopMalformed
	default:
		err = fmt.Errorf("proxy: unknown hop answer %d", ans[0])
	}
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("proxy: hop %s to %s: %w", hop, target, err)
	}
	raw.SetDeadline(time.Time{})
	return c, nil
}

func (p *Proxy) hopLoop(ln *net.TCPListener) {
	defer p.wg.Done()
	acceptLoop(p, ln, p.serveHop)
}

// serveHop authenticates the peer (with HopServerTLS), reads one hop
// request, checks it, dials the pod, answers, and relays. The handshake,
// the header and the pod dial share one deadline (p.hopTimeout).
func (p *Proxy) serveHop(raw *net.TCPConn) {
	raw.SetDeadline(time.Now().Add(p.hopTimeout))
	var c net.Conn = raw
	if p.cfg.HopServerTLS != nil {
		tc := tls.Server(raw, p.cfg.HopServerTLS)
		if err := tc.HandshakeContext(p.ctx); err != nil {
			p.stats.hopsUnauthenticated.Add(1)
			p.log.Debug("hop refused: TLS handshake failed", "from", raw.RemoteAddr().String(), "err", err)
			raw.Close()
			return
		}
		c = tc
	}
	fail := func(code byte) {
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write([]byte{code})
		c.Close()
	}
	target, udp, err := readHopHeaderProto(c)
	if err != nil {
		p.stats.hopsMalformed.Add(1)
		p.log.Debug("hop header refused", "from", raw.RemoteAddr().String(), "err", err)
		fail(hopMalformed)
		return
	}
	if p.cfg.AllowHop == nil || !p.cfg.AllowHop(target.Addr().String(), int(target.Port())) {
		p.stats.hopsRefused.Add(1)
		p.log.Debug("hop target refused", "from", raw.RemoteAddr().String(), "target", target.String())
		fail(hopRefused)
		return
	}
	if udp {
		p.acceptHop(c, target, fail, dialUDPTarget, relayHopUDP)
		return
	}
	p.acceptHop(c, target, fail, func(target netip.AddrPort) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(p.ctx, dialTimeout)
		defer cancel()
		return dialTCP(ctx, target.String())
	}, Splice)
}

// acceptHop connects an accepted hop c to its target: it dials the target,
// answers hopOK (or hopDialFailed through fail), and relays between c and
// the target's connection, which Close closes meanwhile.
func (p *Proxy) acceptHop(c net.Conn, target netip.AddrPort, fail func(byte),
	dial func(netip.AddrPort) (net.Conn, error), relay func(c, up net.Conn)) {
	up, err := dial(target)
	if err != nil {
		p.stats.hopDialFailures.Add(1)
		p.log.Debug("hop target dial failed", "target", target.String(), "err", err)
		fail(hopDialFailed)
		return
	}
	if !p.conns.add(up) {
		up.Close()
		c.Close()
		return
	}
	defer p.conns.remove(up)
	if _, err := c.Write([]byte{hopOK}); err != nil {
		up.Close()
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	p.stats.hopsServed.Add(1)
	relay(c, up)
}
