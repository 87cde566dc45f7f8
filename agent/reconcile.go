package agent

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/gossip"
	"github.com/chorus-sh/chorus/placement"
	"github.com/chorus-sh/chorus/reconcile"
	"github.com/chorus-sh/chorus/state"
)

// kindNode is the replicated object holding what users set on a peer
// (cordon); any peer may write it.
const kindNode = "Node"

func nodeKey(name string) string { return kindNode + "//" + name }

// schedule is the outcome of the last reconcile pass, for the API.
type schedule struct {
	mu      sync.Mutex
	pending []api.Pod      // desired replicas that fit nowhere, with the reason
	counted map[string]int // deployment key -> pending replicas not made into pods (reconcile.Actions.Counted)
	desired []api.Pod      // every desired pod, as planned (bindNew places new pods among them)
}

func (s *schedule) setPending(p []api.Pod, counted map[string]int, desired []api.Pod) {
	s.mu.Lock()
	s.pending = p
	s.counted = counted
	s.desired = desired
	s.mu.Unlock()
}

func (s *schedule) desiredPods() []api.Pod {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]api.Pod(nil), s.desired...)
}

// pendingCount returns how many desired replicas fit nowhere: the pending
// pods and the replicas only counted.
func (s *schedule) pendingCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.pending)
	for _, c := range s.counted {
		n += c
	}
	return n
}

func (s *schedule) pendingPods() []api.Pod {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]api.Pod(nil), s.pending...)
}

// cordoned reports whether a user cordoned the peer.
func (a *Agent) cordoned(name string) bool {
	f := a.store.RawFields(nodeKey(name))
	var v bool
	_ = json.Unmarshal(f["spec.unschedulable"], &v)
	return v
}

// placementNodes turns the alive members into placement's nodes.
func (a *Agent) placementNodes() []placement.Node {
	if a.gossip == nil {
		return []placement.Node{{Name: a.cfg.Name, Labels: a.cfg.Labels}}
	}
	// The alive members as placement sees them change only with the
	// membership: derived again only then (at every pass, every peer
	// copied every member's tags and parsed its memory, O(peers) each
	// second: tests/scale), and cordons read at every call.
	a.nodesCache.Lock()
	defer a.nodesCache.Unlock()
	if v := a.gossip.Changes(); !a.nodesCache.valid || v != a.nodesCache.version {
		a.nodesCache.nodes = membersAsNodes(a.gossip.Members())
		a.nodesCache.version, a.nodesCache.valid = v, true
		a.peerPods.forget(a.gossip.AliveNames())
	}
	out := slices.Clone(a.nodesCache.nodes)
	for i := range out {
		out[i].Cordoned = a.cordoned(out[i].Name)
	}
	return out
}

// membersAsNodes is the alive members as placement's nodes: their labels
// (and the well-known hostname and zone labels), CPUs and memory.
func membersAsNodes(ms []gossip.Member) []placement.Node {
	var out []placement.Node
	for _, m := range ms {
		if m.Status != gossip.StatusAlive {
			continue
		}
		n := placement.Node{Name: m.Name, Labels: map[string]string{}}
		for k, v := range m.Tags {
			if l, ok := strings.CutPrefix(k, labelTagPrefix); ok {
				n.Labels[l] = v
			}
		}
		n.Labels["kubernetes.io/hostname"] = m.Name
		if z, ok := n.Labels["zone"]; ok && n.Labels[reconcile.ZoneLabel] == "" {
			n.Labels[reconcile.ZoneLabel] = z
		}
		if cpu, err := strconv.Atoi(m.Tags[tagCPU]); err == nil {
			n.CPUMilli = int64(cpu) * 1000
		}
		if mem, err := api.ParseMemory(m.Tags[tagMemory]); err == nil {
			n.MemBytes = mem
		}
		out = append(out, n)
	}
	return out
}

// reconcile is one level-triggered pass on this peer: it reads the desired
// state (store), the alive peers (membership) and the pods (its pod
// manager's and the other peers' published statuses); reconcile.Plan
// (pure) decides what this peer does (see the package reconcile); apply
// carries it out.
func (a *Agent) reconcile(ctx context.Context) {
	if a.leaving.Load() {
		a.pods.Sync(nil)
		return
	}
	local := a.pods.Pods() // one copy of this peer's pods for the whole pass
	cluster := a.clusterPodsWith(local)
	desired := a.readDesired()
	acts := reconcile.Plan(desired, reconcile.Observed{Nodes: a.placementNodes(), Local: local, Cluster: cluster}, a.cfg.Name)
	a.apply(ctx, desired, cluster, acts)
}

// readDesired reads what reconcile.Plan needs of the replicated state, and
// this peer's address of each service (given now to the new ones). The
// deployments, daemon sets and services are shared with the store's cache
// (Store.ListShared): Plan and apply only read them.
func (a *Agent) readDesired() reconcile.Desired {
	desired := reconcile.Desired{Pods: a.standalonePods(), ClaimNodes: a.claimNodes()}
	for _, o := range a.store.ListShared(api.KindDeployment) {
		desired.Deployments = append(desired.Deployments, o.(*api.Deployment))
	}
	for _, o := range a.store.ListShared(api.KindDaemonSet) {
		desired.DaemonSets = append(desired.DaemonSets, o.(*api.DaemonSet))
	}
	if ended := endedJobPods(a.store); len(ended) > 0 {
		desired.Ended = make(map[string]bool, len(ended))
		for k := range ended {
			desired.Ended[k] = true
		}
	}
	desired.Services = asServices(a.store.ListShared(api.KindService))
	desired.ServiceIPs = a.assignServiceIPs(desired.Services)
	return desired
}

// assignServiceIPs gives this peer's address to each service of the list (the
// whole replicated set) that has none yet, forgets those of services gone, and
// keeps the result for readers.
func (a *Agent) assignServiceIPs(services []*api.Service) map[string]string {
	var keys []string
	for _, s := range services {
		if !s.Headless() {
			keys = append(keys, api.ObjectKey(s))
		}
	}
	ips := a.svcNet.assign(keys)
	a.svcIPs.Store(&ips)
	return ips
}

// serviceIPs is this peer's address of each service: the last pass's, or, when
// a service of the list was created since, assigned now, so a service read
// right after it was written already shows its cluster IP.
func (a *Agent) serviceIPs(services []*api.Service) map[string]string {
	var ips map[string]string
	if p := a.svcIPs.Load(); p != nil {
		ips = *p
	}
	for _, s := range services {
		if _, ok := ips[api.ObjectKey(s)]; !ok && !s.Headless() {
			return a.assignServiceIPs(asServices(a.store.ListShared(api.KindService)))
		}
	}
	return ips
}

// asServices is a list of services (the store's) as their type.
func asServices(list []api.Object) []*api.Service {
	out := make([]*api.Service, 0, len(list))
	for _, o := range list {
		out = append(out, o.(*api.Service))
	}
	return out
}

// apply carries out a pass's actions: it binds the standalone pods placed
// here and the claims its pods mount, puts the service addresses on lo and
// updates the proxy, records the events, publishes the pending pods for
// the API, makes evicted pods again and gives the pod manager its pods.
func (a *Agent) apply(ctx context.Context, desired reconcile.Desired, cluster []api.Pod, acts reconcile.Actions) {
	alone := map[string]bool{}
	for i := range desired.Pods {
		alone[podKey(&desired.Pods[i])] = true
	}
	mine := acts.Run
	for _, p := range acts.Bind {
		if a.bindHere(&p) {
			mine = append(mine, p)
		}
	}
	// Claims a pod here mounts are bound here, if not yet bound.
	for i := range mine {
		if len(mine[i].Spec.Volumes) > 0 && !alone[podKey(&mine[i])] {
			if node, err := a.claimNode(&mine[i], nil); err == nil && node == "" {
				a.bindClaims(&mine[i], a.cfg.Name, nil)
			}
		}
	}
	// The service addresses on lo, the proxy's listeners and endpoints.
	var addrs []string
	for _, ip := range desired.ServiceIPs {
		addrs = append(addrs, ip)
	}
	if err := a.svcNet.sync(ctx, addrs); err != nil {
		a.log.Warn("service addresses", "err", err)
	}
	if a.proxy != nil {
		a.proxy.Update(a.proxyServices(desired.Services, desired.ServiceIPs, cluster))
		a.updateIngress(desired.Services)
	}
	for _, e := range acts.Events {
		a.events.record(e.Object, e.Type, e.Reason, e.Message)
	}
	a.sched.setPending(acts.Pending, acts.Counted, acts.Desired)
	for _, p := range acts.Remake {
		if err := a.pods.Replace(p.Metadata.Namespace, p.Metadata.Name); err == nil {
			a.log.Info("evicted pod made again", "pod", podKey(&p), "reason", p.Status.Message)
		}
	}
	a.localPodIPs(a.pods.Pods())
	if !a.subnetSettled.Load() {
		return // a new peer starts no pod before it has claimed its subnet
	}
	a.pods.Sync(mine)
}

// bindHere binds p, an unbound standalone pod placed on this peer, to this
// peer (p then names it), unless its claims are elsewhere or another peer
// bound it meanwhile; it reports whether p runs here.
func (a *Agent) bindHere(p *api.Pod) bool {
	self := a.cfg.Name
	if node, err := a.claimNode(p, nil); err != nil || node != "" && node != self {
		return false // its claims are elsewhere
	}
	key := state.Key(api.KindPod, p.Metadata.Namespace, p.Metadata.Name)
	if ok, err := a.store.BindPod(key, self); err != nil || !ok {
		if err != nil {
			a.log.Warn("bind pod", "pod", podKey(p), "err", err)
		}
		return false // bound meanwhile, or gone: seen at the next pass
	}
	a.log.Info("bound pod", "pod", podKey(p), "node", self)
	a.bindClaims(p, self, nil)
	p.Spec.NodeName = self
	return true
}
