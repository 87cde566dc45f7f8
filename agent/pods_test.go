package agent

import (
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/state"
)

// While a pod moves, the Kubernetes API shows the copy that serves.
func TestOnePodPerName(t *testing.T) {
	pod := func(name, node, phase string, ready bool) api.Pod {
		p := api.Pod{Metadata: api.ObjectMeta{Name: name, Namespace: "default"}, Spec: api.PodSpec{NodeName: node}}
		p.Status.Phase = phase
		if ready {
			p.Status.Conditions = []api.PodCondition{{Type: "Ready", Status: "True"}}
		}
		return p
	}
	got := onePodPerName([]api.Pod{
		pod("a", "p1", api.PodRunning, true), pod("a", "p2", api.PodRunning, false),
		pod("b", "p1", api.PodRunning, false), pod("b", "p2", api.PodRunning, true),
		pod("c", "", api.PodPending, false),
	})
	if len(got) != 3 || got[0].Spec.NodeName != "p1" || got[1].Spec.NodeName != "p2" || got[2].Metadata.Name != "c" {
		t.Fatalf("one pod per name: %+v", got)
	}
}

// A deployment's pods are served controlled by their ReplicaSet, a daemon
// set's by it; a pod that has owners keeps them.
func TestWithControllers(t *testing.T) {
	s := newTestStore(t, "a")
	objs := decodeAll(t, `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: c, image: web:1}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agentd}
spec:
  selector: {matchLabels: {app: agentd}}
  template:
    metadata: {labels: {app: agentd}}
    spec: {containers: [{name: c, image: web:1}]}
`)
	if _, err := s.Apply(objs, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	d, _ := s.Get(state.Key(api.KindDeployment, "default", "web"))
	ds, _ := s.Get(state.Key(api.KindDaemonSet, "default", "agentd"))
	a := &Agent{store: s}
	meta := func(name string, labels map[string]string, refs ...api.OwnerReference) api.Pod {
		return api.Pod{Metadata: api.ObjectMeta{Name: name, Namespace: "default", Labels: labels, OwnerReferences: refs}}
	}
	pods := a.withControllers([]api.Pod{
		meta("web-h1-0", map[string]string{api.LabelDeployment: "web", api.LabelTemplateHash: "h1"}),
		meta("agentd-h2-a", map[string]string{api.LabelDaemonSet: "agentd"}),
		meta("job-x", nil, api.OwnerReference{Kind: "Job", Name: "x", UID: "u"}),
		meta("bare", nil),
	})
	if r := pods[0].Metadata.OwnerReferences; len(r) != 1 || r[0].Kind != "ReplicaSet" || r[0].Name != "web-h1" ||
		r[0].UID != uidFrom(d.Meta().UID, "h1") || r[0].Controller == nil || !*r[0].Controller {
		t.Errorf("deployment pod's owners: %+v", r)
	}
	if r := pods[1].Metadata.OwnerReferences; len(r) != 1 || r[0].Kind != "DaemonSet" || r[0].UID != ds.Meta().UID {
		t.Errorf("daemon pod's owners: %+v", r)
	}
	if r := pods[2].Metadata.OwnerReferences; len(r) != 1 || r[0].Kind != "Job" {
		t.Errorf("job pod's owners: %+v", r)
	}
	if r := pods[3].Metadata.OwnerReferences; len(r) != 0 {
		t.Errorf("bare pod's owners: %+v", r)
	}
}
