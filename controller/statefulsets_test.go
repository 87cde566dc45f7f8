package controller

import (
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/chorus-sh/chorus/api"
)

func testSet(replicas int32, policy string) *api.StatefulSet {
	s := &api.StatefulSet{Metadata: api.ObjectMeta{Name: "db", Namespace: "default", UID: "s1"},
		Spec: api.StatefulSetSpec{Replicas: &replicas, ServiceName: "db", PodManagementPolicy: policy,
			Template: api.PodTemplateSpec{Metadata: api.ObjectMeta{Labels: map[string]string{"app": "db"}},
				Spec: api.PodSpec{Containers: []api.Container{{Name: "c", Image: "i:1"}}}},
			VolumeClaimTemplates: []api.PersistentVolumeClaim{{Metadata: api.ObjectMeta{Name: "data"},
				Spec: api.PersistentVolumeClaimSpec{AccessModes: []string{"ReadWriteOnce"},
					Resources: api.VolumeResourceRequirements{Requests: map[string]string{"storage": "1Gi"}}}}}}}
	api.SetDefaults(s)
	return s
}

func running(p api.Pod, node string) api.Pod {
	p.Spec.NodeName = node
	p.Status = api.PodStatus{Phase: api.PodRunning, Conditions: []api.PodCondition{{Type: "Ready", Status: "True"}}}
	return p
}

func podNames(pods []api.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, p.Metadata.Name)
	}
	return out
}

// OrderedReady: db-0 with its claim first, db-1 once db-0 is Running and
// Ready; scale down from the highest; a rolling update from the highest
// ordinal down to the partition, one pod at a time.
func TestPlanStatefulSetOrdered(t *testing.T) {
	s := testSet(3, "")
	stored := map[string]bool{}
	claims := map[string]bool{}
	plan := PlanStatefulSet(s, nil, stored, claims, nil)
	if !slices.Equal(podNames(plan.Create), []string{"db-0"}) || len(plan.CreateClaims) != 1 || plan.CreateClaims[0].Metadata.Name != "data-db-0" {
		t.Fatalf("first: %+v", plan)
	}
	p0 := plan.Create[0]
	if p0.Spec.Hostname != "db-0" || p0.Spec.Subdomain != "db" || p0.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != "data-db-0" {
		t.Fatalf("pod db-0: %+v", p0.Spec)
	}
	stored["db-0"], claims["data-db-0"] = true, true
	p0.Status.Phase = api.PodPending
	if plan := PlanStatefulSet(s, []api.Pod{p0}, stored, claims, nil); len(plan.Create) != 0 {
		t.Fatalf("db-0 not ready yet: %+v", plan)
	}
	pods := []api.Pod{running(p0, "n1")}
	plan = PlanStatefulSet(s, pods, stored, claims, nil)
	if !slices.Equal(podNames(plan.Create), []string{"db-1"}) {
		t.Fatalf("db-0 ready: %+v", plan)
	}
	for _, p := range plan.Create {
		stored[p.Metadata.Name] = true
		pods = append(pods, running(p, "n2"))
	}
	pods = append(pods, running(PlanStatefulSet(s, pods, stored, claims, nil).Create[0], "n3"))
	stored["db-2"] = true
	// Rolling update with partition 1: db-2, then db-1; db-0 stays.
	s.Spec.Template.Spec.Containers[0].Image = "i:2"
	s.Spec.UpdateStrategy.RollingUpdate.Partition = ptrTo[int32](1)
	if plan := PlanStatefulSet(s, pods, stored, claims, nil); !slices.Equal(plan.Delete, []string{"db-2"}) {
		t.Fatalf("update: %+v", plan.Delete)
	}
	pods[2] = running(api.StatefulPod(s, 2, statefulRevision(s)), "n3")
	if plan := PlanStatefulSet(s, pods, stored, claims, nil); !slices.Equal(plan.Delete, []string{"db-1"}) {
		t.Fatalf("update, db-2 done: %+v", plan.Delete)
	}
	pods[1] = running(api.StatefulPod(s, 1, statefulRevision(s)), "n2")
	if plan := PlanStatefulSet(s, pods, stored, claims, nil); len(plan.Delete) != 0 {
		t.Fatalf("partition 1 keeps db-0: %+v", plan.Delete)
	}
	if st := StatefulSetStatus(s, pods); st.UpdatedReplicas != 2 || st.ReadyReplicas != 3 || st.CurrentRevision == st.UpdateRevision {
		t.Fatalf("status %+v", st)
	}
	// Scale to 1: db-2 first, then db-1.
	s.Spec.Replicas = ptrTo[int32](1)
	if plan := PlanStatefulSet(s, pods, stored, claims, nil); !slices.Equal(plan.Delete, []string{"db-2"}) {
		t.Fatalf("scale down: %+v", plan.Delete)
	}
}

// A pod whose peer is dead is not replaced; once the peer left, it is
// deleted (and made again at the next pass, bound to its claim's peer).
func TestPlanStatefulSetLostPod(t *testing.T) {
	s := testSet(2, "")
	stored := map[string]bool{"db-0": true, "db-1": true}
	claims := map[string]bool{"data-db-0": true, "data-db-1": true}
	lost := running(api.StatefulPod(s, 1, statefulRevision(s)), "n2")
	lost.Status = NodeLost(lost.Status, "n2")
	pods := []api.Pod{running(api.StatefulPod(s, 0, statefulRevision(s)), "n1"), lost}
	if plan := PlanStatefulSet(s, pods, stored, claims, nil); len(plan.Delete)+len(plan.Create) != 0 {
		t.Fatalf("peer dead: %+v", plan)
	}
	plan := PlanStatefulSet(s, pods, stored, claims, map[string]bool{"n2": true})
	if !slices.Equal(plan.Delete, []string{"db-1"}) || len(plan.Create) != 0 {
		t.Fatalf("peer gone: %+v", plan)
	}
}

// Whatever the pods' states, a plan never makes a pod of an ordinal that
// is stored or still stopping, and makes each at most once.
func TestPlanStatefulSetNeverTwice(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		policy := rapid.SampledFrom([]string{api.PodManagementOrderedReady, api.PodManagementParallel}).Draw(t, "policy")
		s := testSet(rapid.Int32Range(0, 6).Draw(t, "replicas"), policy)
		stored := map[string]bool{}
		var pods []api.Pod
		for i := range 8 {
			switch rapid.IntRange(0, 4).Draw(t, "state") {
			case 0: // none
			case 1:
				pods = append(pods, running(api.StatefulPod(s, i, statefulRevision(s)), "n1"))
				stored[pods[len(pods)-1].Metadata.Name] = true
			case 2: // stopping
				pods = append(pods, running(api.StatefulPod(s, i, "old"), "n1"))
			case 3:
				p := api.StatefulPod(s, i, "old")
				p.Status = NodeLost(p.Status, "n2")
				p.Spec.NodeName = "n2"
				pods = append(pods, p)
				stored[p.Metadata.Name] = true
			case 4:
				p := api.StatefulPod(s, i, statefulRevision(s))
				p.Status.Phase = api.PodPending
				pods = append(pods, p)
				stored[p.Metadata.Name] = true
			}
		}
		gone := map[string]bool{"n2": rapid.Bool().Draw(t, "n2 gone")}
		plan := PlanStatefulSet(s, pods, stored, map[string]bool{}, gone)
		exists := map[string]bool{}
		for _, p := range pods {
			exists[p.Metadata.Name] = true
		}
		made := map[string]bool{}
		for _, p := range plan.Create {
			if exists[p.Metadata.Name] || made[p.Metadata.Name] {
				t.Fatalf("made %s, which exists or was made twice (pods %v)", p.Metadata.Name, podNames(pods))
			}
			made[p.Metadata.Name] = true
		}
	})
}
