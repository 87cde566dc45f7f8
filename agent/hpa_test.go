package agent

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/autoscale"
)

func TestAutoscalerPods(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	pod := func(name, node string, labels map[string]string, ready bool) api.Pod {
		return api.Pod{
			Metadata: api.ObjectMeta{Namespace: "default", Name: name, Labels: labels},
			Spec: api.PodSpec{NodeName: node, Containers: []api.Container{
				{Name: "web", Resources: api.ResourceRequirements{Requests: api.ResourceList{"cpu": "200m", "memory": "64Mi"}}},
				{Name: "side"},
			}},
			Status: api.PodStatus{Phase: "Running", StartTime: &t0,
				Conditions: []api.PodCondition{{Type: "Ready", Status: map[bool]string{true: "True", false: "False"}[ready], LastTransitionTime: &t0}}},
		}
	}
	web := map[string]string{"app": "web"}
	pods := []api.Pod{
		pod("web-a", "p1", web, true),
		pod("web-a", "p2", web, false), // the same pod seen on two peers while it moves
		pod("web-b", "p2", web, false),
		pod("other", "p1", map[string]string{"app": "other"}, true),
	}
	metrics := []api.PodMetrics{{
		Metadata: api.ObjectMeta{Namespace: "default", Name: "web-a"}, Timestamp: t0, Window: 5 * time.Second,
		Containers: []api.ContainerMetrics{
			{Name: "web", Usage: map[string]api.Quantity{"cpu": "150000000n", "memory": "32Mi"}},
			{Name: "side", Usage: map[string]api.Quantity{"cpu": "1m", "memory": "1Mi"}},
		},
	}}
	got := autoscalerPods(pods, metrics, "default", &api.LabelSelector{MatchLabels: web})
	if len(got) != 2 {
		t.Fatalf("want web-a and web-b, got %+v", got)
	}
	a, b := got[0], got[1]
	if a.Name != "web-a" || !a.Ready || !a.HasMetrics || a.Window != 5*time.Second || !a.ReadyChanged.Equal(t0) {
		t.Fatalf("web-a: %+v", a)
	}
	if c := a.Containers[0]; c.Requests["cpu"] != 200 || c.Requests["memory"] != 64<<20 || c.Usage["cpu"] != 150 || c.Usage["memory"] != 32<<20 {
		t.Fatalf("web-a's web container: %+v", c)
	}
	if _, ok := a.Containers[1].Requests["cpu"]; ok {
		t.Fatalf("a container without requests got one: %+v", a.Containers[1])
	}
	if b.Name != "web-b" || b.Ready || b.HasMetrics {
		t.Fatalf("web-b: %+v", b)
	}
}

func TestHPAProgressRoundTrip(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	p := hpaProgress{
		History: autoscale.History{Recommendations: []autoscale.Recommendation{{Time: t0, Replicas: 3}},
			ScaleUp: []autoscale.ScaleEvent{{Time: t0, Change: 2}}},
		Status:  &api.HPAStatus{CurrentReplicas: 1, DesiredReplicas: 3, LastScaleTime: &t0},
		Decided: t0,
	}
	fields := map[string]json.RawMessage{}
	for f, v := range map[string]any{"spec.uid": "u1", "spec.history": p.History, "spec.status": p.Status, "spec.decided": p.Decided} {
		fields[f], _ = json.Marshal(v)
	}
	got := readHPAProgress(fields, "u1")
	if !got.Decided.Equal(t0) || got.Status == nil || got.Status.DesiredReplicas != 3 || len(got.History.Recommendations) != 1 || got.History.ScaleUp[0].Change != 2 {
		t.Fatalf("read back %+v", got)
	}
	if other := readHPAProgress(fields, "u2"); other.Status != nil || !other.Decided.IsZero() {
		t.Fatalf("the progress of another HPA of the same name was read: %+v", other)
	}
}
