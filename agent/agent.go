// Package agent wires one chorus peer together: the desired-state store,
// the reconcile loop that turns deployments into the pods this peer runs,
// the runtime that runs them, events, and the HTTP API the CLI talks to.
package agent

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/apiserver"
	"github.com/chorus-sh/chorus/crdt"
	"github.com/chorus-sh/chorus/gossip"
	"github.com/chorus-sh/chorus/placement"
	"github.com/chorus-sh/chorus/placement/subnet"
	"github.com/chorus-sh/chorus/podnet"
	"github.com/chorus-sh/chorus/proxy"
	"github.com/chorus-sh/chorus/runtime"
	"github.com/chorus-sh/chorus/state"
	"github.com/chorus-sh/chorus/trust"
)

// Config is one peer's configuration. Only Name and Bind must differ
// between peers sharing a machine; the rest is derived from them.
type Config struct {
	Name                string // peer name (DNS-1123 label)
	Bind                string // address the API (and later gossip) listens on
	APIPort             int    // default 7070
	DataDir             string // default /var/lib/chorus/<name>
	ContainerdAddress   string // use this containerd; empty starts a private one
	ContainerdNamespace string // default chorus-<name>
	Bridge              string // default derived from the name
	// PodSubnet, when set, is this peer's pod subnet (claimed, and kept
	// even against another peer's claim); empty, the peer claims one of
	// the pool (placement/subnet), 10.88.<last octet of Bind>.0/24 when
	// that is free.
	PodSubnet     string
	CNIPluginDirs []string

	Join          []string // seed peers, "host" or "host:port"
	Discover      bool     // find peers by mDNS on the local network
	GossipKey     string   `json:"-"` // base64 key (chorus keygen); empty: no encryption
	GossipProfile string   // local (default), lan or wan
	// GossipFullMeshUpTo is how many other peers a peer connects its data
	// plane to all of (0: gossip's default, 32); beyond, only to its
	// neighbours. No flag: tests/scale sets it low to run that path small.
	GossipFullMeshUpTo int
	SerfPort           int // membership port (default 7946)
	P2PPort            int // data plane port (default 7947)
	HopPort            int // service proxy hops between peers (default 7948)
	// WireGuardPort is the UDP port (every address) of this peer's
	// WireGuard device, the encrypted pod network of a secured cluster
	// (the CLI's default: 7949). 0, or Insecure: no WireGuard, the pod
	// network is plain routes (podnet).
	WireGuardPort int
	// IngressHTTPPort and IngressHTTPSPort are where this peer serves the
	// cluster's Ingresses on Bind (the CLI's defaults: 80 and 443; 0: not
	// served).
	IngressHTTPPort, IngressHTTPSPort int
	Labels                            map[string]string // node labels
	Version                           string            // chorus version, advertised to peers (default "dev")
	// APIToken, when set, is the bearer token every API request but the
	// health check and the dashboard page must carry; empty, it is derived
	// from the cluster secret (none with Insecure). All peers of a cluster
	// share it; a peer passing a request on to another peer presents its
	// own certificate instead (or, Insecure, this token), never the
	// client's.
	APIToken string `json:"-"`
	// MaxImageSize bounds what one image load may take: the archive or the
	// compressed blobs, and the unpacked size of each image (0: 4 GiB).
	MaxImageSize int64
	// AllowedHostPaths are the path prefixes of this peer that pods may
	// mount as hostPath volumes (none: hostPath is refused). A pod that
	// mounts another path is refused when written through this peer, and
	// not started on it.
	AllowedHostPaths []string
	// MaxImageExpansion bounds how many times its compressed size an image
	// layer may unpack to, beyond 64 MiB (0: 100; negative: no bound).
	MaxImageExpansion int64
	// ImageGCAfter is how long an image no pod on this peer uses is kept
	// when an alive peer whose name sorts before this one holds the same
	// content (0: never removed automatically; see agent/images.go).
	ImageGCAfter time.Duration
	// JoinToken is the join token of the cluster this peer joins (the
	// first peer writes it to <data-dir>/token). Empty: the token stored
	// in the data dir, or, with no --join, a new cluster.
	JoinToken string `json:"-"`
	// Insecure runs an open cluster: no cluster secret, plain HTTP, no
	// derived gossip key or API token (explicit ones still apply).
	Insecure bool
	// APIHosts are names (besides IP addresses, localhost, the peer's name
	// and the machine's host name) the API answers to in the Host header;
	// any other is refused, against DNS rebinding.
	APIHosts []string
	// MetricsInterval is how often the peer samples the CPU and memory of
	// its containers and of its machine (0: runtime.DefaultSampleInterval,
	// 5 s; negative: not sampled, no resource metrics).
	MetricsInterval time.Duration
	// ServiceProxy is how service connections reach their endpoints:
	// "kernel" (the default: nftables translates them wherever every
	// endpoint is on the pod network, the user-space proxy serves the
	// rest) or "userspace" (the proxy serves every connection).
	ServiceProxy string

	Log *slog.Logger `json:"-"`
}

// The values of Config.ServiceProxy.
const (
	ServiceProxyKernel    = "kernel"
	ServiceProxyUserspace = "userspace"
)

// Defaults fills in what was left out and checks the rest.
func (c *Config) Defaults() error {
	if c.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			return errors.New("--name is required")
		}
		c.Name = h
	}
	if c.Bind == "" {
		c.Bind = "127.0.0.1"
	}
	if _, err := netip.ParseAddr(c.Bind); err != nil {
		return fmt.Errorf("--bind %q: not an IP address", c.Bind)
	}
	if c.APIPort == 0 {
		c.APIPort = 7070
	}
	switch c.ServiceProxy {
	case "":
		c.ServiceProxy = ServiceProxyKernel
	case ServiceProxyKernel, ServiceProxyUserspace:
	default:
		return fmt.Errorf("--service-proxy %q: want %s or %s", c.ServiceProxy, ServiceProxyKernel, ServiceProxyUserspace)
	}
	if c.DataDir == "" {
		c.DataDir = filepath.Join("/var/lib/chorus", c.Name)
	}
	if c.ContainerdNamespace == "" {
		c.ContainerdNamespace = "chorus-" + c.Name
	}
	sum := sha256.Sum256([]byte(c.Name))
	if c.Bridge == "" {
		c.Bridge = "chorus" + hex.EncodeToString(sum[:3])
	}
	if _, err := c.explicitSubnet(); err != nil {
		return err
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.HopPort == 0 {
		c.HopPort = 7948
	}
	if c.WireGuardPort < 0 || c.WireGuardPort > 65535 {
		return fmt.Errorf("--wireguard-port %d: want a port, or 0 for no WireGuard", c.WireGuardPort)
	}
	for _, p := range []struct {
		flag string
		port int
	}{{"--ingress-http-port", c.IngressHTTPPort}, {"--ingress-https-port", c.IngressHTTPSPort}} {
		if p.port < 0 || p.port > 65535 {
			return fmt.Errorf("%s %d: want a port, or 0 to serve no Ingress on it", p.flag, p.port)
		}
	}
	if c.IngressHTTPPort != 0 && c.IngressHTTPPort == c.IngressHTTPSPort {
		return fmt.Errorf("--ingress-http-port and --ingress-https-port are both %d", c.IngressHTTPPort)
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.GossipProfile == "" {
		c.GossipProfile = gossip.ProfileLocal
	}
	switch c.GossipProfile {
	case "lan", "wan", "local":
	default:
		return fmt.Errorf("--gossip-profile %q: want lan, wan or local", c.GossipProfile)
	}
	if c.GossipKey != "" {
		k, err := base64.StdEncoding.DecodeString(c.GossipKey)
		if err != nil || (len(k) != 16 && len(k) != 24 && len(k) != 32) {
			return fmt.Errorf("--gossip-key: want 16, 24 or 32 bytes in base64 (chorus keygen makes one)")
		}
	}
	if c.APIToken != "" {
		if err := api.CheckToken(c.APIToken); err != nil {
			return fmt.Errorf("--api-token: %w", err)
		}
	}
	for k := range c.Labels {
		if strings.HasPrefix(k, labelTagPrefix) || k == "" {
			return fmt.Errorf("--label %q: invalid key", k)
		}
	}
	return nil
}

// peerFile records, in the data dir, the configuration a peer ran with,
// so that `chorus reset` removes exactly what it made.
const peerFile = "peer.json"

// Tags a peer advertises through membership.
const (
	labelTagPrefix = "l:"
	tagAPI         = "api"
	tagCPU         = "cpu"
	tagMemory      = "mem"
	tagPods        = "pods"
	tagVersion     = "ver"
	tagStarted     = "start"
	tagHop         = "hop"
)

// Agent is one running peer.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	store *state.Store
	// sealer encrypts Secrets at rest (sealing.go) and the rotation
	// record's secret; the store is handed the same (setSealer). nil: an
	// --insecure peer without a gossip key. A rotation replaces it.
	sealer atomic.Pointer[trust.Sealer]
	events *events
	rt     runtime.Runtime
	pods   *runtime.PodManager
	start  time.Time
	gossip *gossip.Node
	repl   *replicator
	tags   map[string]string // this peer's user tags
	sched  schedule
	proxy  *proxy.Proxy
	ctd    *runtime.Containerd
	images *imageSharing
	svcNet *serviceNet
	nw     *runtime.CNINetwork
	// subnet is the pod subnet this peer uses and claims (subnet.go);
	// subnetSettled is false while a new peer waits to see the other
	// peers' claims (no pod starts until then); subnetClash remembers that
	// an explicit subnet's clash was reported.
	subnet        atomic.Pointer[subnet.Claim]
	subnetSettled atomic.Bool
	subnetClash   atomic.Bool
	svcIPs        atomic.Pointer[map[string]string] // service key -> this peer's address for it
	// ingressProblems is the last Ingress problem report, logged when it changes.
	ingressProblems atomic.Pointer[string]
	podIPs          atomic.Pointer[map[netip.Addr]bool] // addresses of the pods this peer runs, for hops
	clusterPodIPs   atomic.Pointer[map[netip.Addr]bool] // addresses of every pod of the cluster, for the kernel's service rules
	routedPeers     atomic.Pointer[map[string]bool]     // peers whose pods this machine reaches on the pod network
	kube            *apiserver.Server                   // the Kubernetes API
	sampler         *runtime.Sampler                    // resource metrics; nil: not sampled
	trust           *peerTrust                          // nil: --insecure
	// wgKey is this peer's WireGuard private key (nil: no WireGuard), and
	// wgMTU its device's MTU (the link's less WireGuard's 80 bytes).
	wgKey *podnet.Key
	wgMTU int
	// peerTransport carries this peer's calls to other peers' APIs.
	peerTransport *http.Transport

	// nodesCache holds the alive members as placement's nodes, derived
	// at the membership's change count version (placementNodes).
	nodesCache struct {
		sync.Mutex
		version uint64
		valid   bool
		nodes   []placement.Node
	}

	// peerPods holds the other peers' published pods, decoded once per
	// change of their NodeStatus object (clusterPods).
	peerPods peerPodsCache

	// orphansCollected paces collectOrphans; only the reconcile loop uses it.
	orphansCollected pace

	kick       chan struct{}
	statusKick chan struct{} // a local pod's status changed
	// caughtUp is closed once this peer, just started, has held an
	// anti-entropy round with the alive peers or given up waiting
	// (catchUpAtStart): until then its replica may lack what was written
	// while it was down, and its API waits rather than answer from it.
	caughtUp  chan struct{}
	rot       rotationState      // the rotation loop's
	leave     context.CancelFunc // ends Run after a graceful leave
	leaving   atomic.Bool
	podsMoved atomic.Uint64 // the pod manager's changes (podHost.PodsChanged)
}

// reconcileGap is the least time between the starts of two reconcile
// passes: changes that come closer (every peer's pod statuses, each a
// change of the replicated state) are taken together by the next pass.
// Without it every peer ran a pass for each delta of every other, so the
// cluster's reconcile work grew with the square of its size (tests/scale).
const reconcileGap = 200 * time.Millisecond

// reconcileLoop recomputes the pods this peer should run whenever the
// desired state changes, a member comes, goes or changes, or a local pod
// changes (at most every reconcileGap), and at least every fullPassEvery
// as a safety net; the job controllers run every second (their decisions
// depend on the time). A pass whose inputs did not change would decide
// what the last one did: every peer placed every replica of the cluster
// every second for nothing (tests/scale).
func (a *Agent) reconcileLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	var pruned, full pace
	due := true // the state changed or a kick came since the last pass
	var moved uint64
	for {
		changed := a.store.Changed()
		started := time.Now()
		if m := a.podsMoved.Load(); due || m != moved || full.due(started, fullPassEvery) {
			moved = m
			a.safeReconcile(ctx)
		}
		a.safeControlBatch(time.Now())
		if pruned.due(time.Now(), claimPruneInterval) {
			a.pruneClaims()
		}
		due = false
		select {
		case <-ctx.Done():
			return
		case <-changed:
			due = true
		case <-a.kick:
			due = true
		case <-t.C:
		}
		if wait := reconcileGap - time.Since(started); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
	}
}

// fullPassEvery bounds the time between two reconcile passes when nothing
// they read changed.
const fullPassEvery = 10 * time.Second

// pace paces work that the reconcile loop need not do on every pass. Its
// zero value is due at once.
type pace struct{ last time.Time }

// due reports whether more than every has passed since it last reported
// true, and if so takes now as that time.
func (p *pace) due(now time.Time, every time.Duration) bool {
	if now.Sub(p.last) <= every { // the zero last: the longest duration
		return false
	}
	p.last = now
	return true
}

// safeReconcile runs one reconcile pass; a panic in it (a value no check
// foresaw) is logged and reported as an event, and the next pass runs as
// usual: no value may crash the peer (invariant 10).
func (a *Agent) safeReconcile(ctx context.Context) {
	defer func() {
		if v := recover(); v != nil {
			a.log.Error("reconcile panic", "panic", v, "stack", string(debug.Stack()))
			a.events.record(api.ObjectReference{Kind: kindNode, Name: a.cfg.Name}, "Warning", "ReconcileFailed", fmt.Sprint(v))
		}
	}()
	a.reconcile(ctx)
}

// watchStoredValues reports what the store finds wrong in what it holds:
// a state file set aside at start, objects that do not decode or validate
// (an error in the log and a Warning event on the object; the peer's
// chorus.sh/v1 Peer lists them, status.replication.invalidObjects). Such objects are left out of everything the
// peer does until a valid write or a delete replaces them.
func (a *Agent) watchStoredValues() {
	if n := a.store.Cut(); n > 0 {
		a.log.Warn("the end of the desired state's journal was damaged (a crash in the middle of a write?) and is cut: the other peers give back what it held", "path", a.store.Path()+crdt.LogSuffix, "bytes", n)
	}
	if a.store.SetAside() != "" {
		a.log.Error("the saved desired state could not be read", "path", a.store.Path(), "err", a.store.SetAside())
		a.events.record(api.ObjectReference{Kind: kindNode, Name: a.cfg.Name}, "Warning", "StateFileCorrupt", a.store.SetAside())
	}
	a.store.ReportInvalid(func(b api.InvalidObject) {
		kind, ns, name := state.SplitKey(b.Key)
		a.log.Error("invalid object in the desired state: ignored until replaced or deleted", "key", b.Key, "version", b.Version, "writer", b.Writer, "err", b.Reason)
		a.events.record(api.ObjectReference{Kind: kind, Namespace: ns, Name: name}, "Warning", "InvalidObject",
			"ignored until replaced or deleted (written by "+b.Writer+"): "+strings.ReplaceAll(b.Reason, "\n", "; "))
	})
}

// Reset removes what a stopped peer left on this machine: containers, pod
// network, private containerd, data dir.
func Reset(ctx context.Context, cfg Config) error {
	if cfg.DataDir == "" && cfg.Name != "" {
		cfg.DataDir = filepath.Join("/var/lib/chorus", cfg.Name)
	}
	// What the peer actually used, as it recorded at start, fills in what
	// the caller left out.
	if b, err := os.ReadFile(filepath.Join(cfg.DataDir, peerFile)); err == nil {
		var rec Config
		if json.Unmarshal(b, &rec) == nil {
			fill := func(dst *string, v string) {
				if *dst == "" {
					*dst = v
				}
			}
			fill(&cfg.Name, rec.Name)
			fill(&cfg.Bind, rec.Bind)
			fill(&cfg.Bridge, rec.Bridge)
			fill(&cfg.PodSubnet, rec.PodSubnet)
			fill(&cfg.ContainerdNamespace, rec.ContainerdNamespace)
			fill(&cfg.ContainerdAddress, rec.ContainerdAddress)
		}
	}
	if err := cfg.Defaults(); err != nil {
		return err
	}
	if b, err := os.ReadFile(filepath.Join(cfg.DataDir, "agent.pid")); err == nil && processAlive(string(b)) {
		return fmt.Errorf("peer %s is still running (pid %s): stop it first", cfg.Name, strings.TrimSpace(string(b)))
	}
	if cfg.PodSubnet == "" {
		if b, err := os.ReadFile(filepath.Join(cfg.DataDir, subnetRecordFile)); err == nil {
			if c, err := decodeSubnetRecord(cfg.Name, b); err == nil {
				cfg.PodSubnet = c.Subnet.String()
			}
		}
	}
	if n, err := newServiceNet(cfg.PodSubnet); err == nil {
		n.removeAll(ctx)
	}
	// The routes to other peers' pods (this machine's, made by this peer:
	// peers sharing a machine make none).
	if _, _, err := podnet.Apply(nil, 0); err != nil {
		cfg.Log.Warn("remove the routes to other peers' pods", "err", err)
	}
	// Its WireGuard device (a TUN goes with its process; in case).
	if err := podnet.RemoveWireGuard(wireGuardName(cfg.Bridge)); err != nil {
		cfg.Log.Warn("remove the WireGuard device", "err", err)
	}
	// The kernel's service rules, left by a peer that was killed.
	if err := proxy.RemoveKernelRules(svcTable(cfg.Bridge)); err != nil {
		cfg.Log.Warn("remove the kernel's service rules", "err", err)
	}
	return runtime.Purge(ctx, cfg.DataDir, cfg.ContainerdAddress, cfg.ContainerdNamespace, cfg.Bridge, cfg.Log)
}

// podManagerOptions are the pod manager's options every peer has, real or
// simulated: where it keeps its records (claims.go reads them too),
// ConfigMaps and Secrets from the store, and the peer as its Host.
func (a *Agent) podManagerOptions() runtime.Options {
	return runtime.Options{
		Node: a.cfg.Name, HostIP: a.cfg.Bind, StateDir: filepath.Join(a.cfg.DataDir, "pods"), Log: a.log,
		Config: configSource{a.store},
		Host:   podHost{a},
	}
}

// podHost is the peer as its pod manager sees it (runtime.Host): events
// recorded, the status publication woken, the pods' resolv.conf, and
// images fetched from the other peers.
type podHost struct{ a *Agent }

func (h podHost) PodEvent(p *api.Pod, typ, reason, msg string) {
	h.a.events.record(api.ObjectReference{Kind: api.KindPod, Namespace: p.Metadata.Namespace, Name: p.Metadata.Name, UID: p.Metadata.UID}, typ, reason, msg)
}

func (h podHost) PodsChanged() {
	h.a.podsMoved.Add(1)
	select {
	case h.a.statusKick <- struct{}{}:
	default:
	}
}

func (h podHost) ResolvConf(ns string) string { return h.a.resolvConf(ns) }

func (h podHost) EnsureImage(ctx context.Context, ref string) error {
	if h.a.images == nil {
		return errors.New("not joined to the cluster yet")
	}
	return h.a.images.ensure(ctx, ref)
}

// processAlive reports whether pid is a running chorus agent.
func processAlive(pid string) bool {
	n, err := strconv.Atoi(strings.TrimSpace(pid))
	if err != nil || n <= 0 {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(n) + "/cmdline")
	if err != nil {
		return false
	}
	// chorus-agent (which `chorus agent` execs), or `chorus agent ...` of
	// an older chorus: not any "*agent" program that reused the pid
	// (ssh-agent, gpg-agent).
	args := strings.Split(string(cmdline), "\x00")
	return filepath.Base(args[0]) == "chorus-agent" || len(args) > 1 && args[1] == "agent"
}
