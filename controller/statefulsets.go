package controller

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/reconcile"
)

// A StatefulSet's pods are standalone Pod objects NAME-0..NAME-(N-1), made
// by the set's controller (the alive peer that leads the set's key), each
// bound to one peer once, as any standalone pod. Their claims
// (volumeClaimTemplates) are PersistentVolumeClaims made before the pod;
// a claim is bound to the peer of the first pod that uses it, and a pod
// whose claim is bound goes to that peer only.
//
// The rule that keeps one copy of each ordinal, whole or partitioned (as
// Kubernetes'): a stateful pod is never replaced while the peer it was
// bound to may still run it. A pod whose peer is Dead (failed, or on the
// other side of a partition) stays listed as Unknown (NodeLost) and blocks
// the set's ordered progress; it is replaced only once its peer is gone
// for sure: the peer left (`chorus leave`, `kubectl delete node`, its
// pods stopped), or a user deleted the pod. A replaced pod with a claim
// goes back to the claim's peer (Pending while that peer is away): its
// data is never replaced by an empty volume elsewhere.

// StatefulPlan is what the controller of a stateful set does now.
type StatefulPlan struct {
	CreateClaims []*api.PersistentVolumeClaim
	Create       []api.Pod
	Delete       []string // pod names
	DeleteClaims []string // claim names
	Events       []JobEvent
}

// statefulRevision names the revision of a set's template, as
// Kubernetes' controller-revision-hash label does: "<set>-<hash>".
func statefulRevision(s *api.StatefulSet) string {
	return s.Metadata.Name + "-" + api.TemplateHash(&s.Spec.Template)
}

func ordinalOfPod(s *api.StatefulSet, p *api.Pod) (int, bool) {
	rest, ok := strings.CutPrefix(p.Metadata.Name, s.Metadata.Name+"-")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 0 || strconv.Itoa(n) != rest {
		return 0, false
	}
	return n, true
}

// PlanStatefulSet decides what the controller of s does now, given its
// pods (as listed: live, pending or lost), which of them are stored (the
// others are stopping), the claims that exist, and the peers that are gone
// for sure (left the cluster).
func PlanStatefulSet(s *api.StatefulSet, pods []api.Pod, stored map[string]bool, claims map[string]bool, gone map[string]bool) StatefulPlan {
	var plan StatefulPlan
	n := 1
	if s.Spec.Replicas != nil {
		n = int(*s.Spec.Replicas)
	}
	start := 0
	if s.Spec.Ordinals != nil {
		start = int(s.Spec.Ordinals.Start)
	}
	parallel := s.Spec.PodManagementPolicy == api.PodManagementParallel
	rev := statefulRevision(s)
	byOrdinal := map[int]api.Pod{}
	stopping := map[int]bool{} // deleted, still stopping on its peer
	terminating := false
	for _, p := range pods {
		i, ok := ordinalOfPod(s, &p)
		if !ok {
			continue
		}
		if !stored[p.Metadata.Name] {
			terminating, stopping[i] = true, true
			continue
		}
		if isLost(&p) && gone[p.Spec.NodeName] {
			plan.Delete = append(plan.Delete, p.Metadata.Name)
			stopping[i] = true // made again at a later pass
			plan.Events = append(plan.Events, JobEvent{"Normal", "SuccessfulDelete",
				fmt.Sprintf("delete Pod %s in StatefulSet %s: its peer %s left the cluster", p.Metadata.Name, s.Metadata.Name, p.Spec.NodeName)})
			continue
		}
		if p.Status.Phase == api.PodFailed || p.Status.Phase == api.PodSucceeded {
			// A stateful pod runs for ever: one that ended is made again
			// (at a later pass).
			plan.Delete = append(plan.Delete, p.Metadata.Name)
			stopping[i] = true
			continue
		}
		byOrdinal[i] = p
	}
	healthy := func(p api.Pod) bool { return p.Status.Phase == api.PodRunning && reconcile.Ready(&p) }
	// Create what is missing, in order; OrderedReady waits for each to be
	// Running and Ready before the next.
	allReady := !terminating && len(plan.Delete) == 0
	for i := start; i < start+n; i++ {
		p, ok := byOrdinal[i]
		if !ok {
			if stopping[i] {
				// Never two copies of one ordinal: the new one waits for
				// the old to be gone.
				allReady = false
				if !parallel {
					break
				}
				continue
			}
			for k := range s.Spec.VolumeClaimTemplates {
				c := api.StatefulClaim(s, &s.Spec.VolumeClaimTemplates[k], i)
				if !claims[c.Metadata.Name] {
					plan.CreateClaims = append(plan.CreateClaims, c)
				}
			}
			plan.Create = append(plan.Create, api.StatefulPod(s, i, rev))
			allReady = false
			if !parallel {
				break
			}
			continue
		}
		if !healthy(p) {
			allReady = false
			if !parallel {
				break
			}
		}
	}
	// Scale down: the highest ordinal first; OrderedReady one at a time,
	// once every other pod is Running and Ready.
	var extra []int
	for i := range byOrdinal {
		if i < start || i >= start+n {
			extra = append(extra, i)
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(extra)))
	scaledDelete := func(i int) {
		plan.Delete = append(plan.Delete, byOrdinal[i].Metadata.Name)
		if r := s.Spec.PersistentVolumeClaimRetentionPolicy; r != nil && r.WhenScaled == "Delete" {
			for _, t := range s.Spec.VolumeClaimTemplates {
				plan.DeleteClaims = append(plan.DeleteClaims, api.ClaimName(t.Metadata.Name, s.Metadata.Name, i))
			}
		}
	}
	switch {
	case len(extra) == 0:
	case parallel:
		for _, i := range extra {
			scaledDelete(i)
		}
		return plan
	case allReady:
		scaledDelete(extra[0])
		return plan
	default:
		return plan
	}
	// Rolling update: from the highest ordinal down to the partition, one
	// pod at a time, once all are Running and Ready.
	if s.Spec.UpdateStrategy.Type != api.StrategyRollingUpdate || !allReady {
		return plan
	}
	partition := 0
	if ru := s.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil {
		partition = int(*ru.Partition)
	}
	for i := start + n - 1; i >= start+partition && i >= start; i-- {
		if p := byOrdinal[i]; p.Metadata.Labels[api.LabelControllerRevision] != rev {
			plan.Delete = append(plan.Delete, p.Metadata.Name)
			plan.Events = append(plan.Events, JobEvent{"Normal", "SuccessfulDelete",
				fmt.Sprintf("delete Pod %s in StatefulSet %s for the update to revision %s", p.Metadata.Name, s.Metadata.Name, rev)})
			break
		}
	}
	return plan
}

// StatefulSetStatus is the status of s the API shows.
func StatefulSetStatus(s *api.StatefulSet, pods []api.Pod) api.StatefulSetStatus {
	rev := statefulRevision(s)
	st := api.StatefulSetStatus{ObservedGeneration: s.Metadata.Generation, UpdateRevision: rev}
	revs := map[string]int{}
	for _, p := range pods {
		if _, ok := ordinalOfPod(s, &p); !ok {
			continue
		}
		st.Replicas++
		if reconcile.Ready(&p) {
			st.ReadyReplicas++
			st.AvailableReplicas++
		}
		r := p.Metadata.Labels[api.LabelControllerRevision]
		revs[r]++
		if r == rev {
			st.UpdatedReplicas++
		}
	}
	// The current revision: the update's once every pod has it, else the
	// one most pods still have.
	st.CurrentRevision = rev
	best := 0
	for r, k := range revs {
		if r != rev && (k > best || k == best && r < st.CurrentRevision) {
			st.CurrentRevision, best = r, k
		}
	}
	st.CurrentReplicas = int32(revs[st.CurrentRevision])
	return st
}
