package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/chorus-sh/chorus/api"
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
	counted map[string]int // deployment key -> pending replicas not made into pods (see plan)
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
	var out []placement.Node
	if a.gossip == nil {
		return []placement.Node{{Name: a.cfg.Name, Labels: a.cfg.Labels}}
	}
	for _, m := range a.gossip.Members() {
		if m.Status != "Alive" {
			continue
		}
		n := placement.Node{Name: m.Name, Labels: map[string]string{}, Cordoned: a.cordoned(m.Name)}
		for k, v := range m.Tags {
			if l, ok := strings.CutPrefix(k, labelTagPrefix); ok {
				n.Labels[l] = v
			}
		}
		n.Labels["kubernetes.io/hostname"] = m.Name
		if z, ok := n.Labels["zone"]; ok && n.Labels[zoneLabel] == "" {
			n.Labels[zoneLabel] = z
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

// zoneLabel is the topology label replicas of a deployment spread over, as
// well as over peers; a peer labelled zone=X counts as in zone X.
const zoneLabel = "topology.kubernetes.io/zone"

// replicaOf describes a desired pod to placement.
func replicaOf(p *api.Pod) placement.Replica {
	r := placement.Replica{Key: podKey(p), NodeSelector: p.Spec.NodeSelector, SpreadKey: zoneLabel,
		Group: p.Metadata.Namespace + "/" + p.Metadata.Labels[api.LabelDeployment]}
	if d := p.Metadata.Labels[api.LabelDeployment]; d != "" {
		// Ordinal i ranks the peers the same whatever the template, and is
		// placed after ordinals 0..i-1: a scale-up adds the highest ordinals,
		// placed last, so it moves no running replica (see placement).
		if i := strings.LastIndexByte(p.Metadata.Name, '-'); i > 0 {
			r.Affinity = r.Group + "/" + p.Metadata.Name[i+1:]
			r.Ordinal = max(ordinalOf(p.Metadata.Name), 0)
		}
	}
	if ds := p.Metadata.Labels[api.LabelDaemonSet]; ds != "" {
		r.Group = p.Metadata.Namespace + "/ds/" + ds
		r.Pin = p.Spec.NodeName
	}
	if isStandalone(p) {
		// Bound to its node (or unbound: placed freely), in no group.
		r.Group = ""
		r.Pin = p.Spec.NodeName
	}
	r.CPUMilli, r.MemBytes = api.PodRequests(&p.Spec)
	return r
}

// maxPodsPerPeer is how many pods a peer takes at most, as the kubelet's
// default max-pods (the "pods" capacity each peer reports). plan makes
// pods for at most this many replicas per schedulable peer in all.
const maxPodsPerPeer = 110

// whyTooManyPods is the pending reason of replicas beyond the cluster's
// pod capacity.
func whyTooManyPods(nodes []placement.Node) string {
	usable := 0
	for _, n := range nodes {
		if !n.Cordoned {
			usable++
		}
	}
	return fmt.Sprintf("0/%d nodes are available: %d Too many pods (at most %d per peer)", len(nodes), usable, maxPodsPerPeer)
}

// replicaBound is how many replicas of template t the nodes could hold
// if they ran nothing else: per schedulable node whose labels match the
// selector, its CPU and memory over the replica's requests. ok is false
// when nothing bounds it (no requests, or nodes of unlimited capacity).
func replicaBound(t *api.PodTemplateSpec, nodes []placement.Node) (bound int, ok bool) {
	r := replicaOf(&api.Pod{Spec: t.Spec})
	var total int64
	for _, n := range nodes {
		if n.Cordoned || len(r.NodeSelector) > 0 && !api.SelectorMatches(r.NodeSelector, n.Labels) {
			continue
		}
		fit, limited := int64(0), false
		if r.CPUMilli > 0 && n.CPUMilli > 0 {
			fit, limited = n.CPUMilli/r.CPUMilli, true
		}
		if r.MemBytes > 0 && n.MemBytes > 0 {
			if m := n.MemBytes / r.MemBytes; !limited || m < fit {
				fit, limited = m, true
			}
		}
		if !limited {
			return 0, false
		}
		total += fit
		if total > 1<<30 {
			return 0, false
		}
	}
	return int(total), true
}

// plan is the pure core of reconcile: the pods that should run (from the
// deployments, given their pods now, the daemon sets and the standalone
// pods) and where.
//
// Pods are made only for replicas that may run: a replica costs a pod
// object and a placement entry, and a deployment of 10,000 replicas that
// fit nowhere must not cost 10,000 of each on every peer at every pass.
// For each deployment (in key order) plan makes pods for at most the
// replicas its requests and node selector let the cluster hold
// (replicaBound) plus one, so that placement still gives the reason of the
// rest, and, across deployments, for at most maxPodsPerPeer per schedulable
// peer. The replicas beyond are pending; counted returns how many per
// deployment key, and reasons why. A deployment that bounded replicas
// leave pending costs one pod at most even when the budget is spent, so
// that its reason is its own.
//
// claimNodes maps the bound claims ("namespace/name") to their peers: a
// deployment's pod that mounts one may run on that peer only.
func plan(deps []*api.Deployment, dss []*api.DaemonSet, standalone []api.Pod, byDeploy map[string][]api.Pod, nodes []placement.Node, claimNodes map[string]string) ([]api.Pod, placement.Result, map[string]int, map[string]string) {
	var desired, final []api.Pod
	rolling := map[string]string{} // deployment key -> current template hash, for those mid-rollout
	var daemons []api.Pod
	for _, ds := range dss {
		daemons = append(daemons, daemonPods(ds, nodes)...)
	}
	daemons = append(daemons, standalone...) // placed as daemon pods are: pinned when bound
	budget := -len(daemons)
	for _, n := range nodes {
		if !n.Cordoned {
			budget += maxPodsPerPeer
		}
	}
	counted := map[string]int{}
	reasons := map[string]string{}
	byBudget := map[string]bool{}
	for _, d := range deps {
		n := 1
		if d.Spec.Replicas != nil {
			n = max(int(*d.Spec.Replicas), 0)
		}
		k := n
		b, bounded := replicaBound(&d.Spec.Template, nodes)
		if bounded {
			k = min(k, b+1)
		}
		switch {
		case k <= budget:
		case bounded && b == 0:
			k = min(k, 1) // runs nowhere anyway: one pod tells why
		default:
			k = max(budget, 0)
			byBudget[api.ObjectKey(d)] = true
		}
		budget -= k
		now := desiredPodsCapped(d, byDeploy[api.ObjectKey(d)], k)
		end := now
		if !d.Spec.Paused {
			end = api.PodsForDeployment(withReplicas(d, k))
		}
		if !samePodNames(now, end) {
			rolling[api.ObjectKey(d)] = api.TemplateHash(&d.Spec.Template)
		}
		if n > k {
			counted[api.ObjectKey(d)] = n - k
		}
		desired = append(desired, now...)
		final = append(final, end...)
	}
	pinToClaims(desired, claimNodes)
	pinToClaims(final, claimNodes)
	desired = append(desired, daemons...)
	final = append(final, daemons...)
	res := assign(desired, final, rolling, nodes)
	for key := range counted {
		// The reason of the replicas only counted: that of the highest
		// ordinal made a pod, which is pending too unless the budget
		// stopped the deployment first.
		_, ns, name := state.SplitKey(key)
		why, last := "", -1
		for i := range desired {
			p := &desired[i]
			if p.Metadata.Namespace != ns || p.Metadata.Labels[api.LabelDeployment] != name {
				continue
			}
			if w, ok := res.Pending[podKey(p)]; ok {
				if o := ordinalOf(p.Metadata.Name); o > last {
					why, last = w, o
				}
			}
		}
		if why == "" || byBudget[key] {
			why = whyTooManyPods(nodes)
		}
		reasons[key] = why
	}
	return desired, res, counted, reasons
}

// ordinalOf returns the ordinal at the end of a deployment pod's name.
func ordinalOf(name string) int {
	i := strings.LastIndexByte(name, '-')
	n, err := strconv.Atoi(name[i+1:])
	if err != nil {
		return -1
	}
	return n
}

// withReplicas returns d with spec.replicas k (a shallow copy).
func withReplicas(d *api.Deployment, k int) *api.Deployment {
	c := *d
	r := int32(k)
	c.Spec.Replicas = &r
	return &c
}

// assign places the desired pods; final is what they will be once the
// rollouts in rolling end.
func assign(desired, final []api.Pod, rolling map[string]string, nodes []placement.Node) placement.Result {
	replicas := replicasOf(desired)
	opts := placement.Options{LoadFactor: 0.25}
	if len(rolling) == 0 {
		return placement.Assign(nodes, replicas, opts)
	}
	pinned := pinRollouts(desired, replicas, rolling, nodes, placement.Assign(nodes, replicasOf(final), opts))
	res := placement.Assign(nodes, replicas, opts)
	// A pin is a preference here, not a constraint: a pod its pin leaves
	// pending (its peer lacks room while old pods still hold it) is placed
	// freely instead, so a rollout never stalls for want of the pin.
	again := false
	for _, i := range pinned {
		if _, pending := res.Pending[replicas[i].Key]; pending {
			replicas[i].Pin = ""
			again = true
		}
	}
	if again {
		res = placement.Assign(nodes, replicas, opts)
	}
	return res
}

func replicasOf(pods []api.Pod) []placement.Replica {
	out := make([]placement.Replica, len(pods))
	for i := range pods {
		out[i] = replicaOf(&pods[i])
	}
	return out
}

func samePodNames(a, b []api.Pod) bool {
	if len(a) != len(b) {
		return false
	}
	names := map[string]bool{}
	for _, p := range a {
		names[p.Metadata.Name] = true
	}
	for _, p := range b {
		if !names[p.Metadata.Name] {
			return false
		}
	}
	return true
}

// pinRollouts keeps rolling updates from moving pods around. Every step of
// a rollout changes a deployment's pods, and placement of each step's set
// on its own would move pods between peers (spread and the load bound make
// replicas interact, across deployments too). So while any deployment is
// mid-rollout, its pods of older templates are pinned to the peer that runs
// them (if it is alive, schedulable and still matches), and every other
// deployment pod to the peer that the finished rollouts give it: target,
// the placement of every deployment's final pods. When the rollouts end the
// pods are the final ones and the plain placement puts them where they
// already are. As a new template's pod has the Affinity of the old one it
// replaces, target puts it where the old one was, and leaves the other
// deployments' pods where they are.
//
// It returns the indices of the replicas it pinned.
func pinRollouts(desired []api.Pod, replicas []placement.Replica, rolling map[string]string, nodes []placement.Node, target placement.Result) []int {
	var pinned []int
	usable := map[string]placement.Node{}
	for _, n := range nodes {
		if !n.Cordoned {
			usable[n.Name] = n
		}
	}
	for i := range desired {
		p := &desired[i]
		if p.Metadata.Labels[api.LabelDeployment] == "" {
			continue // daemon pods are pinned already
		}
		hash, ok := rolling[state.Key(api.KindDeployment, p.Metadata.Namespace, p.Metadata.Labels[api.LabelDeployment])]
		if ok && p.Metadata.Labels[api.LabelTemplateHash] != hash {
			if n, ok := usable[p.Spec.NodeName]; ok && (len(p.Spec.NodeSelector) == 0 || api.SelectorMatches(p.Spec.NodeSelector, n.Labels)) {
				replicas[i].Pin = n.Name
				pinned = append(pinned, i)
			}
			continue
		}
		if n := target.Assign[podKey(p)]; n != "" {
			replicas[i].Pin = n
			pinned = append(pinned, i)
		}
	}
	return pinned
}

// reconcile is one level-triggered pass on this peer:
//  1. the desired pods of every deployment, from the cluster's pods now
//     (rolling updates count Ready pods wherever they run);
//  2. placement of those pods over the alive peers, the same on every peer;
//  3. reconcile.Plan (pure) decides what this peer runs: the pods placed
//     here, plus, for a planned move, the copy this peer still runs until
//     the new owner reports its replacement Ready (make-before-break), the
//     standalone pods to bind, and the pending pods; the agent binds, sets
//     the services' env and gives the pods to the pod manager.
func (a *Agent) reconcile() {
	if a.leaving.Load() {
		a.pods.Sync(nil)
		return
	}
	local := a.pods.Pods() // one copy of this peer's pods for the whole pass
	cluster := a.clusterPodsWith(local)
	byDeploy := map[string][]api.Pod{}
	seen := map[string]int{} // pod key -> index in byDeploy list
	for _, p := range cluster {
		k := podKey(&p)
		d := p.Metadata.Labels[api.LabelDeployment]
		if d == "" {
			continue
		}
		dk := state.Key(api.KindDeployment, p.Metadata.Namespace, d)
		if i, ok := seen[k]; ok {
			// The same replica on two peers (a move in progress): count it once,
			// as the copy that serves (Ready if either copy is).
			if servesBetter(&p, &byDeploy[dk][i]) {
				byDeploy[dk][i] = p
			}
			continue
		}
		seen[k] = len(byDeploy[dk])
		byDeploy[dk] = append(byDeploy[dk], p)
	}
	var deps []*api.Deployment
	for _, o := range a.store.List(api.KindDeployment, "") {
		deps = append(deps, o.(*api.Deployment))
	}
	var dss []*api.DaemonSet
	for _, o := range a.store.List(api.KindDaemonSet, "") {
		dss = append(dss, o.(*api.DaemonSet))
	}
	standalone := a.standalonePods()
	// A job's pod recorded as ended never starts again (its peer may have
	// lost it, with its data dir): it is kept where it still is, for its
	// logs, and run nowhere else.
	if ended := endedJobPods(a.store); len(ended) > 0 {
		here := map[string]bool{}
		for _, p := range local {
			here[podKey(&p)] = true
		}
		standalone = slices.DeleteFunc(standalone, func(p api.Pod) bool {
			_, done := ended[podKey(&p)]
			return done && !(here[podKey(&p)] && p.Spec.NodeName == a.cfg.Name)
		})
	}
	alone := map[string]bool{}
	for i := range standalone {
		alone[podKey(&standalone[i])] = true
	}
	nodes := a.placementNodes()
	desired, res, counted, reasons := plan(deps, dss, standalone, byDeploy, nodes, a.claimNodes())

	self := a.cfg.Name
	acts := reconcile.Plan(reconcile.Desired{Pods: desired, Assign: res.Assign, Pending: res.Pending, Standalone: alone},
		reconcile.Observed{Local: local, Cluster: cluster}, self)
	mine, pending := acts.Run, acts.Pending
	for _, p := range acts.Bind {
		if p, ok := a.standaloneOwned(p, res); ok {
			mine = append(mine, p)
		}
	}
	// Claims a pod here mounts are bound here, if not yet bound.
	for i := range mine {
		if len(mine[i].Spec.Volumes) > 0 && !alone[podKey(&mine[i])] {
			if node, err := a.claimNode(&mine[i], nil); err == nil && node == "" {
				a.bindClaims(&mine[i], self, nil)
			}
		}
	}
	// Services: this peer's address for each, the variables new pods get,
	// and the proxy's listeners and endpoints.
	var services []*api.Service
	var keys []string
	for _, o := range a.store.List(api.KindService, "") {
		s := o.(*api.Service)
		services = append(services, s)
		if !s.Headless() {
			keys = append(keys, api.ObjectKey(s))
		}
	}
	ips := a.svcNet.assign(keys)
	a.svcIPs.Store(&ips)
	var addrs []string
	for _, ip := range ips {
		addrs = append(addrs, ip)
	}
	if err := a.svcNet.sync(context.Background(), addrs); err != nil {
		a.log.Warn("service addresses", "err", err)
	}
	for i := range mine {
		withServiceEnv(&mine[i], serviceEnv(services, ips, mine[i].Metadata.Namespace))
	}
	if a.proxy != nil {
		a.proxy.Update(a.proxyServices(services, ips, cluster))
		a.updateIngress(services)
	}
	for _, p := range pending {
		a.events.record(api.ObjectReference{Kind: api.KindPod, Namespace: p.Metadata.Namespace, Name: p.Metadata.Name, UID: p.Metadata.UID},
			"Warning", "FailedScheduling", res.Pending[podKey(&p)])
	}
	for key, n := range counted {
		_, ns, name := state.SplitKey(key)
		a.events.record(api.ObjectReference{Kind: api.KindDeployment, Namespace: ns, Name: name}, "Warning", "FailedScheduling",
			fmt.Sprintf("%d more replicas pending (not listed as pods): %s", n, reasons[key]))
	}
	a.sched.setPending(pending, counted, desired)
	// A pod of a deployment or daemon set that was evicted (an emptyDir
	// over its sizeLimit) is made again, empty, as a ReplicaSet makes a new
	// pod; a standalone or job pod stays Failed, as in Kubernetes.
	for _, p := range local {
		if p.Status.Phase == api.PodFailed && p.Status.Reason == "Evicted" && !isStandalone(&p) {
			if err := a.pods.Replace(p.Metadata.Namespace, p.Metadata.Name); err == nil {
				a.log.Info("evicted pod made again", "pod", podKey(&p), "reason", p.Status.Message)
			}
		}
	}
	a.localPodIPs(a.pods.Pods())
	if !a.subnetSettled.Load() {
		return // a new peer starts no pod before it has claimed its subnet
	}
	a.pods.Sync(mine)
}

// standaloneOwned returns the standalone pod p as this peer runs it, and
// whether it runs here: bound here, or unbound and placed here (then this
// peer binds it first).
func (a *Agent) standaloneOwned(p api.Pod, res placement.Result) (api.Pod, bool) {
	self := a.cfg.Name
	switch {
	case p.Spec.NodeName == self:
		return p, true
	case p.Spec.NodeName != "" || res.Assign[podKey(&p)] != self:
		return p, false
	}
	if node, err := a.claimNode(&p, nil); err != nil || node != "" && node != self {
		return p, false // its claims are elsewhere
	}
	key := state.Key(api.KindPod, p.Metadata.Namespace, p.Metadata.Name)
	if ok, err := a.store.BindPod(key, self); err != nil || !ok {
		if err != nil {
			a.log.Warn("bind pod", "pod", podKey(&p), "err", err)
		}
		return p, false // bound meanwhile, or gone: seen at the next pass
	}
	a.log.Info("bound pod", "pod", podKey(&p), "node", self)
	a.bindClaims(&p, self, nil)
	p.Spec.NodeName = self
	return p, true
}

// daemonPods returns a daemon set's pods: one for every schedulable peer
// whose labels match its node selector, pinned to that peer.
func daemonPods(ds *api.DaemonSet, nodes []placement.Node) []api.Pod {
	var out []api.Pod
	for _, n := range nodes {
		if n.Cordoned || !api.SelectorMatches(ds.Spec.Template.Spec.NodeSelector, n.Labels) && len(ds.Spec.Template.Spec.NodeSelector) > 0 {
			continue
		}
		out = append(out, api.DaemonPod(ds, n.Name))
	}
	return out
}

// daemonSetStatus aggregates a daemon set's status from its pods.
func (a *Agent) daemonSetStatus(ds *api.DaemonSet, pods []api.Pod) api.DaemonSetStatus {
	st := api.DaemonSetStatus{ObservedGeneration: ds.Metadata.Generation}
	st.DesiredNumberScheduled = int32(len(daemonPods(ds, a.placementNodes())))
	hash := api.TemplateHash(&ds.Spec.Template)
	for _, p := range pods {
		if p.Metadata.Namespace != ds.Metadata.Namespace || p.Metadata.Labels[api.LabelDaemonSet] != ds.Metadata.Name {
			continue
		}
		st.CurrentNumberScheduled++
		if p.Metadata.Labels[api.LabelTemplateHash] == hash {
			st.UpdatedNumberScheduled++
		}
		if podReady(&p) {
			st.NumberReady++
			st.NumberAvailable++
		}
	}
	st.NumberUnavailable = max(0, st.DesiredNumberScheduled-st.NumberAvailable)
	return st
}

// pinToClaims restricts each pod that mounts a bound claim to the claim's
// peer (a node selector on its hostname): its data is there.
func pinToClaims(pods []api.Pod, claimNodes map[string]string) {
	for i := range pods {
		p := &pods[i]
		for _, name := range claimNames(p) {
			node, ok := claimNodes[p.Metadata.Namespace+"/"+name]
			if !ok {
				continue
			}
			sel := maps.Clone(p.Spec.NodeSelector)
			if sel == nil {
				sel = map[string]string{}
			}
			sel["kubernetes.io/hostname"] = node
			p.Spec.NodeSelector = sel
			break
		}
	}
}
