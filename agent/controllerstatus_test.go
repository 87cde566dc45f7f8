package agent

import (
	"testing"

	"github.com/chorus-sh/chorus/api"
)

// A deployment's status counts its pods, those of its current template
// and the Ready ones.
func TestDeploymentStatus(t *testing.T) {
	d := deployment(3, "web:1", "1", "0")
	old := deployment(3, "web:0", "1", "0")
	pods := append(api.PodsForDeployment(d)[:2], api.PodsForDeployment(old)[0])
	pods[0].Status.Conditions = []api.PodCondition{{Type: "Ready", Status: "True"}}
	pods[2].Status.Conditions = []api.PodCondition{{Type: "Ready", Status: "True"}}
	st := deploymentStatus(d, pods)
	if st.Replicas != 3 || st.UpdatedReplicas != 2 || st.ReadyReplicas != 2 || st.AvailableReplicas != 2 || st.UnavailableReplicas != 1 {
		t.Fatalf("status %+v", st)
	}
}
