package agent

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/crdt"
	"github.com/chorus-sh/chorus/gossip"
)

// startCluster joins the membership and data planes and starts replication:
// deltas in and out, anti-entropy, and this peer's tags. The goroutines end
// with ctx; wg waits for them.
func (a *Agent) startCluster(ctx context.Context, wg *sync.WaitGroup) error {
	cfg := a.cfg
	var key []byte
	if cfg.GossipKey != "" {
		key, _ = base64.StdEncoding.DecodeString(cfg.GossipKey)
	}
	tags := map[string]string{
		tagAPI:     net.JoinHostPort(cfg.Bind, strconv.Itoa(cfg.APIPort)),
		tagVersion: cfg.Version,
		tagStarted: strconv.FormatInt(a.start.Unix(), 10),
		tagPods:    "0",
		tagHop:     hostPort(cfg.Bind, cfg.HopPort),
	}
	if a.wgKey != nil {
		tags[tagWireGuard] = wireGuardTag(cfg.WireGuardPort, a.wgKey.Public())
	}
	capa := capacity()
	tags[tagCPU], tags[tagMemory] = capa["cpu"], capa["memory"]
	for k, v := range cfg.Labels {
		tags[labelTagPrefix+k] = v
	}
	var extra [][]byte
	if a.trust != nil && a.trust.derivedGossip {
		// Restarted during a rotation: the other secret's key too.
		if _, other := a.trust.secrets(); other != nil {
			extra = append(extra, other.GossipKey())
		}
	}
	n, err := gossip.Start(ctx, gossip.Config{
		Name: cfg.Name, BindAddr: cfg.Bind, SerfPort: cfg.SerfPort, P2PPort: cfg.P2PPort,
		Join: cfg.Join, Key: key, ExtraKeys: extra, Profile: cfg.GossipProfile, Tags: tags,
		DataDir: filepath.Join(cfg.DataDir, "gossip"), Discover: cfg.Discover, Log: a.log.With("plane", "gossip"),
		JoinHint: a.joinHint(), FullMeshUpTo: cfg.GossipFullMeshUpTo,
	})
	if err != nil {
		return err
	}
	a.gossip = n
	a.tags = tags
	a.repl = newReplicator(a.store, n, a.log)
	if a.store.CheckStale(time.Now(), crdt.DefaultTombstoneHorizon) {
		a.log.Warn("last exchange with another peer is older than the tombstone horizon: the state will be rebuilt from the first peer that answers",
			"horizon", crdt.DefaultTombstoneHorizon)
	}
	a.images = newImageSharing(imageDeps{self: cfg.Name, log: a.log, gcAfter: cfg.ImageGCAfter,
		replicated: a.store, peers: imagePeersOf{a}, inUse: a.podImages}, a.ctd)
	n.HandleSync(a.handleSync)

	kick := make(chan struct{}, 1)
	events, unsubscribe := n.Subscribe()
	run := func(f func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f()
		}()
	}
	run(func() { a.repl.publishLoop(ctx) })
	run(func() { a.store.SaveLoop(ctx, a.log) })
	run(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-n.Deltas():
				if !ok {
					return
				}
				a.repl.receive(m.From, m.Data)
			}
		}
	})
	run(func() {
		defer unsubscribe()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-events:
				if !ok {
					return
				}
				if ev.Type == gossip.EventJoin || ev.Type == gossip.EventUpdate {
					select {
					case kick <- struct{}{}:
					default:
					}
				}
				select {
				case a.kick <- struct{}{}:
				default:
				}
			}
		}
	})
	run(func() { a.repl.antiEntropyLoop(ctx, 2*time.Second, a.alivePeers, a.connectedPeers, kick) })
	run(func() { a.catchUpAtStart(ctx, startCatchUpTimeout) })
	run(func() { a.tagLoop(ctx) })
	if a.nw != nil { // a peer with pod networking (not a Sim)
		run(func() { a.podNetLoop(ctx, 2*time.Second) })
	}
	run(func() { a.rotationLoop(ctx) })
	run(func() { a.statusLoop(ctx, 500*time.Millisecond) })
	run(func() { a.gcLoop(ctx, time.Hour, crdt.DefaultTombstoneHorizon) })
	if a.ctd != nil { // a peer with containerd (not a Sim)
		run(func() { a.images.inventoryLoop(ctx) })
	}
	return nil
}

// startCatchUpTimeout bounds how long a starting peer's API waits for its
// first exchange with the other peers (see catchUpAtStart).
const startCatchUpTimeout = 5 * time.Second

// startCatchUpPeers is how many peers a starting peer catches up with: any
// that stayed up holds what was written meanwhile, and a few more than one
// cover a peer that was itself down; all of them would cost a large
// cluster a connection to each.
const startCatchUpPeers = 4

// catchUpAtStart holds an anti-entropy round with up to startCatchUpPeers
// alive peers, chosen at random, as soon as the peer has joined its seeds, trying
// again until one answers or within ends, and then closes a.caughtUp, which the API waits
// for. A peer restarted after a few seconds down still holds the state it
// saved: a delete made meanwhile elsewhere reaches it only with its first
// anti-entropy round, and an apply through it before that round found the
// object "unchanged", wrote nothing, and lost to the delete (tests/chaos
// saw a service so vanish after it was applied again through a peer
// restarted 0.6 s before). A peer alone, or the first of its cluster,
// has nobody to wait for.
func (a *Agent) catchUpAtStart(ctx context.Context, within time.Duration) {
	defer close(a.caughtUp)
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	start := time.Now()
	select { // a peer given seeds knows its cluster once it has joined one
	case <-a.gossip.Joined():
	case <-ctx.Done():
		a.log.Warn("no seed answered: the API serves this peer's replica as it is", "waited", within)
		return
	}
	for {
		peers := a.alivePeers()
		if len(peers) == 0 {
			return
		}
		keys, answered := a.repl.catchUp(ctx, peers, startCatchUpPeers)
		if answered > 0 {
			a.log.Info("caught up with the peers before serving the API", "peers", answered, "keys", keys,
				"took", time.Since(start).Round(time.Millisecond))
			return
		}
		select {
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				a.log.Warn("no peer answered a catch-up: the API serves this peer's replica as it is", "peers", len(peers), "waited", within)
			}
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// alivePeers returns the names of the other alive members.
func (a *Agent) alivePeers() []string {
	var out []string
	for _, m := range a.gossip.AliveNames() {
		if m != a.cfg.Name {
			out = append(out, m)
		}
	}
	return out
}

// connectedPeers returns the alive peers whose data plane this peer is
// connected to.
func (a *Agent) connectedPeers() []string {
	return slices.DeleteFunc(a.gossip.Connected(), func(m string) bool { return m == a.cfg.Name })
}

// tagLoop keeps this peer's advertised pod count current.
func (a *Agent) tagLoop(ctx context.Context) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	last := "0"
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n := strconv.Itoa(a.pods.PodCount())
		if n == last {
			continue
		}
		user := map[string]string{}
		for k, v := range a.tags {
			user[k] = v
		}
		user[tagPods] = n
		if err := a.gossip.SetTags(user); err != nil {
			a.log.Warn("update tags", "err", err)
			continue
		}
		last = n
	}
}

// nodes returns the members as Kubernetes-shaped Node objects.
func (a *Agent) nodes() []node {
	var out []node
	claims := storedClaims(a.store)
	for _, m := range a.gossip.Members() {
		n := node{APIVersion: "v1", Kind: "Node", Metadata: api.ObjectMeta{Name: m.Name}}
		if s, err := strconv.ParseInt(m.Tags[tagStarted], 10, 64); err == nil {
			t := time.Unix(s, 0).UTC()
			n.Metadata.CreationTimestamp = &t
		}
		labels := map[string]string{}
		for k, v := range m.Tags {
			if l, ok := strings.CutPrefix(k, labelTagPrefix); ok {
				labels[l] = v
			}
		}
		if len(labels) > 0 {
			n.Metadata.Labels = labels
		}
		host, _, _ := net.SplitHostPort(m.Addr)
		pods, _ := strconv.Atoi(m.Tags[tagPods])
		if m.Name == a.cfg.Name {
			pods = a.pods.PodCount()
		}
		n.Status = nodeStatus{
			Phase:     string(m.Status),
			Addresses: []nodeAddress{{Type: "InternalIP", Address: host}},
			Capacity:  map[string]string{"cpu": m.Tags[tagCPU], "memory": m.Tags[tagMemory], "pods": "110"},
			NodeInfo:  map[string]string{"kubeletVersion": m.Tags[tagVersion]},
			PodCount:  pods,
		}
		n.Spec.Unschedulable = a.cordoned(m.Name)
		if c, ok := claims[m.Name]; ok {
			n.Spec.PodCIDR = c.Subnet.String()
		}
		if m.Name == a.cfg.Name {
			n.Spec.PodCIDR = a.podSubnet().String()
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Metadata.Name < out[j].Metadata.Name })
	return out
}

// gcLoop drops tombstones older than horizon every interval.
func (a *Agent) gcLoop(ctx context.Context, interval, horizon time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := a.store.GC(time.Now(), horizon); err != nil {
			a.log.Error("tombstone GC", "err", err)
		} else if n > 0 {
			a.log.Info("dropped old tombstones", "count", n)
		}
	}
}

// handleSync answers the request/response protocol of the data plane:
// anti-entropy, and images.
func (a *Agent) handleSync(ctx context.Context, from string, req []byte) ([]byte, error) {
	if len(req) > 0 && (req[0] == msgManifest || req[0] == msgBlob || req[0] == msgChunk) {
		resp, err := a.images.serve(ctx, from, req)
		if err != nil && errors.Is(err, errMalformed) {
			a.repl.malformed.Add(1)
		}
		return resp, err
	}
	return a.repl.handleSync(ctx, from, req)
}

// joinHint is what the operator may have to do when joining keeps failing
// on a peer of a protected cluster: its secret may have been rotated while
// it was down.
func (a *Agent) joinHint() string {
	if a.trust == nil || !a.trust.derivedGossip {
		return ""
	}
	return "if the cluster secret was rotated while this peer was down (chorus cluster rotate-secret), its join token is retired: " +
		"stop it, copy a current peer's <data-dir>/token over " + filepath.Join(a.cfg.DataDir, "token") + " and start it again"
}

// imagePeersOf is the peer's membership and data plane as image sharing
// uses them.
type imagePeersOf struct{ a *Agent }

func (p imagePeersOf) Alive() []string { return p.a.aliveMembers() }

func (p imagePeersOf) Sync(ctx context.Context, member string, req []byte) ([]byte, error) {
	return p.a.gossip.Sync(ctx, member, req)
}
