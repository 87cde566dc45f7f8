package agent

import (
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/placement"
)

// Replicas that cannot run cost no pod objects: 200 deployments of 10,000
// replicas each that fit nowhere make a handful of pods each, the rest only
// counted, with the reason.
func TestPlanCountsReplicasThatCannotRun(t *testing.T) {
	nodes := []placement.Node{{Name: "n1", Labels: map[string]string{}, CPUMilli: 2000, MemBytes: 1 << 30},
		{Name: "n2", Labels: map[string]string{}, CPUMilli: 2000, MemBytes: 1 << 30}}
	var deps []*api.Deployment
	for i := range 200 {
		d := deployment(10000, "web:1", "25%", "25%")
		d.Metadata.Name = fmt.Sprintf("d%03d", i)
		switch i % 3 {
		case 0: // a selector no node matches
			d.Spec.Template.Spec.NodeSelector = map[string]string{"disk": "ssd"}
		case 1: // more CPU than any node has
			d.Spec.Template.Spec.Containers[0].Resources.Requests = map[string]string{"cpu": "4"}
		case 2: // no requests: bounded by the pods a peer takes
		}
		deps = append(deps, d)
	}
	desired, res, counted, reasons := plan(deps, nil, nil, map[string][]api.Pod{}, nodes, nil)
	if len(desired) > 2*maxPodsPerPeer+200 {
		t.Fatalf("%d pods made for replicas that cannot run", len(desired))
	}
	total := len(desired)
	for _, n := range counted {
		total += n
	}
	if total != 200*10000 {
		t.Fatalf("pods + counted = %d, want every replica", total)
	}
	if len(res.Assign) > 2*maxPodsPerPeer {
		t.Fatalf("%d pods placed on 2 peers", len(res.Assign))
	}
	for _, want := range []struct{ dep, why string }{{"d000", "node selector"}, {"d001", "Insufficient cpu"}, {"d002", "Too many pods"}, {"d005", "Too many pods"}} {
		if r := reasons["Deployment/default/"+want.dep]; !strings.Contains(r, want.why) {
			t.Errorf("%s pending because %q, want %q", want.dep, r, want.why)
		}
	}
}

// Measures what plan holds for replicas that cannot run: 200 deployments
// x 10,000 replicas whose selector matches no peer.
//
//	go test ./agent -run '^$' -bench PlanUnschedulable -benchmem
func BenchmarkPlanUnschedulable(b *testing.B) {
	nodes := []placement.Node{{Name: "n1", Labels: map[string]string{}}, {Name: "n2", Labels: map[string]string{}}, {Name: "n3", Labels: map[string]string{}}}
	var deps []*api.Deployment
	for i := range 200 {
		d := deployment(10000, "web:1", "25%", "25%")
		d.Metadata.Name = fmt.Sprintf("d%03d", i)
		d.Spec.Template.Spec.NodeSelector = map[string]string{"disk": "ssd"}
		deps = append(deps, d)
	}
	var ms runtime.MemStats
	peak := uint64(0)
	for b.Loop() {
		desired, _, _, _ := plan(deps, nil, nil, map[string][]api.Pod{}, nodes, nil)
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
		_ = desired
	}
	b.ReportMetric(float64(peak)/(1<<20), "heapMiB")
}
