package proxy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// UDP services. A UDP listener (ClusterIP:Port, NodeIP:NodePort or
// NodeIP:Port for a LoadBalancer) keeps one flow per client address: the
// first datagram of a client picks an endpoint as a TCP connection does
// (least flows, affinity, retries while dials fail) and opens a connected
// UDP socket to a local pod, or a hop to the endpoint's peer that carries
// framed datagrams. The endpoint's answers go back to the client from the
// listener's address. A flow with no datagram either way for udpIdle is
// closed; at most maxConns flows live per listener, beyond which a new
// client's datagrams are dropped and counted (Stats.OverLimit). A new
// client's endpoint is dialled in the background, its first datagrams
// (at most 16) waiting for it, so that a hop to a peer that does not
// answer holds no other client.

// maxDatagram is the largest UDP payload relayed.
const maxDatagram = 65535

// defaultUDPIdle is how long a UDP flow lives without traffic (kube-proxy's
// conntrack default for UDP streams is 120 s, for single datagrams 30 s).
const defaultUDPIdle = 30 * time.Second

type udpListener struct {
	p    *Proxy
	addr netip.AddrPort
	conn *net.UDPConn
	pool atomic.Pointer[pool]

	mu     sync.Mutex
	closed bool
	flows  map[netip.AddrPort]*udpFlow
}

// udpFlow is one client's association with an endpoint. Until its dial
// is done (dialled is false) the client's datagrams wait in pending.
type udpFlow struct {
	client netip.AddrPort
	last   atomic.Int64 // unix nanoseconds of the last datagram either way

	mu      sync.Mutex
	dialled bool
	pending [][]byte // at most maxPending datagrams waiting for the dial
	up      net.Conn // *net.UDPConn connected to a local pod, or a hop (framed)
	framed  bool
	b       *backend
	wbuf    []byte // frame buffer
}

// maxPending bounds the datagrams a flow keeps while its endpoint is being
// dialled; more are dropped, as a full socket buffer would.
const maxPending = 16

func (p *Proxy) listenUDP(ap netip.AddrPort, pl *pool) (*udpListener, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(ap))
	if err != nil {
		return nil, err
	}
	l := &udpListener{p: p, addr: ap, conn: c, flows: map[netip.AddrPort]*udpFlow{}}
	l.pool.Store(pl)
	p.wg.Add(1)
	go l.loop()
	return l, nil
}

// close closes the socket and every flow; loop and the flows' goroutines
// then end.
func (l *udpListener) close() {
	l.conn.Close()
	l.mu.Lock()
	l.closed = true
	for _, f := range l.flows {
		f.mu.Lock()
		if f.up != nil {
			f.up.Close()
		}
		f.mu.Unlock()
	}
	l.mu.Unlock()
}

func (l *udpListener) loop() {
	p := l.p
	defer p.wg.Done()
	defer l.close()
	buf := make([]byte, maxDatagram)
	for {
		n, from, err := l.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.ctx.Err() != nil {
				return
			}
			continue
		}
		from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		f := l.flow(from)
		if f == nil {
			continue
		}
		f.last.Store(time.Now().UnixNano())
		if err := f.send(buf[:n]); err != nil {
			p.log.Debug("udp datagram not relayed", "service", l.pool.Load().key.String(), "client", from.String(), "err", err)
			f.up.Close() // its reader ends the flow
		}
	}
}

// flow returns the flow of client, making it if there is none: its
// endpoint is dialled in the background (a dial to a peer that does not
// answer must not hold the listener's other clients). nil: the datagram
// is dropped.
func (l *udpListener) flow(client netip.AddrPort) *udpFlow {
	p := l.p
	l.mu.Lock()
	defer l.mu.Unlock()
	if f, ok := l.flows[client]; ok {
		return f
	}
	if l.closed {
		return nil
	}
	if len(l.flows) >= p.maxConns {
		p.stats.overLimit.Add(1)
		return nil
	}
	pl := l.pool.Load()
	p.stats.accepted.Add(1)
	if pl.empty() {
		p.stats.noEndpoints.Add(1)
		return nil
	}
	f := &udpFlow{client: client}
	f.last.Store(time.Now().UnixNano())
	l.flows[client] = f
	p.stats.active.Add(1)
	p.wg.Add(1)
	go l.dial(f, pl)
	return f
}

// dial connects f to an endpoint of pl, sends what waited, and relays the
// endpoint's answers; on failure it removes the flow.
func (l *udpListener) dial(f *udpFlow, pl *pool) {
	p := l.p
	defer p.wg.Done()
	up, b, framed, err := p.dialPoolUDP(p.ctx, pl, f.client.Addr())
	if err != nil {
		if errors.Is(err, ErrNoEndpoints) {
			p.stats.noEndpoints.Add(1)
		} else {
			p.stats.unserved.Add(1)
		}
		p.log.Debug("udp client not served", "service", pl.key.String(), "client", f.client.String(), "err", err)
		l.remove(f)
		return
	}
	f.mu.Lock()
	f.up, f.framed, f.b, f.dialled = up, framed, b, true
	pending := f.pending
	f.pending = nil
	var werr error
	for _, d := range pending {
		if werr == nil {
			werr = f.sendLocked(d)
		}
	}
	f.mu.Unlock()
	// After f.up is set: close either saw it (and closed it) or had set
	// closed before.
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed || werr != nil {
		up.Close()
	}
	l.relayBack(f)
}

// remove forgets f (if it is still the client's flow) and its gauge.
func (l *udpListener) remove(f *udpFlow) {
	l.mu.Lock()
	if l.flows[f.client] == f {
		delete(l.flows, f.client)
	}
	l.mu.Unlock()
	l.p.stats.active.Add(-1)
}

// relayBack sends the endpoint's datagrams to the client until the flow is
// idle for p.udpIdle or its upstream fails, then removes the flow.
func (l *udpListener) relayBack(f *udpFlow) {
	p := l.p
	defer func() {
		l.remove(f)
		f.up.Close()
		f.b.release()
	}()
	buf := make([]byte, maxDatagram)
	for {
		f.up.SetReadDeadline(time.Now().Add(p.udpIdle))
		n, err := f.recv(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && time.Since(time.Unix(0, f.last.Load())) < p.udpIdle {
				continue // the client sent meanwhile
			}
			return
		}
		f.last.Store(time.Now().UnixNano())
		if _, err := l.conn.WriteToUDPAddrPort(buf[:n], f.client); err != nil && errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// send passes one client datagram to the endpoint, or keeps it while the
// endpoint is being dialled.
func (f *udpFlow) send(b []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.dialled {
		if len(f.pending) < maxPending {
			f.pending = append(f.pending, slices.Clone(b))
		}
		return nil
	}
	return f.sendLocked(b)
}

func (f *udpFlow) sendLocked(b []byte) error {
	if !f.framed {
		_, err := f.up.Write(b)
		return err
	}
	f.wbuf = appendFrame(f.wbuf[:0], b)
	_, err := f.up.Write(f.wbuf)
	return err
}

// recv reads one datagram of the endpoint.
func (f *udpFlow) recv(buf []byte) (int, error) {
	if !f.framed {
		return f.up.Read(buf)
	}
	return readFrame(f.up, buf)
}

// appendFrame appends one datagram as a hop frame: [2-byte big-endian
// length][payload].
func appendFrame(b, payload []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	return append(b, payload...)
}

// readFrame reads one hop frame into buf (at least maxDatagram bytes) and
// returns the payload's length.
func readFrame(r io.Reader, buf []byte) (int, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint16(h[:]))
	if n > len(buf) {
		return 0, fmt.Errorf("proxy: udp frame of %d bytes: buffer of %d", n, len(buf))
	}
	return io.ReadFull(r, buf[:n])
}

// dialPoolUDP is dialPool for a UDP service port: it returns a connected
// UDP socket for a local endpoint, a hop carrying frames (framed) for a
// remote one.
func (p *Proxy) dialPoolUDP(ctx context.Context, pl *pool, client netip.Addr) (net.Conn, *backend, bool, error) {
	var tried []*backend
	var lastErr error
	for {
		b := pl.pickFor(client, tried, time.Now())
		if b == nil {
			break
		}
		if len(tried) > 0 {
			p.stats.retries.Add(1)
		}
		tried = append(tried, b)
		dctx, cancel := context.WithTimeout(ctx, dialTimeout)
		c, framed, err := p.dialEndpointUDP(dctx, b.ep)
		cancel()
		if err == nil {
			b.failedAt.Store(0)
			pl.chosen(client, b, time.Now())
			return c, b, framed, nil
		}
		b.release()
		b.failedAt.Store(time.Now().UnixNano())
		p.stats.dialFailures.Add(1)
		lastErr = err
		if ctx.Err() != nil {
			return nil, nil, false, ctx.Err()
		}
	}
	if lastErr == nil {
		return nil, nil, false, ErrNoEndpoints
	}
	return nil, nil, false, fmt.Errorf("proxy: %s: all %d endpoints failed, last: %w", pl.key, len(tried), lastErr)
}

func (p *Proxy) dialEndpointUDP(ctx context.Context, ep Endpoint) (net.Conn, bool, error) {
	ip, err := netip.ParseAddr(ep.IP)
	if err != nil || !validPort(ep.Port) {
		return nil, false, fmt.Errorf("proxy: invalid endpoint %q port %d", ep.IP, ep.Port)
	}
	target := netip.AddrPortFrom(ip.Unmap(), uint16(ep.Port))
	if ep.Local {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(target))
		if err != nil {
			return nil, false, err
		}
		return c, false, nil
	}
	hop, ok := "", false
	if p.cfg.PeerHop != nil {
		hop, ok = p.cfg.PeerHop(ep.Node)
	}
	if !ok || hop == "" {
		return nil, false, fmt.Errorf("proxy: no hop for node %q", ep.Node)
	}
	var local net.Addr
	if ip := net.ParseIP(p.cfg.NodeIP); ip != nil && !ip.IsUnspecified() {
		local = &net.TCPAddr{IP: ip}
	}
	c, err := dialHopProto(ctx, hop, local, target, true, p.hopTimeout, p.cfg.HopClientTLS)
	if err != nil {
		return nil, false, err
	}
	return c, true, nil
}

// dialUDPTarget connects a UDP socket to the target of a hop.
func dialUDPTarget(target netip.AddrPort) (net.Conn, error) {
	return net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(target))
}

// relayHopUDP relays an accepted hop c for a UDP target: frames from the
// other peer become datagrams to the pod (up) and back, until either side
// ends (the other peer closes an idle flow).
func relayHopUDP(c, up net.Conn) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, maxDatagram)
		out := make([]byte, 0, maxDatagram+2)
		for {
			n, err := up.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					return
				}
				continue // ICMP errors (port unreachable) end no flow
			}
			out = appendFrame(out[:0], buf[:n])
			if _, err := c.Write(out); err != nil {
				c.Close()
				return
			}
		}
	}()
	buf := make([]byte, maxDatagram)
	for {
		n, err := readFrame(c, buf)
		if err != nil {
			break
		}
		if _, err := up.Write(buf[:n]); err != nil && errors.Is(err, net.ErrClosed) {
			break
		}
	}
	up.Close()
	c.Close()
	<-done
}
