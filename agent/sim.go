package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/crdt"
	"github.com/chorus-sh/chorus/placement/subnet"
	"github.com/chorus-sh/chorus/runtime"
	"github.com/chorus-sh/chorus/state"
)

// Sim is a peer that runs its pods with a runtime given by the caller
// (tests/scale gives one that runs them in memory), so that many peers can
// run in one process. It runs the real membership and data plane (package
// gossip, on cfg.Bind), the real replication (deltas, anti-entropy), the
// real store, placement, reconcile loop, pod status publication and
// runtime.PodManager. It runs none of what touches the machine: no
// containerd, no CNI network, no routes to other peers' pods, no service
// addresses on lo, no service proxy or Ingress, no API server, no pod
// subnet claim, no cluster secret (an open cluster, as --insecure).
type Sim struct {
	a    *Agent
	stop context.CancelFunc
	wg   sync.WaitGroup
	once sync.Once
}

// StartSim starts a Sim peer with cfg (Name, Bind, SerfPort, P2PPort,
// Join, GossipProfile, DataDir, Labels, Log are used) running its pods
// with rt. Close stops it.
func StartSim(ctx context.Context, cfg Config, rt runtime.Runtime) (*Sim, error) {
	if rt == nil {
		return nil, errors.New("sim: no runtime")
	}
	cfg.Insecure = true
	if err := cfg.Defaults(); err != nil {
		return nil, err
	}
	log := cfg.Log.With("node", cfg.Name)
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	st, err := state.Open(filepath.Join(cfg.DataDir, "state.crdt"), cfg.Name)
	if err != nil {
		return nil, err
	}
	a := &Agent{cfg: cfg, log: log, store: st, events: newEvents(cfg.Name, 1000), start: time.Now(),
		kick: make(chan struct{}, 1), statusKick: make(chan struct{}, 1), caughtUp: make(chan struct{}), rt: rt,
		peerTransport: newPeerTransport(nil)}
	pfx := netip.MustParsePrefix("10.88.0.0/24")
	a.subnet.Store(&subnet.Claim{Peer: cfg.Name, Subnet: pfx})
	a.subnetSettled.Store(true)
	if a.svcNet, err = newServiceNet(pfx.String()); err != nil {
		return nil, err
	}
	a.svcNet.virtual = true
	ctx, stop := context.WithCancel(ctx)
	s := &Sim{a: a, stop: stop}
	a.leave = stop
	a.pods = runtime.NewPodManager(rt, a.podManagerOptions())
	if err := a.pods.Start(ctx); err != nil {
		stop()
		return nil, err
	}
	if err := a.startCluster(ctx, &s.wg); err != nil {
		stop()
		s.wg.Wait()
		a.pods.Close()
		return nil, fmt.Errorf("join the cluster: %w", err)
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		a.reconcileLoop(ctx)
	}()
	return s, nil
}

// Close stops the peer as a machine that dies: no leave, the others find
// it dead. It returns once every goroutine it started has ended.
func (s *Sim) Close() error {
	var err error
	s.once.Do(func() {
		s.stop()
		s.wg.Wait()
		err = s.a.gossip.Close()
		s.a.pods.Close()
		s.a.peerTransport.CloseIdleConnections()
		if cerr := s.a.store.Close(); err == nil {
			err = cerr
		}
	})
	return err
}

// Name is the peer's name.
func (s *Sim) Name() string { return s.a.cfg.Name }

// Apply stores objs (created or updated) as the API would, through this
// peer's store: stamped, saved, spread.
func (s *Sim) Apply(objs ...api.Object) error {
	_, err := s.a.store.Apply(objs, time.Now(), false)
	return err
}

// Holds reports whether this peer's replica holds the live object of key
// (api.ObjectKey's form).
func (s *Sim) Holds(key string) bool {
	var ok bool
	s.a.store.Read(func(st *crdt.State) {
		_, ok = st.Get(key)
	})
	return ok
}

// Objects is how many live objects this peer's replica holds.
func (s *Sim) Objects() int {
	n := 0
	s.a.store.Read(func(st *crdt.State) { n = st.Len() })
	return n
}

// LocalPods returns the pods this peer runs, as its pod manager reports them.
func (s *Sim) LocalPods() []api.Pod { return s.a.pods.Pods() }

// ClusterPods returns the pods of every alive peer as this peer sees them
// (its own, and the statuses the others published), to read only: the
// other peers' pods are shared with the peer's cache.
func (s *Sim) ClusterPods() []api.Pod { return s.a.clusterPodsWith(s.a.pods.Pods()) }

// AliveMembers is how many members this peer sees alive, itself included.
func (s *Sim) AliveMembers() int { return len(s.a.aliveMembers()) }

// ReplicationBytes is what this peer's replication sent and received
// (deltas and anti-entropy payloads, not the transport's framing).
// ConnsDialed returns how many data plane connections the peer opened.
func (s *Sim) ConnsDialed() uint64 { return s.a.gossip.Stats().ConnsDialed }

func (s *Sim) ReplicationBytes() (in, out int64) {
	return s.a.repl.bytesIn.Load(), s.a.repl.bytesOut.Load()
}
