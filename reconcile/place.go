package reconcile

import (
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/placement"
)

// ZoneLabel is the topology label replicas of a deployment spread over, as
// well as over peers; a peer labelled zone=X counts as in zone X (the
// agent sets it so on the nodes it gives Plan).
const ZoneLabel = "topology.kubernetes.io/zone"

// replicaOf describes a desired pod to placement.
func replicaOf(p *api.Pod) placement.Replica {
	r := placement.Replica{Key: key(p), NodeSelector: p.Spec.NodeSelector, SpreadKey: ZoneLabel,
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
	if standalone(p) {
		// Bound to its node (or unbound: placed freely), in no group.
		r.Group = ""
		r.Pin = p.Spec.NodeName
	}
	r.CPUMilli, r.MemBytes = api.PodRequests(&p.Spec)
	return r
}

// maxPodsPerPeer is how many pods a peer takes at most, as the kubelet's
// default max-pods (the "pods" capacity each peer reports). place makes
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

// place is the first half of Plan: the pods that should run (from the
// deployments, given their pods now, the daemon sets and the standalone
// pods) and where.
//
// Pods are made only for replicas that may run: a replica costs a pod
// object and a placement entry, and a deployment of 10,000 replicas that
// fit nowhere must not cost 10,000 of each on every peer at every pass.
// For each deployment (in key order) place makes pods for at most the
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
func place(deps []*api.Deployment, dss []*api.DaemonSet, standalone []api.Pod, byDeploy map[string][]api.Pod, nodes []placement.Node, claimNodes map[string]string) ([]api.Pod, placement.Result, map[string]int, map[string]string) {
	var desired, final []api.Pod
	rolling := map[string]string{} // deployment key -> current template hash, for those mid-rollout
	var daemons []api.Pod
	for _, ds := range dss {
		daemons = append(daemons, DaemonPods(ds, nodes)...)
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
		now, settled := desiredPodsCapped(d, byDeploy[api.ObjectKey(d)], k)
		end := now
		if !d.Spec.Paused && !settled {
			// Mid-rollout: the pods at its end. Settled, they are now's
			// (made once: building every replica's pod was most of a pass).
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
	for dk := range counted {
		// The reason of the replicas only counted: that of the highest
		// ordinal made a pod, which is pending too unless the budget
		// stopped the deployment first.
		ns, name := splitDeploymentKey(dk)
		why, last := "", -1
		for i := range desired {
			p := &desired[i]
			if p.Metadata.Namespace != ns || p.Metadata.Labels[api.LabelDeployment] != name {
				continue
			}
			if w, ok := res.Pending[key(p)]; ok {
				if o := ordinalOf(p.Metadata.Name); o > last {
					why, last = w, o
				}
			}
		}
		if why == "" || byBudget[dk] {
			why = whyTooManyPods(nodes)
		}
		reasons[dk] = why
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
		hash, ok := rolling[deploymentKey(p.Metadata.Namespace, p.Metadata.Labels[api.LabelDeployment])]
		if ok && p.Metadata.Labels[api.LabelTemplateHash] != hash {
			if n, ok := usable[p.Spec.NodeName]; ok && (len(p.Spec.NodeSelector) == 0 || api.SelectorMatches(p.Spec.NodeSelector, n.Labels)) {
				replicas[i].Pin = n.Name
				pinned = append(pinned, i)
			}
			continue
		}
		if n := target.Assign[key(p)]; n != "" {
			replicas[i].Pin = n
			pinned = append(pinned, i)
		}
	}
	return pinned
}

// DaemonPods returns a daemon set's pods: one for every schedulable peer
// whose labels match its node selector, pinned to that peer.
func DaemonPods(ds *api.DaemonSet, nodes []placement.Node) []api.Pod {
	var out []api.Pod
	for _, n := range nodes {
		if n.Cordoned || !api.SelectorMatches(ds.Spec.Template.Spec.NodeSelector, n.Labels) && len(ds.Spec.Template.Spec.NodeSelector) > 0 {
			continue
		}
		out = append(out, api.DaemonPod(ds, n.Name))
	}
	return out
}

// pinToClaims restricts each pod that mounts a bound claim to the claim's
// peer (a node selector on its hostname): its data is there.
func pinToClaims(pods []api.Pod, claimNodes map[string]string) {
	for i := range pods {
		p := &pods[i]
		for _, v := range p.Spec.Volumes {
			if v.PersistentVolumeClaim == nil {
				continue
			}
			node, ok := claimNodes[p.Metadata.Namespace+"/"+v.PersistentVolumeClaim.ClaimName]
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

// BindNode decides the node of p, as a scheduler binds a pod: a pod that
// names its node keeps it; otherwise the node placement gives p among the
// other desired pods (the bound ones pinned to their nodes), or "" and why
// it fits nowhere. It is a pure function of its arguments.
func BindNode(p *api.Pod, others []api.Pod, nodes []placement.Node) (node, why string) {
	if p.Spec.NodeName != "" {
		return p.Spec.NodeName, ""
	}
	replicas := make([]placement.Replica, 0, len(others)+1)
	k := key(p)
	for i := range others {
		if key(&others[i]) != k {
			replicas = append(replicas, replicaOf(&others[i]))
		}
	}
	replicas = append(replicas, replicaOf(p))
	res := placement.Assign(nodes, replicas, placement.Options{LoadFactor: 0.25})
	if n, ok := res.Assign[k]; ok {
		return n, ""
	}
	return "", res.Pending[k]
}

// standalone reports whether p is not derived from a deployment or a
// daemon set: a stored Pod object.
func standalone(p *api.Pod) bool {
	return p.Metadata.Labels[api.LabelDeployment] == "" && p.Metadata.Labels[api.LabelDaemonSet] == ""
}

// deploymentKey is the store key of deployment ns/name.
func deploymentKey(ns, name string) string { return api.KindDeployment + "/" + ns + "/" + name }

// splitDeploymentKey returns the namespace and name of a deployment key.
func splitDeploymentKey(k string) (ns, name string) {
	_, rest, _ := strings.Cut(k, "/")
	ns, name, _ = strings.Cut(rest, "/")
	return ns, name
}
