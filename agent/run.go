package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/apiserver"
	"github.com/chorus-sh/chorus/gossip"
	"github.com/chorus-sh/chorus/placement/subnet"
	"github.com/chorus-sh/chorus/podnet"
	"github.com/chorus-sh/chorus/proxy"
	"github.com/chorus-sh/chorus/runtime"
	"github.com/chorus-sh/chorus/state"
)

// Run runs the peer until ctx is done. It returns once every goroutine it
// started has ended; the pods keep running for the next start to adopt.
//
// A peer starts in named steps, each undone in reverse order when Run
// returns: the data dir locked, the state opened, the pod network planned,
// the container runtime and pod manager started, the service proxy
// started, the cluster joined, the API served and the loops run.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.Defaults(); err != nil {
		return err
	}
	log := cfg.Log.With("node", cfg.Name)
	ctx, leave := context.WithCancel(ctx)
	defer leave()
	var undo undoStack
	defer undo.run()
	if err := lockDataDir(cfg.DataDir, &undo); err != nil {
		return err
	}
	a, err := newAgent(cfg, log, leave)
	if err != nil {
		return err
	}
	undo.push(func() {
		if err := a.store.Close(); err != nil {
			log.Warn("close the desired state's journal", "err", err)
		}
	})
	undo.push(a.peerTransport.CloseIdleConnections)
	a.watchStoredValues()
	podMTU, err := a.setupPodNetwork()
	if err != nil {
		return err
	}
	containerd, err := a.startRuntime(ctx, podMTU, &undo)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(cfg.Bind, strconv.Itoa(cfg.APIPort)))
	if err != nil {
		return fmt.Errorf("API listener: %w", err)
	}
	undo.push(func() { _ = ln.Close() }) // closed already once the API server shut down
	if err := a.startProxy(ctx, &undo); err != nil {
		return err
	}
	if err := a.joinCluster(ctx, &undo); err != nil {
		return err
	}
	srv, ln, err := a.startAPI(ctx, ln)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	a.runLoops(ctx, &wg, srv, ln)
	if err := a.writeKubeconfig(); err != nil {
		log.Error("write the admin kubeconfig", "err", err)
	}
	a.logReady(containerd, ln.Addr().String())
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	wg.Wait()
	log.Info("chorus agent stopped")
	return nil
}

// undoStack holds what Run's steps must undo, run last first.
type undoStack []func()

func (u *undoStack) push(f func()) { *u = append(*u, f) }

func (u undoStack) run() {
	for i := len(u) - 1; i >= 0; i-- {
		u[i]()
	}
}

// lockDataDir makes the data dir, takes its lock (one agent per data dir)
// and writes the pid file; undo releases both.
func lockDataDir(dir string, undo *undoStack) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "agent.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("lock data dir: %w", err)
	}
	undo.push(func() { _ = lock.Close() })
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return fmt.Errorf("data dir %s is in use by another chorus agent", dir)
	}
	pidFile := filepath.Join(dir, "agent.pid")
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	undo.push(func() { _ = os.Remove(pidFile) })
	return nil
}

// newAgent sets up the peer's trust (cluster secret, TLS, tokens) and
// opens its desired state, Secrets sealed at rest under the cluster's key.
func newAgent(cfg Config, log *slog.Logger, leave context.CancelFunc) (*Agent, error) {
	tr, err := setupTrust(&cfg, log, time.Now())
	if err != nil {
		return nil, err
	}
	st, err := state.Open(filepath.Join(cfg.DataDir, "state.crdt"), cfg.Name)
	if err != nil {
		return nil, err
	}
	sealer, err := newSealer(tr, cfg.GossipKey)
	if err != nil {
		return nil, err
	}
	if sealer == nil {
		log.Warn("INSECURE: Secrets are stored unencrypted in state.crdt and travel in clear between peers (--insecure without --gossip-key)")
	}
	a := &Agent{cfg: cfg, log: log, store: st, events: newEvents(cfg.Name, 1000), start: time.Now(),
		kick: make(chan struct{}, 1), statusKick: make(chan struct{}, 1), caughtUp: make(chan struct{}), leave: leave,
		trust: tr, peerTransport: newPeerTransport(tr)}
	a.setSealer(sealer)
	return a, nil
}

// setupPodNetwork decides the peer's pod subnet (its own claim, or a
// provisional one until the other peers' claims are seen), its service
// network, and the WireGuard overlay; it returns the pods' MTU (0: the
// CNI plugin's default).
func (a *Agent) setupPodNetwork() (int, error) {
	cfg, log := a.cfg, a.log
	claim, settled, former, err := a.initialSubnet()
	if err != nil {
		return 0, err
	}
	if former.IsValid() {
		a.removeServiceNet(former)
	}
	a.subnet.Store(&claim)
	a.subnetSettled.Store(settled)
	if err := a.writePeerFile(); err != nil {
		return 0, err
	}
	if settled {
		if err := a.writeSubnetRecord(claim); err != nil {
			return 0, err
		}
	} else {
		log.Info("no pod subnet of its own yet: pods start once the other peers' claims are seen", "provisional", claim.Subnet.String())
	}
	if a.svcNet, err = newServiceNet(claim.Subnet.String()); err != nil {
		return 0, fmt.Errorf("service network: %w", err)
	}
	if !wireGuardOn(cfg, a.trust != nil) {
		if a.trust != nil {
			log.Warn("pod network: not encrypted between peers (--wireguard-port 0)")
		}
		return 0, nil
	}
	k, err := loadWireGuardKey(cfg.DataDir)
	if err != nil {
		return 0, err
	}
	a.wgKey = &k
	// Pods send no packet larger than the overlay carries: their MTU is
	// the device's (pods already running keep theirs until they are
	// replaced). A peer bound to a loopback address has no other machine
	// to reach and keeps the default.
	podMTU := 0
	a.wgMTU = podnet.OverlayMTU(1500)
	link, loopback, err := podnet.LinkMTU(netip.MustParseAddr(cfg.Bind))
	if err != nil {
		log.Warn("pod network: the MTU of the link of --bind, for WireGuard", "err", err, "assumed", 1500)
	} else if link > 0 {
		a.wgMTU = podnet.OverlayMTU(link)
	}
	if !loopback {
		podMTU = a.wgMTU
	}
	log.Info("pod network: encrypted between peers on other machines (WireGuard)", "port", cfg.WireGuardPort,
		"device", wireGuardName(cfg.Bridge), "mtu", a.wgMTU, "pod_mtu", podMTU, "public_key", k.Public().String())
	return podMTU, nil
}

// startRuntime starts the peer's containerd (unless it uses one given),
// its CNI network (repairing a bridge left with another subnet's
// address) and the pod manager, which adopts the pods already running;
// it returns containerd's address.
func (a *Agent) startRuntime(ctx context.Context, podMTU int, undo *undoStack) (string, error) {
	cfg, log := a.cfg, a.log
	addr := cfg.ContainerdAddress
	if addr == "" {
		d, err := runtime.StartDaemon(ctx, cfg.DataDir, log)
		if err != nil {
			return "", err
		}
		undo.push(d.Stop)
		addr = d.Address
	}
	claim := a.subnet.Load()
	nw, err := runtime.NewCNINetwork(runtime.NetworkConfig{
		Name: "chorus-" + cfg.Name, Bridge: cfg.Bridge, Subnet: claim.Subnet.String(), Cluster: subnet.Pool(),
		PluginDirs: cfg.CNIPluginDirs, StateDir: filepath.Join(cfg.DataDir, "network"), MTU: podMTU,
	})
	if err != nil {
		return "", err
	}
	a.nw = nw
	// A bridge left with another subnet's address (this peer's subnet
	// changed) is repaired before any pod is set up or adopted.
	if _, err := nw.RepairBridge(ctx, log); err != nil {
		log.Warn("repair the pod bridge", "err", err)
	}
	ctd, err := runtime.NewContainerd(ctx, addr, cfg.ContainerdNamespace, nw)
	if err != nil {
		return "", err
	}
	undo.push(func() { _ = ctd.Close() })
	ctd.SetImageLimits(runtime.ImageLimits{MaxBytes: cfg.MaxImageSize, MaxExpansion: cfg.MaxImageExpansion})
	a.rt = ctd
	a.ctd = ctd
	opts := a.podManagerOptions()
	opts.NodeCPUMilli = func() int64 { m, _ := api.ParseCPU(capacity()["cpu"]); return m }()
	opts.NodeMemBytes = func() int64 { b, _ := api.ParseMemory(capacity()["memory"]); return b }()
	opts.AllowedHostPaths = cfg.AllowedHostPaths
	a.pods = runtime.NewPodManager(podRuntime{ctd, a}, opts)
	if err := a.pods.Start(ctx); err != nil {
		return "", err
	}
	undo.push(a.pods.Close)
	if moved := a.pods.ReplaceOutside(claim.Subnet); len(moved) > 0 {
		log.Warn("pods attached outside the pod subnet (it changed while the peer was down) are started again in it", "subnet", claim.Subnet.String(), "pods", moved)
	}
	return addr, nil
}

// startProxy gives the peer its service addresses (removing those a
// previous run left) and starts the service proxy: kernel rules or the
// user-space proxy, DNS for pods, the hop listener and Ingress.
func (a *Agent) startProxy(ctx context.Context, undo *undoStack) error {
	cfg, log := a.cfg, a.log
	a.svcNet.removeAll(ctx)
	if err := a.svcNet.sync(ctx, nil); err != nil {
		return err
	}
	upstreams, _ := proxy.HostResolvers("/etc/resolv.conf")
	hopServerTLS, hopClientTLS := a.trust.hopTLS()
	a.proxy = proxy.New(proxy.Config{
		Upstreams: upstreams,
		NodeIP:    cfg.Bind, HopAddr: hostPort(cfg.Bind, cfg.HopPort), PeerHop: a.hopAddrOf, AllowHop: a.allowHop,
		HopServerTLS: hopServerTLS, HopClientTLS: hopClientTLS,
		DNSAddr: hostPort(a.svcNet.dnsIP(), 53), Log: log.With("plane", "proxy"),
		IngressHTTPAddr: optHostPort(cfg.Bind, cfg.IngressHTTPPort), IngressHTTPSAddr: optHostPort(cfg.Bind, cfg.IngressHTTPSPort),
		Kernel: a.kernelProxy(),
	})
	if err := a.proxy.Start(ctx); err != nil {
		return fmt.Errorf("service proxy: %w", err)
	}
	undo.push(func() {
		_ = a.proxy.Close()
		a.svcNet.removeAll(context.Background())
	})
	return nil
}

// joinCluster starts membership, replication and the image sharing
// (startCluster) and the pod subnet loop; undo leaves the cluster.
func (a *Agent) joinCluster(ctx context.Context, undo *undoStack) error {
	var wg sync.WaitGroup
	cctx, stop := context.WithCancel(ctx)
	if err := a.startCluster(cctx, &wg); err != nil {
		stop()
		if errors.Is(err, gossip.ErrTagsTooLarge) {
			n := 0
			for k, v := range a.cfg.Labels {
				n += len(k) + len(v)
			}
			return fmt.Errorf("join the cluster: the peer's node tags (its --label values, %d bytes of keys and values, plus its addresses and capacity) are larger than serf allows: use fewer or shorter labels: %w", n, err)
		}
		return fmt.Errorf("join the cluster: %w", err)
	}
	undo.push(func() {
		stop()
		wg.Wait()
		if err := a.gossip.Close(); err != nil {
			a.log.Warn("close gossip", "err", err)
		}
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.subnetLoop(cctx)
	}()
	return nil
}

// startAPI makes the Kubernetes API and the HTTP server over ln (TLS
// when the cluster has a secret); it returns the server and the listener
// it is to serve.
func (a *Agent) startAPI(ctx context.Context, ln net.Listener) (*http.Server, net.Listener, error) {
	streams := newKubeStreams(a)
	var err error
	if a.kube, err = apiserver.New(kubeBackend{a}, apiserver.Options{Peer: a.cfg.Name, Version: a.cfg.Version, Log: a.log,
		Subresources: map[string]http.Handler{"pods/log": http.HandlerFunc(a.kubeLog),
			"pods/exec": http.HandlerFunc(streams.exec), "pods/attach": http.HandlerFunc(streams.attach),
			"pods/portforward": http.HandlerFunc(streams.portForward), "peers/leave": http.HandlerFunc(a.servePeerLeave)},
		Create: map[string]http.Handler{grImages.String(): http.HandlerFunc(a.serveImageLoad),
			grSecretRotations.String(): http.HandlerFunc(a.serveRotateSecret)}}); err != nil {
		return nil, nil, fmt.Errorf("Kubernetes API: %w", err)
	}
	srv, ln := a.newAPIServer(ctx, ln, defaultLimits())
	if tc := a.trust.serverTLS(); tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	return srv, ln, nil
}

// runLoops starts the peer's loops, each ended with ctx and counted in
// wg: resource sampling, the Kubernetes API's watch fan-out, the HTTP
// server on ln, reconcile and autoscaling.
func (a *Agent) runLoops(ctx context.Context, wg *sync.WaitGroup, srv *http.Server, ln net.Listener) {
	if a.cfg.MetricsInterval >= 0 {
		a.sampler = runtime.NewSampler(runtime.SamplerOptions{Interval: a.cfg.MetricsInterval, Log: a.log,
			Containers: a.pods.RunningContainers, Stats: a.ctd.ContainerStats,
			Node: func() (runtime.ContainerStats, error) { return runtime.ReadNodeStats("/proc") }})
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.sampler.Run(ctx)
		}()
	}
	wg.Add(4)
	go func() {
		defer wg.Done()
		a.kube.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("API server", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		a.reconcileLoop(ctx)
	}()
	go func() {
		defer wg.Done()
		a.autoscaleLoop(ctx)
	}()
}

// logReady says where the peer serves and how its API is protected.
func (a *Agent) logReady(containerd, api string) {
	log, tr := a.log, a.trust
	log.Info("chorus agent ready", "api", a.apiURL(), "kubeconfig", filepath.Join(a.cfg.DataDir, KubeconfigFile), "data", a.cfg.DataDir, "containerd", containerd,
		"bridge", a.cfg.Bridge, "subnet", a.podSubnet().String())
	switch {
	case tr != nil:
		log.Info("the API is TLS with a certificate of the cluster CA and requires a token", "api", a.apiURL(), "cluster", func() string { s, _ := tr.secrets(); return s.ClusterID() }())
	case a.cfg.APIToken != "":
		log.Info("the API requires a token", "api", api, "token", "required")
	default:
		log.Info("the API requires no token", "api", api, "token", "none")
		log.Warn("the API is open: anyone who reaches "+api+" can control the cluster (apply manifests, exec into pods); set --api-token or --api-token-file",
			"api", api)
	}
}
