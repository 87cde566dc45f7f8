package reconcile

import (
	"slices"

	"github.com/chorus-sh/chorus/api"
)

// placed is the desired pods of the cluster as placed, the same on every
// peer that holds the same state and membership.
type placed struct {
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

// decide is the second half of Plan: what peer self does with the pods as
// placed. It runs the pods placed on it and the standalone pods bound to
// it; it binds the unbound standalone pods placed on it; a pod placed on another peer that self runs and that is Ready
// here is kept until that peer reports its own copy Ready (a planned move:
// make-before-break; when the owner is gone, placement has moved the pod
// and the copy there starts at once); everything else it runs stops. Pods
// that fit nowhere (and standalone pods unbound and unplaced) are
// pending.
func decide(d placed, o Observed, self string) Actions {
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
