package agent

import (
	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/reconcile"
)

// The statuses of deployments and daemon sets, computed when they are read
// from the pods the cluster runs.

// podReady reports whether the pod's Ready condition is True.
func podReady(p *api.Pod) bool { return reconcile.Ready(p) }

// deploymentStatus aggregates a deployment's status from its pods.
func deploymentStatus(d *api.Deployment, pods []api.Pod) api.DeploymentStatus {
	st := api.DeploymentStatus{ObservedGeneration: d.Metadata.Generation}
	st.Replicas, st.UpdatedReplicas, st.ReadyReplicas = countPods(pods, api.TemplateHash(&d.Spec.Template))
	st.AvailableReplicas = st.ReadyReplicas
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st.UnavailableReplicas = max(0, want-st.AvailableReplicas)
	return st
}

// daemonSetStatus aggregates a daemon set's status from its pods.
func (a *Agent) daemonSetStatus(ds *api.DaemonSet, pods []api.Pod) api.DaemonSetStatus {
	st := api.DaemonSetStatus{ObservedGeneration: ds.Metadata.Generation}
	st.DesiredNumberScheduled = int32(len(reconcile.DaemonPods(ds, a.placementNodes())))
	var its []api.Pod
	for _, p := range pods {
		if p.Metadata.Namespace == ds.Metadata.Namespace && p.Metadata.Labels[api.LabelDaemonSet] == ds.Metadata.Name {
			its = append(its, p)
		}
	}
	st.CurrentNumberScheduled, st.UpdatedNumberScheduled, st.NumberReady = countPods(its, api.TemplateHash(&ds.Spec.Template))
	st.NumberAvailable = st.NumberReady
	st.NumberUnavailable = max(0, st.DesiredNumberScheduled-st.NumberAvailable)
	return st
}

// countPods counts pods, those of template hash, and the Ready ones.
func countPods(pods []api.Pod, hash string) (all, updated, ready int32) {
	for _, p := range pods {
		all++
		if p.Metadata.Labels[api.LabelTemplateHash] == hash {
			updated++
		}
		if podReady(&p) {
			ready++
		}
	}
	return all, updated, ready
}
