package gossip

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/hashicorp/serf/serf"
	"github.com/libp2p/go-libp2p"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// MaxMessageSize bounds a published delta and each direction of a sync.
const MaxMessageSize = 8 << 20

// Wire names.
const (
	deltasTopic     = "chorus/deltas/1"              // GossipSub topic of Publish and Deltas
	syncProtocol    = protocol.ID("/chorus/sync/1")  // HandleSync and Sync
	helloProtocol   = protocol.ID("/chorus/hello/2") // turns an mDNS discovery into a serf join (keys.go)
	mdnsServiceName = "chorus"                       // mDNS service with Config.Discover
)

const (
	identityFile    = "p2p.key"
	deltaBuffer     = 128              // Deltas channel
	subBuffer       = 64               // pubsub subscription buffer
	outboundQueue   = 16               // pubsub RPCs queued per peer
	maxInboundSyncs = 32               // concurrent inbound sync streams
	maxDials        = 8                // concurrent outbound dials
	dialTimeout     = 5 * time.Second  // libp2p dial
	syncTimeout     = 30 * time.Second // whole sync exchange, default
	helloTimeout    = 10 * time.Second // whole hello exchange
	helloBackoff    = 10 * time.Second // longest wait between hellos to one mDNS peer
	helloRetry      = 1 * time.Second  // first wait after a failed hello
	helloDefer      = 2 * time.Second  // first hello from the larger peer id
	foundTTL        = 10 * time.Minute // forget an mDNS peer not seen for this long
	maxFound        = 1024             // mDNS peers remembered
	nonMemberGrace  = 30 * time.Second // before closing a non-member's connection
	reconcileEvery  = 3 * time.Second
	connGrace       = 30 * time.Second       // before closing a member's connection that is no neighbour's
	relinkAfter     = 500 * time.Millisecond // from a membership change to the neighbours picked again
	nonMemberScore  = -1000.0                // pubsub application score of a non-member
)

// Message is a delta received from another member.
type Message struct {
	// From is the name of the member that published it.
	From string
	Data []byte
}

// SyncHandler answers a sync request from the member named from. ctx ends
// 30 s after the request arrived or when the node closes; the requester may
// give up earlier (its own ctx), in which case the response is discarded.
// The response must be at most MaxMessageSize bytes; a returned error is
// sent to the requester as its text.
type SyncHandler func(ctx context.Context, from string, req []byte) ([]byte, error)

// RemoteError is the error a sync handler on another member returned.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return "gossip: remote: " + e.Msg }

// PeerID returns the node's libp2p peer id (also its TagPeerID tag).
func (n *Node) PeerID() string { return n.host.ID().String() }

// p2pMultiaddr is the TCP multiaddr of an IP and port.
func p2pMultiaddr(ip string, port int) string {
	if p := net.ParseIP(ip); p != nil && p.To4() == nil {
		return "/ip6/" + ip + "/tcp/" + strconv.Itoa(port)
	}
	return "/ip4/" + ip + "/tcp/" + strconv.Itoa(port)
}

// loadIdentity reads the Ed25519 identity in dir, creating it on first use.
// Without dir the identity is ephemeral.
func loadIdentity(dir string) (crypto.PrivKey, error) {
	if dir == "" {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		return k, err
	}
	path := filepath.Join(dir, identityFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		k, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("gossip: identity %s: %w", path, err)
		}
		if k.Type() != crypto.Ed25519 {
			return nil, fmt.Errorf("gossip: identity %s is not an Ed25519 key", path)
		}
		return k, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("gossip: identity: %w", err)
	}
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, err
	}
	b, err = crypto.MarshalPrivateKey(k)
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(dir, identityFile+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("gossip: identity: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("gossip: identity: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("gossip: identity: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("gossip: identity: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, fmt.Errorf("gossip: identity: %w", err)
	}
	return k, nil
}

func (n *Node) startHost() error {
	priv, err := loadIdentity(n.cfg.DataDir)
	if err != nil {
		return err
	}
	opts := []libp2p.Option{
		libp2p.Identity(priv),
		libp2p.ListenAddrStrings(p2pMultiaddr(n.cfg.BindAddr, n.cfg.P2PPort)),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.DisableIdentifyAddressDiscovery(),
		libp2p.Ping(false),
		libp2p.WithDialTimeout(dialTimeout),
		libp2p.UserAgent("chorus"),
		libp2p.ConnectionGater(gater{n}),
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return fmt.Errorf("gossip: libp2p: %w", err)
	}
	n.host = h
	h.Network().Notify(&network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		if c.Stat().Direction == network.DirOutbound {
			n.dialed.Add(1)
		}
	}})
	h.SetStreamHandler(helloProtocol, n.handleHello)
	return nil
}

func (n *Node) startPubsub() error {
	params := pubsub.DefaultGossipSubParams()
	params.HeartbeatInterval = 500 * time.Millisecond
	ps, err := pubsub.NewGossipSub(n.ctx, n.host,
		pubsub.WithGossipSubParams(params),
		// Only gossipsub: a floodsub peer would be sent every message,
		// whatever the peer filter and scores say.
		pubsub.WithGossipSubProtocols(
			[]protocol.ID{pubsub.GossipSubID_v13, pubsub.GossipSubID_v12, pubsub.GossipSubID_v11},
			pubsub.GossipSubDefaultFeatures),
		// Mesh links and IWANT answers only with alive members.
		pubsub.WithPeerFilter(func(p peer.ID, _ string) bool {
			_, ok := n.isAliveMember(p)
			return ok
		}),
		// Our own deltas are flood-published to every subscribed peer
		// scoring at least PublishThreshold, so they do not depend on the
		// mesh, which takes a heartbeat or two to form after a join. A
		// non-member scores far below that (and below GossipThreshold, so
		// it gets no IHAVE either) but above GraylistThreshold, so its
		// subscriptions are still tracked for when it becomes a member.
		pubsub.WithFloodPublish(true),
		pubsub.WithPeerScore(&pubsub.PeerScoreParams{
			AppSpecificScore: func(p peer.ID) float64 {
				if _, ok := n.isAliveMember(p); ok {
					return 0
				}
				return nonMemberScore
			},
			AppSpecificWeight: 1,
			DecayInterval:     time.Second,
			DecayToZero:       0.01,
		}, &pubsub.PeerScoreThresholds{
			GossipThreshold:   nonMemberScore / 100,
			PublishThreshold:  nonMemberScore / 20,
			GraylistThreshold: nonMemberScore * 1000,
		}),
		pubsub.WithPeerExchange(false),
		pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
		pubsub.WithMaxMessageSize(MaxMessageSize+64<<10),
		pubsub.WithPeerOutboundQueueSize(outboundQueue),
		pubsub.WithLogger(n.log.With("component", "pubsub")),
	)
	if err != nil {
		return fmt.Errorf("gossip: pubsub: %w", err)
	}
	n.ps = ps
	if err := ps.RegisterTopicValidator(deltasTopic, n.validateDelta, pubsub.WithValidatorInline(true)); err != nil {
		return fmt.Errorf("gossip: pubsub validator: %w", err)
	}
	if n.topic, err = ps.Join(deltasTopic); err != nil {
		return fmt.Errorf("gossip: pubsub join: %w", err)
	}
	if n.sub, err = n.topic.Subscribe(pubsub.WithBufferSize(subBuffer)); err != nil {
		return fmt.Errorf("gossip: pubsub subscribe: %w", err)
	}
	n.goFn(n.readDeltas)
	return nil
}

// validateDelta accepts a delta only from alive members (author and
// forwarder) and only up to MaxMessageSize.
func (n *Node) validateDelta(_ context.Context, from peer.ID, m *pubsub.Message) pubsub.ValidationResult {
	self := n.host.ID()
	if len(m.Data) > MaxMessageSize {
		n.pubsubRejected.Add(1)
		return pubsub.ValidationReject
	}
	for _, p := range []peer.ID{from, m.GetFrom()} {
		if p == self {
			continue
		}
		if _, ok := n.memberName(p); !ok {
			n.pubsubRejected.Add(1)
			return pubsub.ValidationReject
		}
	}
	return pubsub.ValidationAccept
}

func (n *Node) readDeltas() {
	self := n.host.ID()
	for {
		m, err := n.sub.Next(n.ctx)
		if err != nil {
			return
		}
		if m.GetFrom() == self {
			continue
		}
		name, ok := n.memberName(m.GetFrom())
		if !ok { // died since validation
			n.pubsubRejected.Add(1)
			continue
		}
		select {
		case n.deltas <- Message{From: name, Data: m.Data}:
		default:
			n.deltasDropped.Add(1)
		}
	}
}

// Publish broadcasts data to the other alive members: directly to every
// member whose data plane is connected and subscribed, and on through the
// GossipSub mesh. It is best effort: a member that just joined and whose
// subscription has not reached this node yet, or that is partitioned away,
// misses it (anti-entropy catches up). data is at most MaxMessageSize bytes.
func (n *Node) Publish(ctx context.Context, data []byte) error {
	if len(data) > MaxMessageSize {
		return ErrTooLarge
	}
	if n.ctx.Err() != nil {
		return ErrClosed
	}
	if err := n.topic.Publish(ctx, data); err != nil {
		return fmt.Errorf("gossip: publish: %w", err)
	}
	return nil
}

// Deltas returns the channel of deltas published by other members (never
// this node's own). It holds 128 messages; when it is full further deltas
// are dropped (Stats.DeltasDropped). It is closed by Close.
func (n *Node) Deltas() <-chan Message { return n.deltas }

// HandleSync registers the handler of inbound sync requests, replacing any
// previous one; nil unregisters it. Only alive members are served, at most
// 32 at once.
func (n *Node) HandleSync(h SyncHandler) {
	if h == nil {
		n.host.RemoveStreamHandler(syncProtocol)
		n.syncFn.Store(nil)
		return
	}
	n.syncFn.Store(&h)
	n.host.SetStreamHandler(syncProtocol, n.handleSync)
}

func (n *Node) reject(s network.Stream, why string) {
	n.streamsRejected.Add(1)
	n.log.Debug("inbound stream refused", "protocol", string(s.Protocol()),
		"peer", s.Conn().RemotePeer().String(), "reason", why)
	_ = s.Reset()
}

func (n *Node) handleSync(s network.Stream) {
	name, ok := n.memberName(s.Conn().RemotePeer())
	if !ok {
		n.reject(s, "not an alive member")
		return
	}
	select {
	case n.syncSem <- struct{}{}:
		defer func() { <-n.syncSem }()
	default:
		n.reject(s, "too many syncs")
		return
	}
	deadline := time.Now().Add(syncTimeout)
	_ = s.SetDeadline(deadline)
	kind, req, err := readFrame(s, MaxMessageSize)
	if err != nil || kind != frameOK {
		n.reject(s, fmt.Sprintf("bad request: %v", err))
		return
	}
	fn := n.syncFn.Load()
	if fn == nil {
		n.reject(s, "no handler")
		return
	}
	ctx, cancel := context.WithDeadline(n.ctx, deadline)
	resp, err := callSync(ctx, *fn, name, req)
	cancel()
	if err == nil && len(resp) > MaxMessageSize {
		err = ErrTooLarge
	}
	if err != nil {
		err = writeFrame(s, frameErr, errorText(err))
	} else {
		err = writeFrame(s, frameOK, resp)
	}
	if err != nil {
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

// callSync runs a sync handler, turning a panic into an error.
func callSync(ctx context.Context, h SyncHandler, from string, req []byte) (resp []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("sync handler panic: %v", r)
		}
	}()
	return h(ctx, from, req)
}

// Sync sends req to the sync handler of the named alive member and returns
// its response. It fails with ErrTooLarge for a request over
// MaxMessageSize, with a *RemoteError when the remote handler returned an
// error, and when ctx ends (or, without a ctx deadline, after 30 s).
func (n *Node) Sync(ctx context.Context, member string, req []byte) ([]byte, error) {
	if len(req) > MaxMessageSize {
		return nil, ErrTooLarge
	}
	if n.ctx.Err() != nil {
		return nil, ErrClosed
	}
	pid, addrs, err := n.memberPeer(member)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, syncTimeout)
		defer cancel()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(n.ctx, cancel) // Close aborts the call
	defer stop()

	n.host.Peerstore().AddAddrs(pid, addrs, peerstore.TempAddrTTL)
	dctx, dcancel := context.WithTimeout(ctx, dialTimeout)
	s, err := n.host.NewStream(dctx, pid, syncProtocol)
	dcancel()
	if err != nil {
		return nil, fmt.Errorf("gossip: sync with %s: %w", member, err)
	}
	defer s.Close()
	dl, _ := ctx.Deadline()
	_ = s.SetDeadline(dl)
	abort := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer abort()

	if err := writeFrame(s, frameOK, req); err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("gossip: sync with %s: %w", member, err)
	}
	if err := s.CloseWrite(); err != nil {
		_ = s.Reset()
		return nil, fmt.Errorf("gossip: sync with %s: %w", member, err)
	}
	kind, resp, err := readFrame(s, MaxMessageSize)
	if err != nil {
		_ = s.Reset()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("gossip: sync with %s: %w", member, err)
	}
	if kind == frameErr {
		return nil, &RemoteError{Msg: string(resp)}
	}
	return resp, nil
}

// memberPeer returns the data plane of an alive member.
func (n *Node) memberPeer(name string) (peer.ID, []ma.Multiaddr, error) {
	if name == n.cfg.Name {
		return "", nil, errors.New("gossip: cannot sync with self")
	}
	for _, m := range n.serf.Members() {
		if m.Name != name {
			continue
		}
		if statusString(m.Status) != StatusAlive {
			return "", nil, fmt.Errorf("gossip: member %q is %s", name, statusString(m.Status))
		}
		pid, err := peer.Decode(m.Tags[TagPeerID])
		if err != nil {
			return "", nil, fmt.Errorf("gossip: member %q has no data plane", name)
		}
		var addrs []ma.Multiaddr
		if a, err := ma.NewMultiaddr(m.Tags[TagP2PAddr]); err == nil {
			addrs = append(addrs, a)
		}
		return pid, addrs, nil
	}
	return "", nil, fmt.Errorf("gossip: unknown member %q", name)
}

// isMemberPeer reports whether p is the data plane of an alive member
// according to serf itself (the event loop's view may lag behind a join).
func (n *Node) isMemberPeer(p peer.ID) bool {
	_, ok := n.serfMemberName(p)
	return ok
}

func (n *Node) serfMemberName(p peer.ID) (string, bool) {
	id := p.String()
	for _, m := range n.serf.Members() {
		if m.Status == serf.StatusAlive && m.Tags[TagPeerID] == id && m.Name != n.cfg.Name {
			return m.Name, true
		}
	}
	return "", false
}

// memberName is isAliveMember falling back to serf's own member list, for
// the moments after a join when the event loop has not caught up yet. It is
// for the data paths; the pubsub peer filter and score use the fast check.
func (n *Node) memberName(p peer.ID) (string, bool) {
	if name, ok := n.isAliveMember(p); ok {
		return name, true
	}
	return n.serfMemberName(p)
}

// connectMember dials an alive member's data plane in the background.
func (n *Node) connectMember(pid peer.ID, addr string) {
	if pid == n.host.ID() || n.host.Network().Connectedness(pid) == network.Connected {
		return
	}
	a, err := ma.NewMultiaddr(addr)
	if err != nil {
		return
	}
	n.mu.Lock()
	if n.closed || n.dialing[pid] {
		n.mu.Unlock()
		return
	}
	n.dialing[pid] = true
	n.mu.Unlock()
	n.goFn(func() {
		defer func() {
			n.mu.Lock()
			delete(n.dialing, pid)
			n.mu.Unlock()
		}()
		select {
		case n.dialSem <- struct{}{}:
			defer func() { <-n.dialSem }()
		case <-n.ctx.Done():
			return
		}
		ctx, cancel := context.WithTimeout(n.ctx, dialTimeout)
		defer cancel()
		if err := n.host.Connect(ctx, peer.AddrInfo{ID: pid, Addrs: []ma.Multiaddr{a}}); err != nil {
			n.log.Debug("data plane dial failed", "peer", pid.String(), "err", err)
		}
	})
}

// reconcileLoop connects to the alive members it picks as neighbours (all
// of them in a cluster of up to fullMeshUpTo; see neighbours.go) and
// closes connections of peers that are not alive members after a grace
// period (long enough for an mDNS hello to make them members), and in a
// larger cluster its own connections to members that are no neighbours.
func (n *Node) reconcileLoop() {
	t := time.NewTicker(reconcileEvery)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case now := <-t.C:
			if n.mdns != nil {
				n.helloFound(now)
			}
		case <-n.relink:
			// Membership changed: pick again once the burst of events
			// (a join brings many) has passed.
			select {
			case <-n.ctx.Done():
				return
			case <-time.After(relinkAfter):
			}
		}
		var names []string
		alive := map[string]serf.Member{}
		for _, m := range n.serf.Members() {
			if m.Name != n.cfg.Name && statusString(m.Status) == StatusAlive {
				names = append(names, m.Name)
				alive[m.Name] = m
			}
		}
		picks := neighbours(n.cfg.Name, names, n.cfg.FullMeshUpTo, neighbourLinks)
		n.mu.Lock()
		n.picks = picks
		n.mu.Unlock()
		for name := range picks {
			m := alive[name]
			if pid, err := peer.Decode(m.Tags[TagPeerID]); err == nil {
				n.connectMember(pid, m.Tags[TagP2PAddr])
			}
		}
		if len(names) > n.cfg.FullMeshUpTo {
			n.closeStrayConns(names, picks)
		}
		for _, p := range n.host.Network().Peers() {
			if _, ok := n.isAliveMember(p); ok {
				continue
			}
			old := true
			for _, c := range n.host.Network().ConnsToPeer(p) {
				if time.Since(c.Stat().Opened) < nonMemberGrace {
					old = false
				}
			}
			if old {
				n.log.Debug("closing connection of non-member", "peer", p.String())
				_ = n.host.Network().ClosePeer(p)
			}
		}
	}
}

// closeStrayConns closes the connections this peer dialed to alive
// members that neither it nor they pick as neighbours (made for an
// anti-entropy exchange or an image transfer with a random peer), once
// connGrace old and carrying nothing but pubsub's stream. Connections others
// dialed are theirs to close.
func (n *Node) closeStrayConns(names []string, picks map[string]bool) {
	for _, c := range n.host.Network().Conns() {
		st := c.Stat()
		if st.Direction != network.DirOutbound || time.Since(st.Opened) < connGrace {
			continue
		}
		name, ok := n.isAliveMember(c.RemotePeer())
		if !ok || picks[name] || busyConn(c) {
			continue
		}
		if neighbours(name, append(names, n.cfg.Name), n.cfg.FullMeshUpTo, neighbourLinks)[n.cfg.Name] {
			continue
		}
		n.log.Debug("closing a connection to a member that is no neighbour", "member", name)
		_ = c.Close()
	}
}

// busyConn reports whether c carries a stream of another protocol than
// pubsub's (a sync, an image transfer).
func busyConn(c network.Conn) bool {
	for _, s := range c.GetStreams() {
		switch s.Protocol() {
		case pubsub.GossipSubID_v13, pubsub.GossipSubID_v12, pubsub.GossipSubID_v11, pubsub.GossipSubID_v10, pubsub.FloodSubID:
		default:
			return true
		}
	}
	return false
}

// Connected returns the alive members this node's data plane is connected
// to now, sorted: its neighbours, and whoever dialed it (see neighbours.go).
// Exchanges with them cost no new connection.
func (n *Node) Connected() []string {
	var out []string
	for _, p := range n.host.Network().Peers() {
		if name, ok := n.isAliveMember(p); ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

type mdnsNotifee struct{ n *Node }

func (m mdnsNotifee) HandlePeerFound(pi peer.AddrInfo) { m.n.discovered(pi) }

func (n *Node) startMDNS() error {
	s := mdns.NewMdnsService(n.host, mdnsServiceName, mdnsNotifee{n})
	if err := s.Start(); err != nil {
		return fmt.Errorf("gossip: mdns: %w", err)
	}
	n.mdns = s
	return nil
}

// mdnsPeer is a host found by mDNS that is not (yet) a member.
type mdnsPeer struct {
	info  peer.AddrInfo
	seen  time.Time // last reported by mDNS
	tried time.Time // last hello started (zero: none yet)
	fails int       // hellos that failed in a row
	busy  bool      // a hello is under way
}

// discovered records an mDNS discovery. mDNS reports a host once per record
// lifetime, so the hello is retried from reconcileLoop until the host is a
// member (see helloDue). When two hosts find each other at once only the
// one with the smaller peer id says hello at once; the other waits
// helloDefer, so that their dials do not cross (simultaneous Noise
// handshakes between the same two hosts fail on both sides).
func (n *Node) discovered(pi peer.AddrInfo) {
	if pi.ID == n.host.ID() {
		return
	}
	if _, ok := n.isAliveMember(pi.ID); ok {
		return
	}
	now := time.Now()
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	if len(n.found) >= maxFound { // keep the map bounded: forget the oldest
		var oldest peer.ID
		for p, f := range n.found {
			if oldest == "" || f.seen.Before(n.found[oldest].seen) {
				oldest = p
			}
		}
		delete(n.found, oldest)
	}
	f, ok := n.found[pi.ID]
	if !ok {
		f = &mdnsPeer{}
		n.found[pi.ID] = f
	}
	f.info, f.seen = pi, now
	n.mu.Unlock()
	n.log.Debug("mdns discovered peer", "peer", pi.ID.String(), "addrs", fmt.Sprint(pi.Addrs))
	n.helloFound(now)
}

// helloDue reports whether a found host gets a hello now: the first one at
// once from the smaller peer id and after helloDefer from the larger, then
// retries with a doubling back-off from helloRetry up to helloBackoff.
func helloDue(self peer.ID, f *mdnsPeer, now time.Time) bool {
	if f.tried.IsZero() {
		return self < f.info.ID || now.Sub(f.seen) >= helloDefer
	}
	wait := helloRetry << min(f.fails, 8)
	return now.Sub(f.tried) >= min(wait, helloBackoff)
}

// helloFound starts a hello to every found host that is due, and forgets
// hosts that became members or were not seen for foundTTL.
func (n *Node) helloFound(now time.Time) {
	var due []*mdnsPeer
	n.mu.Lock()
	for p, f := range n.found {
		if n.closed {
			break
		}
		if _, member := n.peers[p]; member || now.Sub(f.seen) > foundTTL {
			delete(n.found, p)
			continue
		}
		if !f.busy && helloDue(n.host.ID(), f, now) {
			f.tried, f.busy = now, true
			due = append(due, f)
		}
	}
	n.mu.Unlock()
	for _, f := range due {
		pi := f.info
		n.goFn(func() {
			select {
			case n.dialSem <- struct{}{}:
				defer func() { <-n.dialSem }()
			case <-n.ctx.Done():
				return
			}
			err := n.hello(pi) // fails at once when the node is closing
			n.mu.Lock()
			f.busy = false
			if err != nil {
				f.fails++
			} else {
				f.fails = 0
			}
			n.mu.Unlock()
			if err != nil {
				n.log.Debug("hello failed", "peer", pi.ID.String(), "err", err)
			}
		})
	}
}

// hello asks an mDNS-discovered peer to join us (if we are not members of
// one cluster yet) and for its serf address, which we join.
func (n *Node) hello(pi peer.AddrInfo) error {
	ctx, cancel := context.WithTimeout(n.ctx, helloTimeout)
	defer cancel()
	cctx, ccancel := context.WithTimeout(ctx, dialTimeout)
	err := n.host.Connect(cctx, pi)
	ccancel()
	if err != nil {
		return err
	}
	s, err := n.host.NewStream(ctx, pi.ID, helloProtocol)
	if err != nil {
		return err
	}
	defer s.Close()
	dl, _ := ctx.Deadline()
	_ = s.SetDeadline(dl)
	if err := writeFrame(s, frameOK, n.helloFrame(helloRequest, pi.ID)); err != nil {
		_ = s.Reset()
		return err
	}
	if err := s.CloseWrite(); err != nil {
		_ = s.Reset()
		return err
	}
	kind, payload, err := readFrame(s, max(maxErrorText, maxHelloFrame))
	if err != nil {
		_ = s.Reset()
		return err
	}
	if kind == frameErr {
		return &RemoteError{Msg: string(payload)}
	}
	addr, err := n.readHelloFrame(payload, helloResponse, pi.ID)
	if err != nil {
		return err
	}
	if n.isMemberPeer(pi.ID) {
		return nil
	}
	if _, err := n.serf.Join([]string{addr}, true); err != nil {
		return fmt.Errorf("serf join %s: %w", addr, err)
	}
	n.log.Info("joined cluster through mdns", "peer", pi.ID.String(), "serf", addr)
	return nil
}

// handleHello serves "/chorus/hello/1". The request is the requester's serf
// address. An alive member gets our serf address. Anyone else gets nothing
// unless we can serf-join the address it sent, which requires the gossip key
// and an address on the IP the stream comes from; once joined it is a member
// and gets our address.
func (n *Node) handleHello(s network.Stream) {
	_ = s.SetDeadline(time.Now().Add(helloTimeout))
	kind, payload, err := readFrame(s, maxHelloFrame)
	if err != nil || kind != frameOK {
		n.reject(s, fmt.Sprintf("bad hello: %v", err))
		return
	}
	remote := s.Conn().RemotePeer()
	addr, err := n.readHelloFrame(payload, helloRequest, remote)
	if err != nil {
		n.reject(s, err.Error())
		return
	}
	if !n.isMemberPeer(remote) {
		host, _, _ := net.SplitHostPort(addr)
		ip := net.ParseIP(host)
		rip, err := manet.ToIP(s.Conn().RemoteMultiaddr())
		if err != nil || !(ip.Equal(rip) || (ip.IsLoopback() && rip.IsLoopback())) {
			n.refuseHello(s, "address not on the connection's IP")
			return
		}
		if !n.helloMu.TryLock() {
			n.reject(s, "hello join in progress")
			return
		}
		_, err = n.serf.Join([]string{addr}, true)
		n.helloMu.Unlock()
		if err != nil {
			n.refuseHello(s, "join failed")
			return
		}
		if !n.isMemberPeer(remote) {
			n.refuseHello(s, "not a member")
			return
		}
		n.log.Info("joined mdns peer on its hello", "peer", remote.String(), "serf", addr)
	}
	if err := writeFrame(s, frameOK, n.helloFrame(helloResponse, remote)); err != nil {
		_ = s.Reset()
		return
	}
	_ = s.Close()
}

func (n *Node) refuseHello(s network.Stream, why string) {
	n.streamsRejected.Add(1)
	n.log.Debug("hello refused", "peer", s.Conn().RemotePeer().String(), "reason", why)
	if writeFrame(s, frameErr, []byte(why)) != nil {
		_ = s.Reset()
		return
	}
	_ = s.Close()
}
