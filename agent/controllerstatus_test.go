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

// deployment is the Deployment "web" of namespace default, rolling with
// the surge and unavailability given.
func deployment(replicas int32, image string, surge, unavailable string) *api.Deployment {
	d := &api.Deployment{
		Metadata: api.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: api.DeploymentSpec{
			Replicas: &replicas,
			Selector: &api.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: api.PodTemplateSpec{
				Metadata: api.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:     api.PodSpec{Containers: []api.Container{{Name: "web", Image: image}}},
			},
		},
	}
	su, un := api.FromString(surge), api.FromString(unavailable)
	d.Spec.Strategy = api.DeploymentStrategy{Type: "RollingUpdate", RollingUpdate: &api.RollingUpdateDeployment{MaxSurge: &su, MaxUnavailable: &un}}
	return d
}
