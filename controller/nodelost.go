package controller

import (
	"fmt"

	"github.com/chorus-sh/chorus/api"
)

// NodeLost is the status of a pod whose peer is dead, from its last one:
// as Kubernetes' node lifecycle controller marks it, phase Unknown, reason
// NodeLost, not Ready. A pod that had ended keeps its final phase.
func NodeLost(last api.PodStatus, node string) api.PodStatus {
	if last.Phase == api.PodSucceeded || last.Phase == api.PodFailed {
		return last
	}
	st := last
	st.Phase, st.Reason = api.PodUnknown, "NodeLost"
	st.Message = fmt.Sprintf("peer %s which was running pod is unresponsive", node)
	st.Conditions = nil
	for _, c := range last.Conditions {
		if c.Type == "Ready" || c.Type == "ContainersReady" {
			c.Status = "False"
		}
		st.Conditions = append(st.Conditions, c)
	}
	if len(st.Conditions) == 0 {
		st.Conditions = []api.PodCondition{{Type: "PodScheduled", Status: "True"}, {Type: "Ready", Status: "False"}}
	}
	st.ContainerStatuses = append([]api.ContainerStatus(nil), last.ContainerStatuses...)
	for i := range st.ContainerStatuses {
		st.ContainerStatuses[i].Ready = false
	}
	return st
}
