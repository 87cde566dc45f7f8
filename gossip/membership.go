package gossip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/serf/serf"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
)

// Default ports.
const (
	DefaultSerfPort = 7946
	DefaultP2PPort  = 7947
)

// Profiles select failure-detection timings (Config.Profile).
//
// Detection time is roughly: time until some member probes the dead node
// (at most ProbeInterval, as all members probe in turn), plus the probe
// (ProbeTimeout, then indirect and TCP probes until the end of the interval),
// plus the suspicion timeout, plus a few GossipIntervals to spread the verdict.
// memberlist's suspicion timeout is SuspicionMult × max(1, log10(N)) ×
// ProbeInterval when enough other members confirm the suspicion, and up to
// SuspicionMaxTimeoutMult times that when none do (for example when only the
// suspecting node can see the suspect). A live node that is falsely
// suspected (a lost UDP packet, a pause longer than ProbeTimeout) has the
// whole suspicion timeout to refute it, so shorter timings mean faster
// detection but more false "Dead" verdicts on a busy or lossy network.
const (
	// ProfileLocal is the default, for peers on one machine or one local
	// network (round trips well under 10 ms): ProbeInterval 250ms,
	// ProbeTimeout 100ms, SuspicionMult 2 (suspicion 500ms),
	// SuspicionMaxTimeoutMult 4, GossipInterval 100ms. A dead peer is
	// declared failed in about 1-2 s. A stall over ~100ms (a loaded CPU, a
	// GC pause) can get a live node suspected; it then has 500ms to refute
	// (measured on lab machines: no suspicion in 30 s at 5% loss, nor at 1%
	// loss with every core busy; docs/BENCHMARKS.md).
	ProfileLocal = "local"
	// ProfileLAN is for a slower or busier network: ProbeInterval 500ms,
	// ProbeTimeout 250ms, SuspicionMult 3 (suspicion 1.5 s with up to 10
	// members), SuspicionMaxTimeoutMult 2 (3 s without confirmations),
	// GossipInterval 100ms, 3 indirect probes. A dead peer among 5 is
	// declared failed in about 2-4 s. A live node must answer some probe
	// within 250ms, directly, through one of 3 other members or over TCP, and
	// has at least 1.5 s to refute a suspicion, which tolerates lost packets
	// and pauses of about a second.
	ProfileLAN = "lan"
	// ProfileWAN is memberlist's DefaultWANConfig: ProbeInterval 5 s,
	// ProbeTimeout 3 s, SuspicionMult 6 (30 s, 60 s or more). Detection takes
	// tens of seconds; false suspicion is rare even across the internet.
	ProfileWAN = "wan"
)

// Reserved serf tags set by the node itself; SetTags refuses them.
const (
	// TagPeerID is the libp2p peer id of the member's data plane.
	TagPeerID = "p2p"
	// TagP2PAddr is the libp2p multiaddr of the member's data plane.
	TagP2PAddr = "p2p-addr"
)

// Status is a member's state as this node sees it.
type Status string

// Member status values.
const (
	StatusAlive   Status = "Alive"
	StatusLeaving Status = "Leaving"
	StatusLeft    Status = "Left"
	StatusDead    Status = "Dead"
	StatusUnknown Status = "Unknown"
)

// Config configures a Node. Only Name (or a usable hostname) and, in a real
// deployment, BindAddr are needed; the rest has defaults.
type Config struct {
	// Name is the node's unique name in the cluster (default: hostname).
	Name string
	// BindAddr is the IP both planes listen on and advertise (default
	// "0.0.0.0": listen everywhere and advertise the first private IP).
	BindAddr string
	// SerfPort is the UDP+TCP membership port (default 7946).
	SerfPort int
	// P2PPort is the TCP data plane port (default 7947).
	P2PPort int
	// Join lists seeds, "host" (SerfPort is added) or "host:port". They are
	// tried at once and then every 2 s until one join succeeds.
	Join []string
	// Key is the gossip key, 16, 24 or 32 bytes (AES-128/192/256); nil means
	// no encryption and an open cluster. It is the primary key of the
	// node's keyring (see InstallKey, UseKey, RemoveKey).
	Key []byte
	// ExtraKeys are gossip keys accepted besides Key (a cluster changing
	// its key); ignored without Key.
	ExtraKeys [][]byte
	// Profile is ProfileLocal (default), ProfileLAN or ProfileWAN.
	Profile string
	// Tags are the node's initial user tags (see SetTags).
	Tags map[string]string
	// DataDir keeps the serf snapshot (serf.snapshot) and the libp2p identity
	// (p2p.key). Empty means an ephemeral identity and no rejoin on restart.
	DataDir string
	// Discover enables mDNS discovery on the local network.
	Discover bool
	// Log receives the node's logs, serf's and memberlist's included
	// (default: discarded).
	Log *slog.Logger
	// JoinHint, when set, is added to the warning logged when joining the
	// seeds keeps failing (what the operator may have to do).
	JoinHint string
	// FullMeshUpTo is how many other members a node connects to all of
	// (default 32); beyond, it dials only its neighbours (neighbours.go).
	FullMeshUpTo int
}

// Member is a cluster member as seen by this node.
type Member struct {
	Name string
	// Addr is the member's serf address, "ip:port".
	Addr string
	// Status is StatusAlive, StatusLeaving, StatusLeft or StatusDead.
	Status Status
	Tags   map[string]string
	// Since is when this node saw Status begin (or first saw the member).
	Since time.Time
}

// EventType is the kind of a MemberEvent.
type EventType string

// Member event types.
const (
	EventJoin   EventType = "join"
	EventUpdate EventType = "update"
	EventLeave  EventType = "leave"
	EventFailed EventType = "failed"
	// EventReap: a failed or left member was forgotten (ReconnectTimeout or
	// TombstoneTimeout elapsed); it no longer appears in Members.
	EventReap EventType = "reap"
)

// MemberEvent is one change of one member.
type MemberEvent struct {
	Type   EventType
	Member Member
}

// Stats are counters since Start. GossipRejected is counted from
// memberlist's and serf's own log lines, as they keep no per-instance
// counters (their go-metrics counters are process-wide).
type Stats struct {
	// GossipRejected counts membership messages refused by memberlist or
	// serf: undecryptable (wrong or missing key), unencrypted while a key is
	// set, bad label or checksum, or undecodable.
	GossipRejected uint64
	// PubsubRejected counts deltas refused by the validator: too large, or
	// authored or forwarded by a peer that is not an alive member.
	PubsubRejected uint64
	// StreamsRejected counts inbound sync and hello streams refused (not an
	// alive member, too many at once, oversized or malformed frames, a hello
	// without a valid proof, failed hello joins) and data plane connections
	// refused to non-members of a keyed cluster.
	StreamsRejected uint64
	// DeltasDropped counts received deltas dropped because the Deltas
	// channel was full.
	DeltasDropped uint64
	// EventsDropped counts member events dropped because a subscriber's
	// channel was full.
	EventsDropped uint64
	// ConnsDialed counts the data plane connections this node opened (each
	// a Noise handshake and an identify exchange).
	ConnsDialed uint64
}

// Node is a running member of the cluster: membership plus data plane.
type Node struct {
	cfg       Config
	log       *slog.Logger
	serf      *serf.Serf
	serfReady atomic.Bool         // serf is set (the connection gater may run before)
	serfAddr  string              // advertised "ip:port"
	keyring   *memberlist.Keyring // nil: an open cluster
	events    chan serf.Event
	changes   atomic.Uint64 // member events handled (Changes)
	loopDone  chan struct{}
	joined    chan struct{} // closed once a seed of cfg.Join answered, or at once without seeds

	host   host.Host
	ps     *pubsub.PubSub
	topic  *pubsub.Topic
	sub    *pubsub.Subscription
	deltas chan Message
	mdns   mdns.Service

	ctx    context.Context // node lifetime; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.RWMutex
	peers    map[peer.ID]string // alive members' peer ids -> names
	states   map[string]seen    // member name -> status as last seen
	subs     map[int]chan MemberEvent
	nextSub  int
	userTags map[string]string
	closed   bool
	dialing  map[peer.ID]bool
	picks    map[string]bool       // the neighbours reconcileLoop last picked
	relink   chan struct{}         // a member event: pick the neighbours again
	found    map[peer.ID]*mdnsPeer // mDNS discoveries not yet members

	syncFn  atomic.Pointer[SyncHandler]
	syncSem chan struct{}
	helloMu sync.Mutex // one inbound hello join at a time
	dialSem chan struct{}

	gossipRejected  atomic.Uint64
	pubsubRejected  atomic.Uint64
	streamsRejected atomic.Uint64
	deltasDropped   atomic.Uint64
	eventsDropped   atomic.Uint64
	dialed          atomic.Uint64 // data plane connections this node opened

	closeOnce sync.Once
	closeErr  error
}

type seen struct {
	status Status
	since  time.Time
}

const (
	eventBuffer      = 1024 // serf -> event loop
	subscriberBuffer = 256  // per Subscribe channel
	joinRetry        = 2 * time.Second
)

// Start starts a node: the libp2p host, serf (memberlist on
// BindAddr:SerfPort), GossipSub and, with cfg.Discover, mDNS. It returns
// once both planes listen; seeds in cfg.Join are joined in the background,
// retried every 2 s until one join succeeds, ctx is done or the node is
// closed. ctx only bounds start-up and those retries: the node runs until
// Close.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if cfg.DataDir != "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("gossip: data dir: %w", err)
		}
	}
	nctx, cancel := context.WithCancel(context.Background())
	n := &Node{
		cfg:      cfg,
		log:      cfg.Log.With("node", cfg.Name),
		events:   make(chan serf.Event, eventBuffer),
		loopDone: make(chan struct{}),
		joined:   make(chan struct{}),
		deltas:   make(chan Message, deltaBuffer),
		ctx:      nctx,
		cancel:   cancel,
		peers:    map[peer.ID]string{},
		states:   map[string]seen{},
		subs:     map[int]chan MemberEvent{},
		userTags: copyTags(cfg.Tags),
		dialing:  map[peer.ID]bool{},
		relink:   make(chan struct{}, 1),
		found:    map[peer.ID]*mdnsPeer{},
		syncSem:  make(chan struct{}, maxInboundSyncs),
		dialSem:  make(chan struct{}, maxDials),
	}
	ok := false
	defer func() {
		if !ok {
			n.shutdown()
		}
	}()

	var err error
	if n.keyring, err = newKeyring(cfg); err != nil {
		return nil, err
	}
	go n.eventLoop()
	if err := n.startHost(); err != nil {
		return nil, err
	}
	if err := n.startSerf(); err != nil {
		return nil, err
	}
	if err := n.startPubsub(); err != nil {
		return nil, err
	}
	if cfg.Discover {
		if err := n.startMDNS(); err != nil {
			return nil, err
		}
	}
	n.goFn(n.reconcileLoop)
	if len(cfg.Join) > 0 {
		seeds := make([]string, len(cfg.Join))
		for i, s := range cfg.Join {
			seeds[i] = withDefaultPort(s, cfg.SerfPort)
		}
		n.goFn(func() { n.joinLoop(ctx, seeds) })
	} else {
		close(n.joined)
	}
	ok = true
	n.log.Info("gossip node started", "serf", n.serfAddr, "peer", n.host.ID().String(),
		"profile", cfg.Profile, "encrypted", cfg.Key != nil)
	return n, nil
}

func (c *Config) setDefaults() error {
	if c.Name == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			return errors.New("gossip: Config.Name is empty and no hostname")
		}
		c.Name = h
	}
	if len(c.Name) > 128 {
		return errors.New("gossip: Config.Name longer than 128 bytes")
	}
	if c.BindAddr == "" {
		c.BindAddr = "0.0.0.0"
	}
	if net.ParseIP(c.BindAddr) == nil {
		return fmt.Errorf("gossip: BindAddr %q is not an IP address", c.BindAddr)
	}
	if c.SerfPort == 0 {
		c.SerfPort = DefaultSerfPort
	}
	if c.P2PPort == 0 {
		c.P2PPort = DefaultP2PPort
	}
	if c.SerfPort < 0 || c.SerfPort > 65535 || c.P2PPort < 0 || c.P2PPort > 65535 {
		return errors.New("gossip: port out of range")
	}
	switch len(c.Key) {
	case 0, 16, 24, 32:
	default:
		return fmt.Errorf("gossip: key must be 16, 24 or 32 bytes, not %d", len(c.Key))
	}
	if len(c.Key) == 0 {
		c.Key, c.ExtraKeys = nil, nil
	} else {
		c.Key = append([]byte(nil), c.Key...)
	}
	extra := make([][]byte, 0, len(c.ExtraKeys))
	for _, k := range c.ExtraKeys {
		if err := checkKey(k); err != nil {
			return fmt.Errorf("gossip: ExtraKeys: %w", err)
		}
		extra = append(extra, append([]byte(nil), k...))
	}
	c.ExtraKeys = extra
	if c.Profile == "" {
		c.Profile = ProfileLocal
	}
	if c.FullMeshUpTo <= 0 {
		c.FullMeshUpTo = fullMeshUpTo
	}
	if c.Profile != ProfileLocal && c.Profile != ProfileLAN && c.Profile != ProfileWAN {
		return fmt.Errorf("gossip: unknown profile %q", c.Profile)
	}
	for k := range c.Tags {
		if k == TagPeerID || k == TagP2PAddr {
			return fmt.Errorf("gossip: tag %q is reserved", k)
		}
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// memberlistConfig returns the memberlist configuration of a profile.
func memberlistConfig(profile string) *memberlist.Config {
	switch profile {
	case ProfileLocal:
		c := memberlist.DefaultLocalConfig()
		c.ProbeInterval = 250 * time.Millisecond
		c.ProbeTimeout = 100 * time.Millisecond
		c.SuspicionMult = 2
		c.SuspicionMaxTimeoutMult = 4
		c.GossipInterval = 100 * time.Millisecond
		c.PushPullInterval = 10 * time.Second
		c.TCPTimeout = 2 * time.Second
		// In a cluster of 2-3 nodes, 2 retransmissions can all be wasted
		// on probes of a dead node, losing a leave or dead message.
		c.RetransmitMult = 4
		c.GossipToTheDeadTime = 5 * time.Second
		return c
	case ProfileWAN:
		return memberlist.DefaultWANConfig()
	default:
		c := memberlist.DefaultLANConfig()
		c.ProbeInterval = 500 * time.Millisecond
		c.ProbeTimeout = 250 * time.Millisecond
		c.SuspicionMult = 3
		c.SuspicionMaxTimeoutMult = 2
		c.GossipInterval = 100 * time.Millisecond
		c.IndirectChecks = 3
		c.PushPullInterval = 15 * time.Second
		c.TCPTimeout = 5 * time.Second
		c.GossipToTheDeadTime = 15 * time.Second
		return c
	}
}

func (n *Node) startSerf() error {
	cfg := n.cfg
	ml := memberlistConfig(cfg.Profile)
	ml.Name = cfg.Name
	ml.BindAddr = cfg.BindAddr
	ml.BindPort = cfg.SerfPort
	ml.AdvertisePort = cfg.SerfPort
	if ip := net.ParseIP(cfg.BindAddr); !ip.IsUnspecified() {
		ml.AdvertiseAddr = cfg.BindAddr
	}
	// A failed member's name can be taken by a node at another address
	// (a restarted host with a new IP) after this long; without it the name
	// would be blocked until the failed member is reaped.
	ml.DeadNodeReclaimTime = 30 * time.Second
	ml.Label = "chorus"
	ml.Keyring = n.keyring
	ml.GossipVerifyIncoming = true
	ml.GossipVerifyOutgoing = true
	logger := log.New(&logBridge{log: n.log, rejected: &n.gossipRejected}, "", 0)
	ml.Logger = logger

	sc := serf.DefaultConfig()
	sc.NodeName = cfg.Name
	sc.MemberlistConfig = ml
	sc.Logger = logger
	sc.LogOutput = nil
	sc.EventCh = n.events
	sc.CoalescePeriod = 0 // deliver member events at once
	// A peer restarted at a new address (a machine given another IP)
	// rejoins while the others still hold its old address, alive or
	// suspect, for a moment: serf's name-conflict resolution then has the
	// others vote for the old address and the restarted peer quits serf
	// for good, isolated until restarted again. Without it memberlist
	// refuses the new address (and logs the conflict) until the old one
	// is dead and DeadNodeReclaimTime has passed, and the peer's next
	// push-pull brings it in.
	sc.EnableNameConflictResolution = false
	sc.ReapInterval = 15 * time.Second
	// A failed member stays listed as Dead (and is retried every
	// ReconnectInterval) for ReconnectTimeout; a left one stays Left for
	// TombstoneTimeout. Then it is reaped.
	sc.ReconnectTimeout = 24 * time.Hour
	sc.TombstoneTimeout = 24 * time.Hour
	switch cfg.Profile {
	case ProfileLocal:
		sc.ReconnectInterval = 5 * time.Second
		sc.LeavePropagateDelay = 500 * time.Millisecond
	case ProfileLAN:
		sc.ReconnectInterval = 10 * time.Second
	}
	if cfg.DataDir != "" {
		sc.SnapshotPath = filepath.Join(cfg.DataDir, "serf.snapshot")
	}
	tags := copyTags(n.userTags)
	for k, v := range n.reservedTags(cfg.BindAddr) {
		tags[k] = v
	}
	sc.Tags = tags
	if err := checkTagsSize(tags); err != nil {
		return err
	}

	// Bind the membership port here rather than inside serf.Create: when
	// Create fails it leaks goroutines, and a port in use is the usual cause.
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{cfg.BindAddr},
		BindPort:  cfg.SerfPort,
		Logger:    logger,
	})
	if err != nil {
		return fmt.Errorf("gossip: serf port %s: %w", net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.SerfPort)), err)
	}
	if ip := net.ParseIP(cfg.BindAddr); ip != nil && !ip.IsUnspecified() {
		ml.Transport = &boundTransport{NetTransport: nt, local: &net.TCPAddr{IP: ip}}
	} else {
		ml.Transport = nt
	}

	s, err := serf.Create(sc)
	if err != nil {
		_ = nt.Shutdown()
		return fmt.Errorf("gossip: serf: %w", err)
	}
	n.serf = s
	n.serfReady.Store(true)
	lm := s.LocalMember()
	n.serfAddr = net.JoinHostPort(lm.Addr.String(), strconv.Itoa(int(lm.Port)))
	if ip := net.ParseIP(cfg.BindAddr); ip.IsUnspecified() {
		// The advertised IP is known only now: publish the data plane
		// address with it.
		if err := n.pushTags(lm.Addr.String()); err != nil {
			return err
		}
	}
	return nil
}

// reservedTags are the data plane tags for an advertised IP.
func (n *Node) reservedTags(advertiseIP string) map[string]string {
	return map[string]string{
		TagPeerID:  n.host.ID().String(),
		TagP2PAddr: p2pMultiaddr(advertiseIP, n.cfg.P2PPort),
	}
}

func (n *Node) pushTags(advertiseIP string) error {
	n.mu.RLock()
	tags := copyTags(n.userTags)
	n.mu.RUnlock()
	for k, v := range n.reservedTags(advertiseIP) {
		tags[k] = v
	}
	if err := checkTagsSize(tags); err != nil {
		return err
	}
	return n.serf.SetTags(tags)
}

// SetTags replaces the node's user tags and gossips them (members see an
// EventUpdate). The reserved tags TagPeerID and TagP2PAddr are kept and may
// not be set. Serf limits the encoded tags to 512 bytes.
func (n *Node) SetTags(tags map[string]string) error {
	for k := range tags {
		if k == TagPeerID || k == TagP2PAddr {
			return fmt.Errorf("gossip: tag %q is reserved", k)
		}
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return ErrClosed
	}
	old := n.userTags
	n.userTags = copyTags(tags)
	n.mu.Unlock()
	ip, _, _ := net.SplitHostPort(n.serfAddr)
	if err := n.pushTags(ip); err != nil {
		n.mu.Lock()
		n.userTags = old
		n.mu.Unlock()
		return fmt.Errorf("gossip: set tags: %w", err)
	}
	return nil
}

// ErrClosed is returned by operations on a closed Node.
var ErrClosed = errors.New("gossip: node closed")

// ErrTagsTooLarge is returned when a node's tags, encoded as serf gossips
// them, exceed memberlist's limit on a node's metadata (512 bytes).
var ErrTagsTooLarge = errors.New("gossip: the node's tags are too large")

// checkTagsSize encodes tags as serf does (a magic byte, then msgpack) and
// fails with ErrTagsTooLarge over memberlist.MetaMaxSize: serf reports it
// only as text.
func checkTagsSize(tags map[string]string) error {
	var buf bytes.Buffer
	buf.WriteByte(0xff) // serf's tagMagicByte
	if err := codec.NewEncoder(&buf, &codec.MsgpackHandle{}).Encode(tags); err != nil {
		return fmt.Errorf("gossip: encode tags: %w", err)
	}
	if buf.Len() > memberlist.MetaMaxSize {
		return fmt.Errorf("%w: %d bytes encoded, at most %d", ErrTagsTooLarge, buf.Len(), memberlist.MetaMaxSize)
	}
	return nil
}

// joinLoop joins the seeds now and every joinRetry until one join succeeds.
func (n *Node) joinLoop(ctx context.Context, seeds []string) {
	t := time.NewTimer(0)
	defer t.Stop()
	for attempt := 1; ; attempt++ {
		select {
		case <-ctx.Done():
			return
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		joined, err := n.serf.Join(seeds, true)
		if joined > 0 {
			n.log.Info("joined cluster", "seeds", seeds, "contacted", joined)
			close(n.joined)
			return
		}
		if attempt == 1 || attempt%15 == 0 {
			args := []any{"seeds", seeds, "attempt", attempt, "err", err}
			if n.cfg.JoinHint != "" {
				args = append(args, "hint", n.cfg.JoinHint)
			}
			n.log.Warn("join failed, retrying", args...)
		}
		t.Reset(joinRetry)
	}
}

// Joined is closed once the node has joined a seed of Config.Join (it
// then knows the cluster's members), or from the start when it has none.
func (n *Node) Joined() <-chan struct{} { return n.joined }

// Name returns the node's name.
func (n *Node) Name() string { return n.cfg.Name }

// Members returns all members known to this node, itself included, sorted
// by name. Failed members are listed as StatusDead and left ones as
// StatusLeft until they are reaped (24 h).
func (n *Node) Members() []Member {
	ms := n.serf.Members()
	out := make([]Member, 0, len(ms))
	n.mu.Lock()
	for _, m := range ms {
		out = append(out, n.memberLocked(m))
	}
	n.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Changes counts the membership changes this node has seen (joins, tag
// updates, leaves, failures, reaps). What a reader derived from Members
// still holds while Changes returns what it returned before the reader
// called Members.
func (n *Node) Changes() uint64 { return n.changes.Load() }

// AliveNames returns the names of the alive members, this node included
// when alive, sorted: Members without a copy of every member's address and
// tags (a peer's reconcile loop asks for it at every pass).
func (n *Node) AliveNames() []string {
	ms := n.serf.Members()
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		if m.Status == serf.StatusAlive {
			out = append(out, m.Name)
		}
	}
	sort.Strings(out)
	return out
}

// memberLocked converts a serf member, recording when its status changed.
func (n *Node) memberLocked(m serf.Member) Member {
	st := statusString(m.Status)
	s, ok := n.states[m.Name]
	if !ok || s.status != st {
		s = seen{status: st, since: time.Now()}
		n.states[m.Name] = s
	}
	return Member{
		Name:   m.Name,
		Addr:   net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port))),
		Status: st,
		Tags:   copyTags(m.Tags),
		Since:  s.since,
	}
}

func statusString(s serf.MemberStatus) Status {
	switch s {
	case serf.StatusAlive:
		return StatusAlive
	case serf.StatusLeaving:
		return StatusLeaving
	case serf.StatusLeft:
		return StatusLeft
	case serf.StatusFailed:
		return StatusDead
	default:
		return StatusUnknown
	}
}

// Subscribe returns a channel of membership changes and a function that
// cancels the subscription and closes the channel. The channel holds 256
// events; when it is full further events are dropped (Stats.EventsDropped),
// so a consumer that falls behind should resynchronise with Members. The
// channel is also closed by Close.
func (n *Node) Subscribe() (<-chan MemberEvent, func()) {
	ch := make(chan MemberEvent, subscriberBuffer)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		close(ch)
		return ch, func() {}
	}
	id := n.nextSub
	n.nextSub++
	n.subs[id] = ch
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			n.mu.Lock()
			defer n.mu.Unlock()
			if c, ok := n.subs[id]; ok {
				delete(n.subs, id)
				close(c)
			}
		})
	}
}

// eventLoop consumes serf events until Close has shut serf down.
func (n *Node) eventLoop() {
	defer close(n.loopDone)
	for {
		select {
		case e := <-n.events:
			n.handleSerfEvent(e)
		case <-n.ctx.Done():
			// Drain what serf emitted before it stopped, without blocking.
			for {
				select {
				case e := <-n.events:
					n.handleSerfEvent(e)
				default:
					return
				}
			}
		}
	}
}

func (n *Node) handleSerfEvent(e serf.Event) {
	me, ok := e.(serf.MemberEvent)
	if !ok {
		return
	}
	n.changes.Add(1)
	var typ EventType
	switch me.Type {
	case serf.EventMemberJoin:
		typ = EventJoin
	case serf.EventMemberUpdate:
		typ = EventUpdate
	case serf.EventMemberLeave:
		typ = EventLeave
	case serf.EventMemberFailed:
		typ = EventFailed
	case serf.EventMemberReap:
		typ = EventReap
	default:
		return
	}
	self := n.cfg.Name
	for _, sm := range me.Members {
		n.mu.Lock()
		m := n.memberLocked(sm)
		pid, pidErr := peer.Decode(sm.Tags[TagPeerID])
		if typ == EventReap {
			delete(n.states, sm.Name)
		}
		var drop []peer.ID
		for p, name := range n.peers {
			if name == sm.Name && (p != pid || m.Status != StatusAlive) {
				delete(n.peers, p)
				drop = append(drop, p)
			}
		}
		if m.Status == StatusAlive && pidErr == nil && sm.Name != self {
			n.peers[pid] = sm.Name
		}
		for _, ch := range n.subs {
			select {
			case ch <- MemberEvent{Type: typ, Member: m}:
			default:
				n.eventsDropped.Add(1)
			}
		}
		closed := n.closed
		n.mu.Unlock()

		n.log.Debug("member event", "type", string(typ), "member", m.Name, "status", m.Status)
		if closed || sm.Name == self {
			continue
		}
		for _, p := range drop {
			if p != n.host.ID() {
				_ = n.host.Network().ClosePeer(p)
			}
		}
		if m.Status == StatusAlive && pidErr == nil && n.dialsAtOnce(sm.Name) {
			n.connectMember(pid, sm.Tags[TagP2PAddr])
		}
		select {
		case n.relink <- struct{}{}:
		default:
		}
	}
}

// dialsAtOnce reports whether a member that joined or changed is dialed
// from the event itself: in a full mesh every member is, beyond it only
// the neighbours picked last (the data plane's reconcile loop picks
// again after the event). Dialing every member that joined made every
// peer of a large cluster connect to every other at start, then close
// the connections again (tests/scale: 24,000 dials in 10 s at 160 peers).
func (n *Node) dialsAtOnce(name string) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return len(n.peers) <= n.cfg.FullMeshUpTo || n.picks[name]
}

// isAliveMember reports whether a libp2p peer is the data plane of an alive
// member and returns the member's name.
func (n *Node) isAliveMember(p peer.ID) (string, bool) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	name, ok := n.peers[p]
	return name, ok
}

// Leave leaves the cluster gracefully: the other members see this node as
// Left instead of Dead. Call Close afterwards.
func (n *Node) Leave() error {
	n.mu.RLock()
	closed := n.closed
	n.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	if err := n.serf.Leave(); err != nil {
		return fmt.Errorf("gossip: leave: %w", err)
	}
	return nil
}

// Close shuts the node down without leaving (others will see it Dead unless
// Leave was called first). All goroutines started by the node have ended
// when it returns; the Deltas and Subscribe channels are closed.
func (n *Node) Close() error {
	n.closeOnce.Do(func() { n.closeErr = n.shutdown() })
	return n.closeErr
}

func (n *Node) shutdown() error {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()

	var errs []error
	if n.mdns != nil {
		errs = append(errs, n.mdns.Close())
	}
	if n.serf != nil {
		errs = append(errs, n.serf.Shutdown())
	}
	// Stops pubsub, the join, reconcile, dial and hello goroutines, and the
	// event loop once it has drained what serf emitted.
	n.cancel()
	<-n.loopDone
	if n.host != nil {
		errs = append(errs, n.host.Close())
	}
	n.wg.Wait()
	close(n.deltas)

	n.mu.Lock()
	for id, ch := range n.subs {
		delete(n.subs, id)
		close(ch)
	}
	n.mu.Unlock()
	return errors.Join(errs...)
}

// goFn runs f in a goroutine that Close waits for.
func (n *Node) goFn(f func()) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		f()
	}()
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	return Stats{
		GossipRejected:  n.gossipRejected.Load(),
		PubsubRejected:  n.pubsubRejected.Load(),
		StreamsRejected: n.streamsRejected.Load(),
		DeltasDropped:   n.deltasDropped.Load(),
		EventsDropped:   n.eventsDropped.Load(),
		ConnsDialed:     n.dialed.Load(),
	}
}

func copyTags(t map[string]string) map[string]string {
	out := make(map[string]string, len(t)+2)
	for k, v := range t {
		out[k] = v
	}
	return out
}

// withDefaultPort adds port to a seed given as a bare host or IP.
func withDefaultPort(seed string, port int) string {
	if _, _, err := net.SplitHostPort(seed); err == nil {
		return seed
	}
	return net.JoinHostPort(strings.Trim(seed, "[]"), strconv.Itoa(port))
}

// logBridge turns serf's and memberlist's "[LEVEL] text" log lines into slog
// records and counts the lines that report a refused inbound message.
type logBridge struct {
	log      *slog.Logger
	rejected *atomic.Uint64
}

// rejectMarkers identify memberlist/serf log lines about refused inbound
// messages (see memberlist net.go and serf delegate.go).
var rejectMarkers = []string{
	"Decrypt packet failed",
	"failed to receive",
	"unacceptable label",
	"double packet label",
	"double stream label",
	"invalid checksum",
	"Failed to decode",
	"invalid msgType",
	"missing message type byte",
	") not supported",
	"Failed to decompress",
	"Failed to read remote state",
	"Error decoding",
	"Received message of unknown type",
	"Remote state is zero bytes",
	"Remote state has bad type prefix",
	"Failed to decode remote state",
}

func (b *logBridge) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	for _, l := range []struct {
		prefix string
		level  slog.Level
	}{
		{"[DEBUG]", slog.LevelDebug},
		{"[TRACE]", slog.LevelDebug},
		{"[INFO]", slog.LevelInfo},
		{"[WARN]", slog.LevelWarn},
		{"[ERR]", slog.LevelError},
		{"[ERROR]", slog.LevelError},
	} {
		if strings.HasPrefix(line, l.prefix) {
			level = l.level
			line = strings.TrimSpace(line[len(l.prefix):])
			break
		}
	}
	if level >= slog.LevelWarn {
		for _, m := range rejectMarkers {
			if strings.Contains(line, m) {
				b.rejected.Add(1)
				break
			}
		}
	}
	b.log.Log(context.Background(), level, line, "component", "serf")
	return len(p), nil
}

// boundTransport makes memberlist's TCP connections leave from the bind
// address, as its UDP packets do, so that all of a peer's membership
// traffic carries its address (firewall rules, partitions in tests).
type boundTransport struct {
	*memberlist.NetTransport
	local net.Addr
}

// DialTimeout implements memberlist.Transport.
func (t *boundTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *boundTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: t.local}
	return d.Dial("tcp", a.Addr)
}
