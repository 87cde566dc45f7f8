package agent

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/runtime"
)

func TestPodMetricsOf(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	pt := func(sec int, nc, mem int64) runtime.Point {
		return runtime.Point{Time: t0.Add(time.Duration(sec) * time.Second), Window: 5 * time.Second, NanoCores: nc, Memory: mem}
	}
	series := []runtime.Series{
		{Namespace: "a", Pod: "web-1", Container: "app", Points: []runtime.Point{pt(0, 1e8, 1024), pt(5, 2e8, 2048)}},
		{Namespace: "a", Pod: "web-1", Container: "side", Points: []runtime.Point{pt(0, 5e7, 4096), pt(5, 5e7, 4096)}},
		{Namespace: "a", Pod: "fresh", Container: "app"}, // one sample only: no metrics yet
		{Namespace: "b", Pod: "db-0", Container: "db", Points: []runtime.Point{pt(5, 1e9, 1000)}},
	}
	pods := []api.Pod{{Metadata: api.ObjectMeta{Namespace: "a", Name: "web-1", Labels: map[string]string{"app": "web"}}}}
	got := podMetricsOf(series, pods, "")
	if len(got) != 2 || got[0].Metadata.Name != "web-1" || got[1].Metadata.Name != "db-0" {
		t.Fatalf("pods = %+v", got)
	}
	w := got[0]
	if w.Metadata.Labels["app"] != "web" || !w.Timestamp.Equal(t0.Add(5*time.Second)) || w.Window != 5*time.Second || len(w.Containers) != 2 {
		t.Fatalf("web-1 = %+v", w)
	}
	if c := w.Containers[0]; c.Name != "app" || c.Usage["cpu"] != "200000000n" || c.Usage["memory"] != "2Ki" {
		t.Fatalf("app = %+v", c)
	}
	if got := podMetricsOf(series, pods, "b"); len(got) != 1 || got[0].Metadata.Name != "db-0" {
		t.Fatalf("namespace b = %+v", got)
	}

	h := usageHistoryOf(series, runtime.Series{Points: []runtime.Point{pt(5, 2e9, 1<<30)}}, "a")
	web := h.Pods["a/web-1"]
	if len(web) != 2 || web[1].CPU != 250 || web[1].Mem != 2048+4096 || web[1].T != t0.Unix()+5 {
		t.Fatalf("web-1 history = %+v", web)
	}
	if len(h.Node) != 1 || h.Node[0].CPU != 2000 {
		t.Fatalf("node history = %+v", h.Node)
	}
	if _, ok := h.Pods["b/db-0"]; ok {
		t.Fatal("history of another namespace")
	}
}

func TestKubeMetricsShape(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 5, 0, time.UTC)
	p := api.PodMetrics{Metadata: api.ObjectMeta{Namespace: "a", Name: "web-1", Labels: map[string]string{"app": "web"}},
		Timestamp: t0, Window: 5002345 * time.Microsecond,
		Containers: []api.ContainerMetrics{{Name: "app", Usage: map[string]api.Quantity{"cpu": "5n", "memory": "1Ki"}}}}
	b, _ := json.Marshal(kubePodMetrics(p, t0))
	want := `{"apiVersion":"metrics.k8s.io/v1beta1","containers":[{"name":"app","usage":{"cpu":"5n","memory":"1Ki"}}],"kind":"PodMetrics",` +
		`"metadata":{"creationTimestamp":"2025-01-01T00:00:05Z","labels":{"app":"web"},"name":"web-1","namespace":"a"},"timestamp":"2025-01-01T00:00:05Z","window":"5.002s"}`
	if string(b) != want {
		t.Fatalf("PodMetrics:\n%s\nwant\n%s", b, want)
	}
	n := api.NodeMetrics{Metadata: api.ObjectMeta{Name: "n1"}, Timestamp: t0, Window: 5 * time.Second, Usage: map[string]api.Quantity{"cpu": "1n", "memory": "0"}}
	b, _ = json.Marshal(kubeNodeMetrics(n, t0))
	want = `{"apiVersion":"metrics.k8s.io/v1beta1","kind":"NodeMetrics","metadata":{"creationTimestamp":"2025-01-01T00:00:05Z","name":"n1"},` +
		`"timestamp":"2025-01-01T00:00:05Z","usage":{"cpu":"1n","memory":"0"},"window":"5s"}`
	if string(b) != want {
		t.Fatalf("NodeMetrics:\n%s\nwant\n%s", b, want)
	}
}
