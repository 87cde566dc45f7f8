package proxy

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Timings. They are variables only so that tests can shorten them.
var (
	// dialTimeout bounds one endpoint dial made for a client connection,
	// including the hop handshake, before the next endpoint is tried.
	dialTimeout = 1 * time.Second
	// coolDown is how long an endpoint whose dial failed is passed over
	// while other endpoints are available.
	coolDown = 2 * time.Second
	// hopHandshakeTimeout bounds the hop header read, the pod dial and the
	// answer on the serving side, and the handshake on the dialling side
	// when its context has no deadline. New copies it.
	hopHandshakeTimeout = 3 * time.Second
)

// Errors returned by [Proxy.Dial] and [Proxy.DialEndpoint].
var (
	ErrUnknownService = errors.New("proxy: unknown service port")
	ErrNoEndpoints    = errors.New("proxy: service has no endpoints")
	ErrHopRefused     = errors.New("proxy: hop refused the target")
	ErrClosed         = errors.New("proxy: closed")
)

// Endpoint is one Ready pod behind a service port.
type Endpoint struct {
	Node  string // peer running the pod
	IP    string // pod IP
	Port  int    // target port on the pod
	Local bool   // the pod runs on this peer: dial directly
}

// Protocols of a [ServicePort].
const (
	TCP = "TCP"
	UDP = "UDP"
)

// ServicePort is one port of a [Service] with its endpoints.
type ServicePort struct {
	Name     string
	Protocol string // TCP ("" too) or UDP
	Port     int    // the service port (ClusterIP listeners use it)
	NodePort int    // 0 = none; else a listener on Config.NodeIP:NodePort
	// LoadBalancer adds a listener on Config.NodeIP:Port, as k3s'
	// service load balancer answers a LoadBalancer service on every node.
	LoadBalancer bool
	Endpoints    []Endpoint // Ready endpoints, cluster-wide
}

// Service is a service as this peer serves it.
type Service struct {
	Namespace, Name string
	// ClusterIP is this peer's address for the service ("" = no ClusterIP
	// listener, and the DNS name resolves to Addresses); a listener is
	// opened on ClusterIP:Port for each port.
	ClusterIP string
	Ports     []ServicePort
	// Addresses are what the service's DNS name answers when it has no
	// ClusterIP: a headless service's Ready pod IPs.
	Addresses []string
	// Hostnames maps the spec.hostname of Ready pods whose spec.subdomain
	// is this service to their IPs: "<hostname>.<service>.<ns>.svc.<domain>"
	// answers with it.
	Hostnames map[string]string
	// Affinity is the ClientIP session affinity timeout (0: none): a
	// client address keeps the endpoint it last used while it connects
	// again within Affinity.
	Affinity time.Duration
}

// Config configures a [Proxy].
type Config struct {
	NodeIP   string                                   // NodePort listeners bind here ("" = NodePorts are not served)
	HopAddr  string                                   // this peer's hop listener, "ip:port" ("" = none)
	PeerHop  func(node string) (addr string, ok bool) // hop address of another peer
	AllowHop func(ip string, port int) bool           // hop target check: only this peer's local pod IPs (nil refuses all)
	DNSAddr  string                                   // "ip:port" for the DNS server (UDP and TCP); "" = none
	Domain   string                                   // default "cluster.local"
	// Upstreams are "ip:port" resolvers that names outside the cluster
	// domain and "svc." are forwarded to (see [HostResolvers]); none: such
	// names are answered REFUSED.
	Upstreams []string
	// HopServerTLS makes the hop listener speak TLS: it must require and
	// verify a client certificate (ClientAuth RequireAndVerifyClientCert,
	// else Start fails), so that only holders of a certificate it trusts
	// reach the pods. nil: plain TCP, for a network where only peers can
	// reach the hop listener.
	HopServerTLS *tls.Config
	// HopClientTLS makes hops to other peers TLS: it should present this
	// peer's certificate and verify the server's. An empty ServerName is
	// taken from the hop address, as tls.Dial does. nil: plain TCP.
	HopClientTLS *tls.Config
	// MaxConns caps the connections each service listener, and the hop
	// listener, serves at once (0: DefaultMaxConns). Beyond it a new
	// connection is accepted and reset at once, and counted
	// (Stats.OverLimit).
	MaxConns int
	// IngressHTTPAddr and IngressHTTPSAddr are "ip:port" where the
	// Ingress server listens (see [Proxy.UpdateIngress]); "" = none.
	IngressHTTPAddr, IngressHTTPSAddr string
	// Kernel, when set, has the kernel translate service connections
	// (nftables DNAT, see nat.go and the package doc) wherever it can; the
	// listeners stay open behind it, for what it cannot serve.
	Kernel *KernelConfig
	Log    *slog.Logger
}

// KernelConfig is what the kernel's translation of services needs.
type KernelConfig struct {
	// Table is the nftables table (family ip) the proxy owns: replaced
	// whole at each change, removed by Close.
	Table string
	// PodSubnet is this peer's pod subnet now.
	PodSubnet func() netip.Prefix
	// Routable reports whether this machine routes to the pods of a peer
	// (its pod subnet is on the pod network). An endpoint on a peer it
	// does not is reached through a hop, in user space.
	Routable func(node string) bool
	// PodAlive reports whether a pod still has address ip. The kernel's
	// connections to a TCP endpoint that stopped being Ready are kept
	// while its pod lives (it may be finishing them) and ended when it is
	// gone; UDP flows move at once.
	PodAlive func(ip netip.Addr) bool
}

// DefaultMaxConns is the default of Config.MaxConns.
const DefaultMaxConns = 4096

// Stats are the proxy's counters since New. Gauges are marked.
type Stats struct {
	Accepted     uint64 // client connections accepted on service listeners
	NoEndpoints  uint64 // client connections closed at once: the service had no endpoints
	Unserved     uint64 // client connections closed because every endpoint dial failed
	DialFailures uint64 // endpoint dials that failed (each try counts)
	Retries      uint64 // dials retried on another endpoint after a failure
	Active       int64  // gauge: proxied client connections open now
	OverLimit    uint64 // connections closed at once: their listener (service or hop) was at Config.MaxConns

	Listeners        int    // gauge: service listeners open now
	ListenersFailing int    // gauge: wanted service listeners that could not be opened
	ListenErrors     uint64 // failed listen attempts (retried at each Update)

	HopsServed          uint64 // hop connections spliced to a local pod
	HopsRefused         uint64 // hop targets refused by AllowHop
	HopsUnauthenticated uint64 // hop connections whose TLS handshake failed (no certificate, or one not trusted)
	HopsMalformed       uint64 // hop headers that were malformed, short or late
	HopDialFailures     uint64 // allowed hop targets whose dial failed

	DNSQueries   uint64 // well-formed DNS queries
	DNSAnswers   uint64 // responses carrying at least one address
	DNSNXDomain  uint64 // NXDOMAIN responses
	DNSRefused   uint64 // REFUSED responses (names outside the cluster, no upstream)
	DNSForwarded uint64 // queries forwarded to an upstream resolver
	DNSMalformed uint64 // queries dropped as malformed

	IngressRequests    uint64 // Ingress requests routed to a backend with endpoints
	IngressNotFound    uint64 // Ingress requests no rule matched (404)
	IngressUnavailable uint64 // Ingress requests whose backend had no Ready endpoint (503)

	KernelPorts     int    // gauge: service addresses the kernel translates now
	KernelErrors    uint64 // failed changes of the kernel's rules (tried again at each Update)
	KernelForgotten uint64 // connections to removed endpoints ended (connection-tracking entries deleted)
}

type counters struct {
	accepted, noEndpoints, unserved, dialFailures, retries  atomic.Uint64
	active                                                  atomic.Int64
	listenErrors, overLimit, hopsUnauthenticated            atomic.Uint64
	hopsServed, hopsRefused, hopsMalformed, hopDialFailures atomic.Uint64
	dnsQueries, dnsAnswers, dnsNXDomain, dnsRefused         atomic.Uint64
	dnsForwarded, dnsMalformed                              atomic.Uint64
	ingressRequests, ingressNotFound, ingressUnavailable    atomic.Uint64
}

// Proxy serves the services of one peer. Its methods are safe for
// concurrent use.
type Proxy struct {
	cfg        Config
	log        *slog.Logger
	domain     string        // lower case, no trailing dot
	hopTimeout time.Duration // hopHandshakeTimeout
	maxConns   int           // Config.MaxConns or its default
	udpIdle    time.Duration // a UDP flow without traffic this long is closed

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc

	mu        sync.Mutex // serialises Update, Start and Close
	closed    bool
	started   bool
	pools     map[poolKey]*pool
	listeners map[netip.AddrPort]*listener
	udp       map[netip.AddrPort]*udpListener
	failing   map[sockKey]bool
	warned    map[string]bool // problems logged at the last Update
	nat       natState        // the kernel's translation (Config.Kernel)
	hopLn     *net.TCPListener
	dns       *dnsServer
	stopCtx   func() bool

	ingress    atomic.Pointer[ingressState]
	ingressSrv *ingressServer // set by Start

	table atomic.Pointer[table] // read without locks by Dial and DNS
	conns connSet               // every connection in flight, closed by Close
	wg    sync.WaitGroup        // every goroutine the proxy started
	stats counters
}

type poolKey struct {
	ns, name string
	port     int
	proto    string // TCP or UDP
}

func (k poolKey) String() string {
	s := k.ns + "/" + k.name + ":" + strconv.Itoa(k.port)
	if k.proto == UDP {
		s += "/UDP"
	}
	return s
}

// table is what Update publishes for lock-free readers.
type table struct {
	pools map[poolKey]*pool
	names map[string][]netip.Addr // lower-case FQDN -> ClusterIP, or a headless service's pod IPs (none: NODATA)
}

// listener is one service listener; its pool can be swapped without
// reopening it.
type listener struct {
	addr netip.AddrPort
	ln   *net.TCPListener
	pool atomic.Pointer[pool]
}

// New returns a proxy that serves nothing until [Proxy.Update] and
// [Proxy.Start].
func New(cfg Config) *Proxy {
	p := &Proxy{
		cfg:        cfg,
		log:        cfg.Log,
		pools:      map[poolKey]*pool{},
		listeners:  map[netip.AddrPort]*listener{},
		udp:        map[netip.AddrPort]*udpListener{},
		failing:    map[sockKey]bool{},
		warned:     map[string]bool{},
		hopTimeout: hopHandshakeTimeout,
		maxConns:   cfg.MaxConns,
		udpIdle:    defaultUDPIdle,
	}
	if p.maxConns <= 0 {
		p.maxConns = DefaultMaxConns
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.log = p.log.With("component", "proxy")
	p.domain = strings.ToLower(strings.Trim(cfg.Domain, "."))
	if p.domain == "" || !validDomain(p.domain) {
		if p.domain != "" {
			p.log.Warn("invalid DNS domain, using cluster.local", "domain", cfg.Domain)
		}
		p.domain = "cluster.local"
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.table.Store(&table{})
	return p
}

// Start opens the hop listener (Config.HopAddr) and the DNS server
// (Config.DNSAddr). When ctx is done the proxy is closed.
func (p *Proxy) Start(ctx context.Context) (err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if p.started {
		return errors.New("proxy: already started")
	}
	if t := p.cfg.HopServerTLS; t != nil && t.ClientAuth != tls.RequireAndVerifyClientCert {
		return errors.New("proxy: HopServerTLS must require and verify client certificates (RequireAndVerifyClientCert)")
	}
	if p.cfg.HopAddr != "" {
		ap, err := netip.ParseAddrPort(p.cfg.HopAddr)
		if err != nil {
			return fmt.Errorf("proxy: hop address: %w", err)
		}
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
		if err != nil {
			return fmt.Errorf("proxy: hop listener: %w", err)
		}
		p.hopLn = ln
	}
	if p.cfg.DNSAddr != "" {
		d, err := p.startDNS(p.cfg.DNSAddr)
		if err != nil {
			if p.hopLn != nil {
				p.hopLn.Close()
				p.hopLn = nil
			}
			return err
		}
		p.dns = d
	}
	if err := p.startIngress(); err != nil {
		if p.hopLn != nil {
			p.hopLn.Close()
			p.hopLn = nil
		}
		if p.dns != nil {
			p.dns.close()
			p.dns = nil
		}
		return err
	}
	p.started = true
	if p.hopLn != nil {
		p.wg.Add(1)
		go p.hopLoop(p.hopLn)
	}
	if p.dns != nil {
		p.dns.run()
	}
	p.stopCtx = context.AfterFunc(ctx, func() { p.Close() })
	p.log.Info("proxy started", "hop", p.cfg.HopAddr, "hop_tls", p.cfg.HopServerTLS != nil, "dns", p.cfg.DNSAddr, "domain", p.domain,
		"max_conns", p.maxConns)
	return nil
}

// Update makes the proxy serve exactly services. It is idempotent and cheap
// when nothing changed: listeners are opened and closed only when the set
// of (ip, port) changes, endpoint sets are swapped atomically, and no
// established connection is cut. A listener that cannot be opened is
// logged (once per problem), counted, and tried again at the next Update.
func (p *Proxy) Update(services []Service) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	warned := map[string]bool{}
	warn := func(key, msg string, args ...any) {
		warned[key] = true
		if !p.warned[key] {
			p.log.Warn(msg, args...)
		}
	}

	svcs := slices.Clone(services)
	slices.SortFunc(svcs, func(a, b Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})

	var nodeIP netip.Addr
	if p.cfg.NodeIP != "" {
		a, err := netip.ParseAddr(p.cfg.NodeIP)
		if err != nil {
			warn("nodeip", "invalid NodeIP: NodePorts are not served", "nodeip", p.cfg.NodeIP)
		} else {
			nodeIP = a.Unmap()
		}
	}

	pools := make(map[poolKey]*pool, len(p.pools))
	names := map[string][]netip.Addr{}
	want := map[sockKey]*pool{}
	owner := map[sockKey]poolKey{}
	natCands := map[sockKey]natPort{}
	var natBase natPort // the port being claimed, as the kernel would translate it
	claim := func(sk sockKey, pl *pool) {
		if prev, ok := owner[sk]; ok {
			warn("conflict "+sk.String()+" "+pl.key.String(), "address already taken by another service port",
				"addr", sk.String(), "service", pl.key.String(), "taken_by", prev.String())
			return
		}
		owner[sk] = pl.key
		want[sk] = pl
		c := natBase
		c.Addr = sk.addr
		natCands[sk] = c
	}
	addName := func(n string, ips []netip.Addr) {
		if _, dup := names[n]; !dup {
			names[n] = ips
		}
	}
	for _, s := range svcs {
		var cip netip.Addr
		if s.ClusterIP != "" {
			a, err := netip.ParseAddr(s.ClusterIP)
			if err != nil {
				warn("clusterip "+s.Namespace+"/"+s.Name, "invalid ClusterIP", "service", s.Namespace+"/"+s.Name, "clusterip", s.ClusterIP)
			} else {
				cip = a.Unmap()
			}
		}
		if s.Namespace != "" && s.Name != "" {
			var ips []netip.Addr
			if cip.IsValid() {
				ips = []netip.Addr{cip}
			} else {
				ips = parseAddrs(s.Addresses)
			}
			for _, n := range serviceNames(s.Namespace, s.Name, p.domain) {
				addName(n, ips)
			}
			for _, h := range slices.Sorted(maps.Keys(s.Hostnames)) {
				if a := parseAddrs([]string{s.Hostnames[h]}); len(a) == 1 && h != "" && !strings.Contains(h, ".") {
					for _, n := range serviceNames(s.Namespace, s.Name, p.domain) {
						addName(strings.ToLower(h)+"."+n, a)
					}
				}
			}
		}
		for _, sp := range s.Ports {
			proto := TCP
			if sp.Protocol == UDP {
				proto = UDP
			} else if sp.Protocol != "" && sp.Protocol != TCP {
				warn("proto "+s.Namespace+"/"+s.Name, "unsupported protocol: port not served", "service", s.Namespace+"/"+s.Name, "protocol", sp.Protocol)
				continue
			}
			key := poolKey{s.Namespace, s.Name, sp.Port, proto}
			if _, dup := pools[key]; dup {
				warn("dupport "+key.String(), "duplicate service port ignored", "service", key.String())
				continue
			}
			pl := p.pools[key]
			if pl == nil {
				pl = newPool(key)
			}
			pl.setEndpoints(sp.Endpoints)
			pl.setAffinity(s.Affinity)
			pools[key] = pl
			natBase = natPort{Service: key.String(), Proto: proto, Affinity: s.Affinity, Endpoints: natEndpoints(sp.Endpoints)}
			if cip.IsValid() && validPort(sp.Port) {
				claim(sockKey{netip.AddrPortFrom(cip, uint16(sp.Port)), proto}, pl)
			}
			if sp.NodePort != 0 {
				switch {
				case !validPort(sp.NodePort):
					warn("nodeport "+key.String(), "invalid NodePort", "service", key.String(), "nodeport", sp.NodePort)
				case !nodeIP.IsValid():
					warn("nonodeip "+key.String(), "no NodeIP: NodePort not served", "service", key.String(), "nodeport", sp.NodePort)
				default:
					claim(sockKey{netip.AddrPortFrom(nodeIP, uint16(sp.NodePort)), proto}, pl)
				}
			}
			if sp.LoadBalancer {
				switch {
				case !validPort(sp.Port):
				case !nodeIP.IsValid():
					warn("nonodeip lb "+key.String(), "no NodeIP: LoadBalancer port not served", "service", key.String())
				default:
					claim(sockKey{netip.AddrPortFrom(nodeIP, uint16(sp.Port)), proto}, pl)
				}
			}
		}
	}

	// Listeners: close the unwanted ones, repoint and open the wanted ones.
	for ap, l := range p.listeners {
		if _, ok := want[sockKey{ap, TCP}]; !ok {
			l.ln.Close()
			delete(p.listeners, ap)
			p.log.Info("listener closed", "addr", ap.String())
		}
	}
	for ap, l := range p.udp {
		if _, ok := want[sockKey{ap, UDP}]; !ok {
			l.close()
			delete(p.udp, ap)
			p.log.Info("listener closed", "addr", ap.String(), "proto", UDP)
		}
	}
	clear(p.failing)
	for sk, pl := range want {
		ap := sk.addr
		if sk.proto == UDP {
			if l := p.udp[ap]; l != nil {
				l.pool.Store(pl)
				continue
			}
			l, err := p.listenUDP(ap, pl)
			if err != nil {
				p.stats.listenErrors.Add(1)
				p.failing[sk] = true
				warn("listen "+sk.String()+" "+err.Error(), "cannot open service listener, will retry at next update",
					"addr", sk.String(), "service", pl.key.String(), "err", err)
				continue
			}
			p.udp[ap] = l
			p.log.Info("listener opened", "addr", ap.String(), "proto", UDP, "service", pl.key.String())
			continue
		}
		if l := p.listeners[ap]; l != nil {
			if l.pool.Load() != pl {
				l.pool.Store(pl)
			}
			continue
		}
		ln, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
		if err != nil {
			p.stats.listenErrors.Add(1)
			p.failing[sk] = true
			warn("listen "+sk.String()+" "+err.Error(), "cannot open service listener, will retry at next update",
				"addr", ap.String(), "service", pl.key.String(), "err", err)
			continue
		}
		l := &listener{addr: ap, ln: ln}
		l.pool.Store(pl)
		p.listeners[ap] = l
		p.wg.Add(1)
		go p.acceptLoop(l)
		p.log.Info("listener opened", "addr", ap.String(), "service", pl.key.String())
	}
	if p.cfg.Kernel != nil {
		var cands []natPort
		for sk, c := range natCands {
			if !p.failing[sk] { // the listener holds the address: it is this peer's to translate
				cands = append(cands, c)
			}
		}
		p.updateNAT(cands, warn)
	}
	p.warned = warned
	p.pools = pools

	old := p.table.Load()
	t := &table{pools: pools, names: names}
	if !mapsEqual(old.names, names) {
		p.log.Debug("dns names updated", "names", len(names))
	} else {
		t.names = old.names
	}
	p.table.Store(t)
}

func mapsEqual(a, b map[string][]netip.Addr) bool {
	return maps.EqualFunc(a, b, slices.Equal)
}

// sockKey is a listening address with its protocol.
type sockKey struct {
	addr  netip.AddrPort
	proto string
}

func (k sockKey) String() string {
	if k.proto == UDP {
		return k.addr.String() + "/UDP"
	}
	return k.addr.String()
}

// parseAddrs parses the valid addresses of ss, sorted, without duplicates.
func parseAddrs(ss []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a.Unmap())
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out)
}

func validPort(p int) bool { return p > 0 && p < 65536 }

// serviceNames are the DNS names of a service, lower case and fully
// qualified.
func serviceNames(ns, name, domain string) []string {
	base := strings.ToLower(name + "." + ns + ".svc.")
	return []string{base + domain + ".", base}
}

// Stats returns a snapshot of the counters.
func (p *Proxy) Stats() Stats {
	c := &p.stats
	s := Stats{
		Accepted:            c.accepted.Load(),
		NoEndpoints:         c.noEndpoints.Load(),
		Unserved:            c.unserved.Load(),
		DialFailures:        c.dialFailures.Load(),
		Retries:             c.retries.Load(),
		Active:              c.active.Load(),
		OverLimit:           c.overLimit.Load(),
		ListenErrors:        c.listenErrors.Load(),
		HopsServed:          c.hopsServed.Load(),
		HopsRefused:         c.hopsRefused.Load(),
		HopsUnauthenticated: c.hopsUnauthenticated.Load(),
		HopsMalformed:       c.hopsMalformed.Load(),
		HopDialFailures:     c.hopDialFailures.Load(),
		DNSQueries:          c.dnsQueries.Load(),
		DNSAnswers:          c.dnsAnswers.Load(),
		DNSNXDomain:         c.dnsNXDomain.Load(),
		DNSRefused:          c.dnsRefused.Load(),
		DNSForwarded:        c.dnsForwarded.Load(),
		DNSMalformed:        c.dnsMalformed.Load(),
		IngressRequests:     c.ingressRequests.Load(),
		IngressNotFound:     c.ingressNotFound.Load(),
		IngressUnavailable:  c.ingressUnavailable.Load(),
	}
	p.mu.Lock()
	s.Listeners = len(p.listeners) + len(p.udp)
	s.ListenersFailing = len(p.failing)
	s.KernelPorts = len(p.nat.plan.Ports)
	s.KernelErrors = p.nat.errors
	s.KernelForgotten = p.nat.forgotten
	p.mu.Unlock()
	return s
}

// SetDNSAddr moves the DNS server to addr ("ip:port"), as when the peer's
// DNS address changes with its pod subnet: the new server listens before
// the old one closes. An empty addr stops it.
func (p *Proxy) SetDNSAddr(addr string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || !p.started {
		return errors.New("proxy: not running")
	}
	if p.cfg.DNSAddr == addr && (p.dns != nil) == (addr != "") {
		return nil
	}
	var d *dnsServer
	if addr != "" {
		var err error
		if d, err = p.startDNS(addr); err != nil {
			return err
		}
	}
	if p.dns != nil {
		p.dns.close()
	}
	p.dns, p.cfg.DNSAddr = d, addr
	if d != nil {
		d.run()
	}
	p.log.Info("DNS server moved", "dns", addr)
	return nil
}

// Close closes every listener and every connection in flight and waits for
// all the proxy's goroutines to end. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closed = true
	if p.stopCtx != nil {
		p.stopCtx()
	}
	p.cancel()
	for ap, l := range p.listeners {
		l.ln.Close()
		delete(p.listeners, ap)
	}
	for ap, l := range p.udp {
		l.close()
		delete(p.udp, ap)
	}
	clear(p.failing)
	if p.hopLn != nil {
		p.hopLn.Close()
	}
	if p.dns != nil {
		p.dns.close()
	}
	p.closeIngress()
	if k := p.cfg.Kernel; k != nil {
		if err := removeNAT(k.Table); err != nil {
			p.log.Warn("remove the kernel's service rules", "table", k.Table, "err", err)
		}
		p.nat.plan, p.nat.applied = natPlan{}, false
	}
	p.mu.Unlock()
	p.conns.closeAll()
	p.wg.Wait()
	return nil
}

// acceptLoop serves one service listener until it is closed.
func (p *Proxy) acceptLoop(l *listener) {
	defer p.wg.Done()
	acceptLoop(p, l.ln, func(c *net.TCPConn) { p.serveClient(c, l.pool.Load()) })
}

// acceptLoop accepts on ln and runs serve for each connection in its own
// goroutine, backing off on errors such as EMFILE, until ln is closed. At
// most p.maxConns connections are served at once: beyond, a connection is
// closed as soon as it is accepted (accepting it takes it off the kernel's
// backlog, so that the listener stays responsive when load falls).
func acceptLoop(p *Proxy, ln *net.TCPListener, serve func(*net.TCPConn)) {
	var delay time.Duration
	var open atomic.Int64
	limit := int64(p.maxConns)
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || p.ctx.Err() != nil {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			p.log.Warn("accept failed", "addr", ln.Addr().String(), "err", err, "retry_in", delay)
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-p.ctx.Done():
				t.Stop()
				return
			}
			continue
		}
		delay = 0
		if open.Load() >= limit {
			p.stats.overLimit.Add(1)
			p.log.Debug("connection closed: listener at its cap", "addr", ln.Addr().String(),
				"from", c.RemoteAddr().String(), "max", limit)
			c.SetLinger(0)
			c.Close()
			continue
		}
		open.Add(1)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer open.Add(-1)
			if !p.conns.add(c) {
				c.Close()
				return
			}
			defer p.conns.remove(c)
			serve(c)
		}()
	}
}

// serveClient proxies one client connection to an endpoint of pl.
func (p *Proxy) serveClient(c *net.TCPConn, pl *pool) {
	p.stats.accepted.Add(1)
	if pl.empty() {
		p.stats.noEndpoints.Add(1)
		c.Close()
		return
	}
	var client netip.Addr
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		client = a.AddrPort().Addr().Unmap()
	}
	up, b, err := p.dialPool(p.ctx, pl, client)
	if err != nil {
		if errors.Is(err, ErrNoEndpoints) {
			p.stats.noEndpoints.Add(1)
		} else {
			p.stats.unserved.Add(1)
		}
		p.log.Debug("client connection not served", "service", pl.key.String(), "client", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	defer b.release()
	if !p.conns.add(up) {
		up.Close()
		c.Close()
		return
	}
	defer p.conns.remove(up)
	p.stats.active.Add(1)
	defer p.stats.active.Add(-1)
	Splice(c, up)
}

// Dial returns one connection to the service port (namespace, service,
// port), where port is the service port, balanced and retried like a
// client connection; for port-forward. The connection belongs to the
// caller (Close does not end it); closing it releases the endpoint.
func (p *Proxy) Dial(ctx context.Context, namespace, service string, port int) (net.Conn, error) {
	return p.DialFrom(ctx, namespace, service, port, netip.Addr{})
}

// DialFrom is [Proxy.Dial] on behalf of a client address, which session
// affinity keys on (the zero Addr: none).
func (p *Proxy) DialFrom(ctx context.Context, namespace, service string, port int, client netip.Addr) (net.Conn, error) {
	if p.ctx.Err() != nil {
		return nil, ErrClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(p.ctx, cancel)()
	pl := p.table.Load().pools[poolKey{namespace, service, port, TCP}]
	if pl == nil {
		return nil, fmt.Errorf("%w: %s/%s:%d", ErrUnknownService, namespace, service, port)
	}
	c, b, err := p.dialPool(ctx, pl, client)
	if err != nil {
		return nil, err
	}
	switch c := c.(type) {
	case *net.TCPConn:
		return &pooledTCPConn{TCPConn: c, b: b}, nil
	case *tls.Conn:
		return &pooledTLSConn{Conn: c, b: b}, nil
	default:
		return &pooledConn{Conn: c, b: b}, nil
	}
}

// pooledTCPConn releases its endpoint when closed. It embeds *net.TCPConn
// so that io.Copy still splices through it.
type pooledTCPConn struct {
	*net.TCPConn
	b    *backend
	once sync.Once
}

func (c *pooledTCPConn) Close() error {
	c.once.Do(c.b.release)
	return c.TCPConn.Close()
}

// pooledTLSConn is pooledTCPConn for a hop over TLS (it keeps CloseWrite).
type pooledTLSConn struct {
	*tls.Conn
	b    *backend
	once sync.Once
}

func (c *pooledTLSConn) Close() error {
	c.once.Do(c.b.release)
	return c.Conn.Close()
}

// pooledConn is pooledTCPConn for any other connection.
type pooledConn struct {
	net.Conn
	b    *backend
	once sync.Once
}

func (c *pooledConn) Close() error {
	c.once.Do(c.b.release)
	return c.Conn.Close()
}

// dialPool dials an endpoint of pl chosen by least connections, trying the
// others (each at most once) while dials fail. The chosen backend is
// returned acquired: the caller must release it.
func (p *Proxy) dialPool(ctx context.Context, pl *pool, client netip.Addr) (net.Conn, *backend, error) {
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
		c, err := p.dialEndpoint(dctx, b.ep)
		cancel()
		if err == nil {
			b.failedAt.Store(0)
			pl.chosen(client, b, time.Now())
			return c, b, nil
		}
		b.release()
		b.failedAt.Store(time.Now().UnixNano())
		p.stats.dialFailures.Add(1)
		p.log.Debug("endpoint dial failed", "service", pl.key.String(), "node", b.ep.Node,
			"endpoint", net.JoinHostPort(b.ep.IP, strconv.Itoa(b.ep.Port)), "err", err)
		lastErr = err
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
	}
	if lastErr == nil {
		return nil, nil, ErrNoEndpoints
	}
	return nil, nil, fmt.Errorf("proxy: %s: all %d endpoints failed, last: %w", pl.key, len(tried), lastErr)
}

// DialEndpoint connects to one endpoint: at its pod IP if it is local,
// otherwise through the hop listener of its node (Config.PeerHop).
func (p *Proxy) DialEndpoint(ctx context.Context, ep Endpoint) (net.Conn, error) {
	return p.dialEndpoint(ctx, ep)
}

// dialEndpoint returns a *net.TCPConn for a local endpoint (so that the
// relay splices) and for a plain hop, a *tls.Conn for a hop over TLS.
func (p *Proxy) dialEndpoint(ctx context.Context, ep Endpoint) (net.Conn, error) {
	ip, err := netip.ParseAddr(ep.IP)
	if err != nil || !validPort(ep.Port) {
		return nil, fmt.Errorf("proxy: invalid endpoint %q port %d", ep.IP, ep.Port)
	}
	target := netip.AddrPortFrom(ip.Unmap(), uint16(ep.Port))
	if ep.Local {
		c, err := dialTCP(ctx, target.String())
		if err != nil {
			return nil, err // not a typed nil in an interface
		}
		return c, nil
	}
	if p.cfg.PeerHop == nil {
		return nil, fmt.Errorf("proxy: no hop for node %q", ep.Node)
	}
	hop, ok := p.cfg.PeerHop(ep.Node)
	if !ok || hop == "" {
		return nil, fmt.Errorf("proxy: no hop for node %q", ep.Node)
	}
	// Hops leave from the peer's own address, so that a peer's traffic to
	// others carries its address (firewalls, partitions in tests).
	var local net.Addr
	if ip := net.ParseIP(p.cfg.NodeIP); ip != nil && !ip.IsUnspecified() {
		local = &net.TCPAddr{IP: ip}
	}
	return dialHop(ctx, hop, local, target, p.hopTimeout, p.cfg.HopClientTLS)
}

func dialTCP(ctx context.Context, addr string) (*net.TCPConn, error) {
	return dialTCPFrom(ctx, nil, addr)
}

func dialTCPFrom(ctx context.Context, local net.Addr, addr string) (*net.TCPConn, error) {
	d := net.Dialer{LocalAddr: local}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("proxy: %s: not a TCP connection", addr)
	}
	return tc, nil
}

// connSet holds the connections in flight so that Close can end them.
type connSet struct {
	mu     sync.Mutex
	closed bool
	m      map[net.Conn]struct{}
}

// add registers c; it reports false if the set is closed already.
func (s *connSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.m == nil {
		s.m = map[net.Conn]struct{}{}
	}
	s.m[c] = struct{}{}
	return true
}

func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	m := s.m
	s.m = nil
	s.mu.Unlock()
	for c := range m {
		c.Close()
	}
}
