package agent

import (
	"encoding/json"
	"fmt"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/controller"
	"github.com/chorus-sh/chorus/gossip"
	"github.com/chorus-sh/chorus/placement"
	"github.com/chorus-sh/chorus/reconcile"
)

// Standalone pods are Pod objects of the replicated state (kubectl run,
// apply of kind Pod), as opposed to the pods derived from deployments and
// daemon sets. As in Kubernetes, such a pod is bound to one peer once
// (spec.nodeName) and runs only there: it is never moved, also not when its
// peer dies; then it is listed with its last status and phase Unknown
// (reason NodeLost) until a user deletes it.
//
// Binding: the peer that takes the create binds the pod (bindNew and reconcile.BindNode, with the
// placement the deployments use); one that fits nowhere is stored unbound,
// listed Pending with a FailedScheduling event, and bound by the peer that
// placement assigns it to, in a later reconcile pass, once it fits. Two
// peers that see the cluster differently may bind one pod at once: the
// last write of spec.nodeName wins everywhere, and the other stops it.

// isStandalone reports whether p is not derived from a deployment or a
// daemon set.
func isStandalone(p *api.Pod) bool {
	return p.Metadata.Labels[api.LabelDeployment] == "" && p.Metadata.Labels[api.LabelDaemonSet] == ""
}

// standalonePods returns the stored pods, sorted by namespace and name,
// without status (a stored pod has none: it is its peer's to report).
func (a *Agent) standalonePods() []api.Pod {
	var out []api.Pod
	for _, o := range a.store.List(api.KindPod, "") {
		p := *o.(*api.Pod)
		p.Status = api.PodStatus{}
		out = append(out, p)
	}
	return out
}

// bindNew binds the new standalone pods of objs (those without
// spec.nodeName) before they are stored: a pod already stored keeps its
// node, a new one gets the node reconcile.BindNode gives it, or none while it fits
// nowhere (reconcile binds it later).
func (a *Agent) bindNew(objs []api.Object) {
	var nodes []placement.Node
	var desired []api.Pod
	fresh := map[string]*api.PersistentVolumeClaim{} // claims stored with the pods
	for _, o := range objs {
		if c, ok := o.(*api.PersistentVolumeClaim); ok {
			fresh[c.Metadata.Name] = c
		}
	}
	for _, o := range objs {
		p, ok := o.(*api.Pod)
		if !ok || p.Spec.NodeName != "" {
			continue
		}
		if cur, ok := a.store.Get(api.ObjectKey(p)); ok && cur.(*api.Pod).Spec.NodeName != "" {
			p.Spec.NodeName = cur.(*api.Pod).Spec.NodeName
			continue
		}
		// A pod whose claim is bound goes where the claim's data is.
		if node, err := a.claimNode(p, fresh); err != nil || node != "" {
			p.Spec.NodeName = node
			continue
		}
		if nodes == nil {
			nodes, desired = a.placementNodes(), a.sched.desiredPods()
		}
		p.Spec.NodeName, _ = reconcile.BindNode(p, desired, nodes)
		if p.Spec.NodeName != "" {
			desired = append(desired, *p)
			a.bindClaims(p, p.Spec.NodeName, fresh)
		}
	}
}

// listedPods returns the cluster's pods as the API lists them: those the
// alive peers run (clusterPods), the desired ones that fit nowhere, and
// the standalone pods that run on no alive peer: Pending while their peer
// has not started them yet, and with their last status, phase Unknown and
// reason NodeLost when their peer is dead or gone.
func (a *Agent) listedPods() []api.Pod {
	out := append(a.clusterPods(), a.sched.pendingPods()...)
	seen := map[string]bool{}
	for i := range out {
		seen[podKey(&out[i])] = true
	}
	status := map[string]gossip.Status{}
	if a.gossip != nil {
		for _, m := range a.gossip.Members() {
			status[m.Name] = m.Status
		}
	}
	ended := endedJobPods(a.store)
	for _, p := range a.standalonePods() {
		if seen[podKey(&p)] {
			continue
		}
		p.APIVersion, p.Kind = "v1", api.KindPod
		if st, ok := ended[podKey(&p)]; ok {
			// A job's pod that ended and no longer runs: as its job's
			// controller recorded it.
			p.Status = st
			out = append(out, p)
			continue
		}
		node := p.Spec.NodeName
		st, known := status[node]
		switch {
		case node == "" || node == a.cfg.Name || st == gossip.StatusAlive || known && st != gossip.StatusDead && st != gossip.StatusLeft:
			// Not started yet, or its peer is suspected: its last status
			// when there is one, Pending otherwise.
			if last, ok := a.lastPodStatus(node, &p); ok && node != a.cfg.Name {
				p.Status = last
			} else {
				p.Status = api.PodStatus{Phase: api.PodPending, Conditions: []api.PodCondition{{Type: "PodScheduled", Status: boolStatus(node != "")}}}
			}
		default:
			last, ran := a.lastPodStatus(node, &p)
			if !ran {
				// Bound to a peer that is away (its claim's), never started.
				p.Status = api.PodStatus{Phase: api.PodPending, Conditions: []api.PodCondition{{Type: "PodScheduled", Status: "True"}},
					Reason: "PeerNotReady", Message: fmt.Sprintf("bound to peer %s (where its volumes are), which is not alive", node)}
				break
			}
			p.Status = controller.NodeLost(last, node)
		}
		out = append(out, p)
	}
	return out
}

// lastPodStatus returns the status node last published for p.
func (a *Agent) lastPodStatus(node string, p *api.Pod) (api.PodStatus, bool) {
	if node == "" {
		return api.PodStatus{}, false
	}
	raw, ok := a.store.RawFields(nodeStatusKey(node))[podField(p)]
	if !ok {
		return api.PodStatus{}, false
	}
	var last api.Pod
	if err := json.Unmarshal(raw, &last); err != nil {
		return api.PodStatus{}, false
	}
	if p.Metadata.UID != "" && last.Metadata.UID != "" && last.Metadata.UID != p.Metadata.UID {
		return api.PodStatus{}, false // an earlier pod of the same name
	}
	return last.Status, true
}

func boolStatus(b bool) string {
	if b {
		return "True"
	}
	return "False"
}

// ownerOf names what a derived pod belongs to: "deployment NAME" or
// "daemon set NAME".
func ownerOf(p *api.Pod) string {
	if d := p.Metadata.Labels[api.LabelDeployment]; d != "" {
		return "deployment " + d
	}
	return "daemon set " + p.Metadata.Labels[api.LabelDaemonSet]
}
