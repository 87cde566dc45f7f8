package controller

import (
	"testing"

	"github.com/chorus-sh/chorus/api"
)

// A pod whose peer is dead keeps its last status, as Unknown/NodeLost and
// not Ready; one that had ended keeps its final phase.
func TestNodeLost(t *testing.T) {
	last := api.PodStatus{Phase: api.PodRunning, PodIP: "10.0.0.5",
		Conditions:        []api.PodCondition{{Type: "PodScheduled", Status: "True"}, {Type: "Ready", Status: "True"}},
		ContainerStatuses: []api.ContainerStatus{{Name: "c", Ready: true}}}
	st := NodeLost(last, "p2")
	if st.Phase != api.PodUnknown || st.Reason != "NodeLost" || st.PodIP != "10.0.0.5" || st.ContainerStatuses[0].Ready {
		t.Fatalf("NodeLost = %+v", st)
	}
	if (&api.Pod{Status: st}).Status.Conditions[1].Status != "False" || !last.ContainerStatuses[0].Ready || last.Conditions[1].Status != "True" {
		t.Fatalf("Ready not False, or the last status changed: %+v / %+v", st, last)
	}
	done := api.PodStatus{Phase: api.PodSucceeded}
	if NodeLost(done, "p2").Phase != api.PodSucceeded {
		t.Fatalf("an ended pod lost its phase")
	}
	if st := NodeLost(api.PodStatus{}, "p2"); st.Phase != api.PodUnknown || len(st.Conditions) == 0 {
		t.Fatalf("no last status: %+v", st)
	}
}
