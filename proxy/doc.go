// Package proxy is the service proxy of a chorus peer: a userspace TCP
// load balancer for Kubernetes-style Services, a "hop" relay that lets
// other peers reach this peer's pods, and a small DNS server for service
// names. It knows nothing about chorus objects: the agent turns Services
// and their Ready endpoints into [Service] values and calls
// [Proxy.Update] whenever they change.
//
// # Listeners
//
// For each service port the proxy listens on ClusterIP:Port (the
// service's address on this peer, if any), on Config.NodeIP:NodePort
// (if any) and, for a LoadBalancer port, on Config.NodeIP:Port (as k3s'
// service load balancer answers on every node), and relays each accepted
// connection to one Ready endpoint anywhere in the cluster. UDP ports are
// served the same way per client flow (see udp.go): the first datagram of
// a client address picks the endpoint, a hop of version 2 carries framed
// datagrams to another peer's pod, and a flow idle for 30 s is closed. An endpoint on this peer is dialled at its pod
// IP; an endpoint on another peer is reached through that peer's hop
// listener, which dials the pod there: pod subnets are never routed
// between peers.
//
// Update is idempotent and cheap: listeners are keyed by (ip, port) and
// opened or closed only when that set changes; a listener whose service
// changes is repointed in place. Endpoint sets are swapped atomically, so
// a change never cuts an established connection (it keeps the endpoint it
// has). A listener that cannot be opened (port in use, address absent) is
// logged once, counted in [Stats], and tried again at every Update. When
// two service ports claim the same (ip, port), the first in (namespace,
// name) order keeps it and the conflict is logged.
//
// # Balancing
//
// Each connection goes to the endpoint with the fewest connections in
// flight from this peer; ties are broken round-robin (the scan starts one
// further at each pick). Why least connections rather than round-robin or
// random: every peer balances alone, with no coordination and no
// knowledge of other peers' loads, so the only load signal it has is its
// own connections. Counting them is free, reacts at once, and captures
// what round-robin ignores: connections differ in length (one websocket
// against thousands of short requests), and endpoints differ in speed and
// distance (a remote endpoint behind a hop, or a slow pod, holds its
// connections longer and so receives fewer new ones). With equal counts,
// as for an idle service or strictly sequential requests, the round-robin
// tie-break spreads connections evenly instead of always picking the
// first endpoint. Counts survive endpoint updates for endpoints that stay.
//
// With Service.Affinity (sessionAffinity: ClientIP) a client address goes
// to the endpoint it last used while it connects again within the timeout
// and that endpoint is in the pool and not cooling down after a failed
// dial; a pool remembers at most 65,536 clients.
//
// A failed dial (1 s timeout, including the hop's TLS and hop handshakes)
// is retried on another endpoint, each endpoint at most once, before the client
// connection is closed; an endpoint whose dial failed is passed over for
// 2 s while others are available, so a dead pod costs about one failed
// dial every 2 s rather than one per connection. A service with no endpoints has its client
// connections closed at once. All of these are counted in [Stats].
//
// # Relaying
//
// Bytes move with io.Copy between *net.TCPConn in both directions (on
// Linux Go uses splice(2), so payload does not cross into userspace); a
// side that is a hop over TLS is copied through userspace (32 KiB
// buffers) to be encrypted or decrypted, the other sides still splice.
// When one direction reaches EOF the proxy half-closes the other side
// (CloseWrite), so HTTP/1.0 and other request-then-response protocols
// work; a reset or write error closes both sides. The proxy sets no idle
// timeout. [Splice] is the same relay, exported for port-forward: the
// agent splices a hijacked HTTP connection with [Proxy.Dial]'s result.
// [Proxy.Close] closes listeners and every connection in flight and waits
// for all goroutines.
//
// # Connection cap
//
// Each service listener, and the hop listener, serves at most
// Config.MaxConns connections at once (default 4,096). A connection beyond
// is accepted and reset at once (accepting keeps the kernel's backlog
// short, so the listener answers as soon as load falls) and counted in
// Stats.OverLimit; a hop client sees a failed dial and tries another
// endpoint.
//
// # Hop protocol
//
// The hop listener (Config.HopAddr) relays connections from other peers
// to this peer's pods. With Config.HopServerTLS and Config.HopClientTLS
// (what a chorus peer of a protected cluster sets: TLS 1.3, the peer
// certificates of the cluster CA both ways) every hop connection starts
// with a mutual TLS handshake, and the protocol below travels inside it:
// a client without a certificate the server trusts is closed without a
// byte of hop protocol and counted (Stats.HopsUnauthenticated), and the
// client verifies the server in turn. Start refuses a HopServerTLS that
// does not require and verify client certificates. Without them (an
// --insecure cluster) the protocol runs over plain TCP. Version 1:
//
//	client -> server: "CHOP" | 0x01 (version) | n (1 byte, 1..47) | target (n bytes)
//	server -> client: one status byte: 0 ok, 1 refused, 2 malformed, 3 dial failed
//
// Version 2 is the same header for a UDP target; after the answer each
// datagram travels, both ways, as a 2-byte big-endian length and its
// payload (FuzzUDPFrame fuzzes the frame reader).
//
// target is the canonical text of "ip:port" (netip.AddrPort.String:
// "10.244.1.7:8080", "[fd00::7]:80"), unicast, port not zero; anything
// else is malformed. The server reads exactly the header (nothing more, so
// a plain connection can be spliced as it is); the TLS handshake and the
// header share one 3 s deadline. It checks
// Config.AllowHop (which must accept only this peer's local pod IPs: the
// hop is not an open relay; a nil AllowHop refuses everything), dials the
// pod (1 s), answers, and relays; on error it answers the code and
// closes. The client waits for the answer before relaying any byte, so a
// dead remote pod is known in one round trip and the connection can be
// retried on another endpoint. Failed handshakes, malformed, short or
// late headers, refusals and dial failures are counted. The client's 1 s
// dial timeout covers the TCP connect, the TLS handshake, the header and
// the answer (which includes the server's dial of the pod). It is kept at
// 1 s: BenchmarkHopDial measures a whole hop dial at about 0.3 ms over
// plain TCP, 1.2-1.4 ms over TLS resuming a session (session tickets, in
// HopClientTLS's session cache, spare the certificate signatures on later
// hops to the same peer) and 2 ms with a full handshake, on 2 cores with
// both peers in one process: a margin of hundreds for a loaded peer.
// FuzzHopHeader fuzzes the decoder.
//
// # DNS
//
// With Config.DNSAddr set, a DNS server (UDP and TCP, golang.org/x/net's
// dnsmessage) answers for the cluster:
//
//   - A (or AAAA) for "<svc>.<ns>.svc.<domain>." and "<svc>.<ns>.svc." is
//     the service's ClusterIP on this peer, TTL 5 s; for a service
//     without ClusterIP (headless) its Service.Addresses (the Ready pods,
//     at most 24 so that the answer fits 512 bytes); for
//     "<hostname>.<svc>.<ns>.svc.<domain>." the pod of Service.Hostnames.
//     Other types for a known name, and a name without address, get an
//     empty NOERROR answer.
//   - Other names under "<domain>." or ending in ".svc." get NXDOMAIN
//     (with an SOA for negative caching, TTL 5 s). Answering all of the
//     cluster domain, not only "svc.<domain>.", matters: the pods' search
//     list ends with "<domain>", and a REFUSED there would stop glibc's
//     search before it tries the name as given.
//   - Anything else is forwarded to Config.Upstreams (tried in turn, 2 s
//     each, SERVFAIL if none answers; [HostResolvers] reads them from the
//     host's resolv.conf), or answered REFUSED without upstreams.
//   - Malformed queries (bad header or name, not exactly one question, a
//     response) are dropped and counted; FuzzDNS fuzzes the handler.
//
// [ResolvConf] is the resolv.conf pods get: this server, the search list
// "<ns>.svc.<domain> svc.<domain> <domain>" and ndots:5.
//
// # Ingress
//
// With Config.IngressHTTPAddr and IngressHTTPSAddr the proxy serves HTTP
// and HTTPS for the cluster's Ingresses ([Proxy.UpdateIngress]): [Route]
// is the routing decision, a pure function of the [IngressTable] (exact
// hosts, then wildcards, then rules without host; the longest matching
// path, Exact before Prefix; Prefix matched element by element; then the
// default backend; else 404); the request is proxied by
// net/http/httputil's ReverseProxy over [Proxy.Dial] (the service pool's
// balancing, retries and hops); 503 when the backend has no Ready
// endpoint. HTTPS picks the certificate by SNI.
//
// # In the kernel
//
// With Config.Kernel (what a chorus peer sets unless started with
// --service-proxy=userspace) the kernel translates service connections
// itself, and the listeners above only serve what it cannot: every Update
// also plans (planNAT, a pure function) which of the listened addresses
// the kernel takes, and replaces one nftables table (Config.Kernel.Table,
// family ip, google/nftables over netlink, in one transaction) when the
// plan changed. The kernel takes a ClusterIP, NodePort or LoadBalancer
// address whose listener this proxy holds (so a port another program owns
// is never hijacked) when every Ready endpoint is IPv4 and on this peer or
// on a peer whose pod subnet this machine routes to (Config.Kernel.Routable:
// the pod network); else the port stays in user space, and the log says
// which and why, once per change. A port without endpoints stays with its
// listener, which closes such connections at once.
//
// The rules (see applyNAT): the first packet of a connection to a
// translated address, arriving from outside (prerouting) or made on this
// machine (output, but not from a loopback address), jumps to the
// service's chain, which picks an endpoint uniformly at random (numgen;
// with ClientIP affinity, first a per-endpoint set of recent clients with
// the affinity timeout) and translates the destination (DNAT); connection
// tracking does the rest of the connection in the kernel. The source is
// kept where the answer comes back by itself: a pod of this peer calling
// an endpoint on another peer (the answer is routed back to this peer),
// a client outside calling a NodePort whose endpoint is on this peer. It
// is masqueraded (marked, then masqueraded in postrouting) where it would
// not: a pod reaching a pod of its own bridge (the answer would skip the
// host), a client outside or this machine reaching an endpoint on another
// peer (the answer would go straight to the client).
//
// When an endpoint leaves the plan, connections translated to it are
// forgotten (their connection-tracking entries deleted, counted in
// Stats.KernelForgotten): UDP flows at once, so that the client's next
// datagram goes to a live endpoint; TCP connections once the endpoint's
// pod is gone (Config.Kernel.PodAlive: a pod that is only not Ready may
// be finishing them), so that the client's next segment is answered with
// a reset by whichever endpoint now gets it, instead of waiting on an
// address nobody answers. Affinity sets start empty at each change of the
// table. Close removes the table; RemoveKernelRules removes one a killed
// peer left. BenchmarkLabServices measures both proxies (docs/BENCHMARKS.md).
package proxy
