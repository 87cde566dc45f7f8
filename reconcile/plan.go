// Package reconcile decides what one peer does with the cluster's pods at a
// reconcile pass. Given the desired pods placed over the alive peers and
// the pods observed (this peer's, and the cluster's with their peers'
// statuses), Plan says which pods this peer runs, which it keeps only until
// their new owner's copy is Ready (make-before-break), which stop, which
// standalone pods it should bind, and which pods fit nowhere and why. Plan
// is pure: the agent reads its state, plans, and applies the actions.
package reconcile

import (
	"slices"

	"github.com/chorus-sh/chorus/api"
)

// Desired is the desired pods of the cluster as placed, the same on every
// peer that holds the same state and membership.
type Desired struct {
	// Pods is every desired pod: those of deployments and daemon sets,
	// and the standalone pods (stored Pod objects).
	Pods []api.Pod
	// Assign maps a pod key (namespace/name) to the peer placement gives
	// it; a pod missing fits nowhere.
	Assign map[string]string
	// Pending maps a pod key that fits nowhere to the reason.
	Pending map[string]string
	// Standalone holds the keys of the standalone pods: their peer is
	// spec.nodeName once bound, placement only picks the peer that binds
	// an unbound one.
	Standalone map[string]bool
}

// Observed is what runs, as this peer knows it.
type Observed struct {
	// Local is the pods this peer runs now, with their statuses.
	Local []api.Pod
	// Cluster is the pods of every peer (Local included), each with its
	// peer (spec.nodeName) and the status its peer reports.
	Cluster []api.Pod
}

// Actions is what a peer does after a pass.
type Actions struct {
	// Run is the pods this peer runs (the pod manager's desired set),
	// in the order of Desired.Pods, then the kept ones.
	Run []api.Pod
	// Kept is the keys of the pods of Run this peer keeps only until
	// their new owner reports its copy Ready (make-before-break).
	Kept []string
	// Bind is the unbound standalone pods placed on this peer: the
	// peer binds each (if its claims allow) and then runs it.
	Bind []api.Pod
	// Stop is the keys of the pods this peer runs now and neither runs
	// nor binds after the pass, sorted.
	Stop []string
	// Pending is the desired pods that fit nowhere, as listed to users:
	// Pending, condition PodScheduled False, reason Unschedulable, the
	// placement's reason as message.
	Pending []api.Pod
}

// Plan decides what peer self does: it runs the pods placed on it and the
// standalone pods bound to it; it binds the unbound standalone pods placed
// on it; a pod placed on another peer that self runs and that is Ready
// here is kept until that peer reports its own copy Ready (a planned move:
// make-before-break; when the owner is gone, placement has moved the pod
// and the copy there starts at once); everything else it runs stops. Pods
// that fit nowhere (and standalone pods unbound and unplaced) are
// pending.
func Plan(d Desired, o Observed, self string) Actions {
	var a Actions
	readyOn := map[string]map[string]bool{} // pod key -> peer -> its copy is Ready
	for i := range o.Cluster {
		p := &o.Cluster[i]
		k := key(p)
		if readyOn[k] == nil {
			readyOn[k] = map[string]bool{}
		}
		readyOn[k][p.Spec.NodeName] = Ready(p)
	}
	wanted := map[string]bool{}
	for _, p := range d.Pods {
		k := key(&p)
		wanted[k] = true
		owner := d.Assign[k]
		if d.Standalone[k] {
			switch {
			case p.Spec.NodeName == self:
				a.Run = append(a.Run, p)
			case p.Spec.NodeName == "" && owner == self:
				a.Bind = append(a.Bind, p)
			case p.Spec.NodeName == "" && owner == "":
				a.Pending = append(a.Pending, unschedulable(p, d.Pending[k]))
			}
			continue
		}
		switch owner {
		case self:
			a.Run = append(a.Run, p)
		case "":
			a.Pending = append(a.Pending, unschedulable(p, d.Pending[k]))
		}
	}
	// Make-before-break: keep a local copy of a replica placed elsewhere
	// until its new owner reports it Ready.
	have := map[string]bool{}
	for _, p := range a.Run {
		have[key(&p)] = true
	}
	for _, p := range o.Local {
		k := key(&p)
		if have[k] || !wanted[k] || d.Standalone[k] {
			continue
		}
		owner := d.Assign[k]
		if owner != "" && owner != self && !readyOn[k][owner] && Ready(&p) {
			a.Run = append(a.Run, p)
			a.Kept = append(a.Kept, k)
			have[k] = true
		}
	}
	for _, p := range a.Bind {
		have[key(&p)] = true
	}
	for _, p := range o.Local {
		if k := key(&p); !have[k] {
			a.Stop = append(a.Stop, k)
		}
	}
	slices.Sort(a.Stop)
	slices.SortFunc(a.Pending, func(x, y api.Pod) int {
		kx, ky := key(&x), key(&y)
		switch {
		case kx < ky:
			return -1
		case kx > ky:
			return 1
		}
		return 0
	})
	return a
}

// Ready reports whether the pod's Ready condition is True.
func Ready(p *api.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

func key(p *api.Pod) string { return p.Metadata.Namespace + "/" + p.Metadata.Name }

// unschedulable is p listed as a pod that fits nowhere, for why.
func unschedulable(p api.Pod, why string) api.Pod {
	p.Status = api.PodStatus{Phase: api.PodPending, Conditions: []api.PodCondition{{
		Type: "PodScheduled", Status: "False", Reason: "Unschedulable", Message: why}}}
	p.APIVersion, p.Kind = "v1", api.KindPod
	return p
}
