package reconcile

import (
	"math"
	"sort"

	"github.com/chorus-sh/chorus/api"
)

// desiredPods is the pure reconcile diff of one deployment: given the
// deployment and the pods of it that exist now (with their statuses), it
// returns the pods that should run. It keeps a rolling update inside
// maxSurge and maxUnavailable: pods of older templates stay until enough
// pods of the new template are Ready, and no more new pods run than the
// surge allows.
func desiredPods(d *api.Deployment, current []api.Pod) []api.Pod {
	pods, _ := desiredPodsCapped(d, current, math.MaxInt)
	return pods
}

// desiredPodsCapped is desiredPods making pods for at most the first limit
// ordinals of the current template (see place); the rollout arithmetic
// still counts every replica. settled reports that no pod of another
// template runs: the pods returned are then those of the current template
// alone, what the deployment wants at the rollout's end.
func desiredPodsCapped(d *api.Deployment, current []api.Pod, limit int) (pods []api.Pod, settled bool) {
	n := 1
	if d.Spec.Replicas != nil {
		n = max(int(*d.Spec.Replicas), 0)
	}
	var want []api.Pod
	if limit < n {
		want = api.PodsForDeployment(withReplicas(d, max(limit, 0)))
	} else {
		want = api.PodsForDeployment(d)
	}
	hash := api.TemplateHash(&d.Spec.Template)
	newReady := 0
	wantNames := map[string]bool{}
	for _, p := range want {
		wantNames[p.Metadata.Name] = true
	}
	var old []api.Pod
	for _, p := range current {
		if p.Metadata.Labels[api.LabelTemplateHash] == hash {
			if wantNames[p.Metadata.Name] && Ready(&p) {
				newReady++
			}
			continue // same template: an ordinal beyond replicas is scaled away
		}
		old = append(old, p)
	}
	if len(old) == 0 {
		return want, true
	}
	if d.Spec.Paused {
		// A paused rollout stands still: the pods that run stay, old and new.
		return pausedPods(hash, want, current), false
	}
	sort.Slice(old, func(i, j int) bool { return old[i].Metadata.Name < old[j].Metadata.Name })

	surge, unavailable := 1, 0
	if d.Spec.Strategy.Type == "Recreate" {
		// Every old pod goes before any new pod starts.
		return nil, false
	}
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil {
		if ru.MaxSurge != nil {
			if v, err := ru.MaxSurge.ScaledValue(n, true); err == nil {
				surge = v
			}
		}
		if ru.MaxUnavailable != nil {
			if v, err := ru.MaxUnavailable.ScaledValue(n, false); err == nil {
				unavailable = v
			}
		}
	}
	if surge == 0 && unavailable == 0 {
		unavailable = 1
	}
	keepOld := min(len(old), max(0, n-unavailable-newReady))
	runNew := min(len(want), max(0, n+surge-keepOld))
	out := append([]api.Pod{}, want[:runNew]...)
	return append(out, old[:keepOld]...), false
}

// pausedPods keeps the pods of a paused deployment that run now: those of
// older templates as they are, and those of the current template that are
// still wanted (a scale down still applies to them).
func pausedPods(hash string, want, current []api.Pod) []api.Pod {
	wanted := map[string]api.Pod{}
	for _, p := range want {
		wanted[p.Metadata.Name] = p
	}
	var out []api.Pod
	seen := map[string]bool{}
	for _, p := range current {
		name := p.Metadata.Name
		if seen[name] {
			continue
		}
		if p.Metadata.Labels[api.LabelTemplateHash] == hash {
			w, ok := wanted[name]
			if !ok {
				continue
			}
			p = w
		}
		seen[name] = true
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Metadata.Name < out[j].Metadata.Name })
	return out
}
