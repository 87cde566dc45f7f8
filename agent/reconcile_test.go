package agent

import (
	"fmt"
	"testing"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/placement"
	"github.com/chorus-sh/chorus/state"
	"pgregory.net/rapid"
)

// A rolling update simulated step by step over several peers: each step
// runs what plan places (new pods are Ready at the next step), and no pod
// ever changes peer during its life; at the end the pods are where a plain
// placement of the final set puts them, so nothing moves afterwards.
func TestRolloutMovesNoPod(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nodes := make([]placement.Node, rapid.IntRange(1, 7).Draw(t, "nodes"))
		for i := range nodes {
			nodes[i] = placement.Node{Name: fmt.Sprintf("n%d", i), Labels: map[string]string{}}
		}
		replicas := int32(rapid.IntRange(1, 12).Draw(t, "replicas"))
		surge := rapid.SampledFrom([]string{"0", "1", "25%", "50%"}).Draw(t, "surge")
		unavail := rapid.SampledFrom([]string{"0", "1", "25%"}).Draw(t, "unavailable")
		other := deployment(int32(rapid.IntRange(0, 8).Draw(t, "other")), "db:1", "25%", "25%")
		other.Metadata.Name = "db"
		other.Spec.Template.Metadata.Labels = map[string]string{"app": "db"}

		d := deployment(replicas, "web:1", surge, unavail)
		running := map[string]api.Pod{} // pod key -> pod as it runs, Spec.NodeName set
		node := map[string]string{}     // pod key -> the peer it was ever placed on
		step := func(deps []*api.Deployment) {
			byDeploy := map[string][]api.Pod{}
			for _, p := range running {
				dk := state.Key(api.KindDeployment, p.Metadata.Namespace, p.Metadata.Labels[api.LabelDeployment])
				byDeploy[dk] = append(byDeploy[dk], p)
			}
			desired, res, _, _ := plan(deps, nil, nil, byDeploy, nodes, nil)
			next := map[string]api.Pod{}
			for _, p := range desired {
				k := podKey(&p)
				n := res.Assign[k]
				if n == "" {
					t.Fatalf("pod %s pending", k)
				}
				if was, ok := node[k]; ok && was != n {
					t.Fatalf("pod %s moved from %s to %s", k, was, n)
				}
				node[k] = n
				p.Spec.NodeName = n
				p.Status.Conditions = []api.PodCondition{{Type: "Ready", Status: "True"}}
				next[k] = p
			}
			running = next
		}
		step([]*api.Deployment{d, other})
		step([]*api.Deployment{d, other})
		d = deployment(replicas, "web:2", surge, unavail)
		for i := 0; i < 3*int(replicas)+5; i++ {
			step([]*api.Deployment{d, other})
		}
		final := append(api.PodsForDeployment(d), api.PodsForDeployment(other)...)
		if len(running) != len(final) {
			t.Fatalf("rollout did not finish: %d pods run, want %d", len(running), len(final))
		}
		plain := placement.Assign(nodes, replicasOf(final), placement.Options{LoadFactor: 0.25})
		for k, p := range running {
			if plain.Assign[k] != p.Spec.NodeName {
				t.Fatalf("after the rollout %s runs on %s, plain placement says %s", k, p.Spec.NodeName, plain.Assign[k])
			}
		}
	})
}

// With requests that leave no room for old and new pods on one peer, the
// surge pod goes where there is room instead of waiting for its pin: the
// rollout finishes.
func TestRolloutWithTightCapacityFinishes(t *testing.T) {
	nodes := []placement.Node{{Name: "n0", CPUMilli: 1000}, {Name: "n1", CPUMilli: 1000}, {Name: "n2", CPUMilli: 1000}}
	withCPU := func(image string) *api.Deployment {
		d := deployment(2, image, "1", "0")
		d.Spec.Template.Spec.Containers[0].Resources.Requests = map[string]string{"cpu": "600m"}
		return d
	}
	running := map[string]api.Pod{}
	step := func(d *api.Deployment) {
		byDeploy := map[string][]api.Pod{}
		for _, p := range running {
			byDeploy[state.Key(api.KindDeployment, "default", "web")] = append(byDeploy[state.Key(api.KindDeployment, "default", "web")], p)
		}
		desired, res, _, _ := plan([]*api.Deployment{d}, nil, nil, byDeploy, nodes, nil)
		next := map[string]api.Pod{}
		for _, p := range desired {
			if n := res.Assign[podKey(&p)]; n != "" {
				p.Spec.NodeName = n
				p.Status.Conditions = []api.PodCondition{{Type: "Ready", Status: "True"}}
				next[podKey(&p)] = p
			} else if old, ok := running[podKey(&p)]; ok {
				next[podKey(&p)] = old
			}
		}
		running = next
	}
	d := withCPU("web:1")
	for range 3 {
		step(d)
	}
	d = withCPU("web:2")
	for range 10 {
		step(d)
	}
	hash := api.TemplateHash(&d.Spec.Template)
	if len(running) != 2 {
		t.Fatalf("%d pods run after the rollout, want 2", len(running))
	}
	for k, p := range running {
		if p.Metadata.Labels[api.LabelTemplateHash] != hash {
			t.Fatalf("%s is still of the old template: the rollout stalled", k)
		}
	}
}

// The case, through plan: a deployment of k replicas on U peers,
// k <= U (one per peer), scaled to any m > k, keeps its k pods where they
// run, whatever its name and the peers' names (placement places ordinals in
// order, so the added ones come last; see placement's documentation).
func TestScaleUpMovesNoPod(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nodes := make([]placement.Node, rapid.IntRange(1, 7).Draw(t, "nodes"))
		prefix := rapid.StringMatching(`[a-z]{1,8}`).Draw(t, "peerPrefix")
		for i := range nodes {
			nodes[i] = placement.Node{Name: fmt.Sprintf("%s%d", prefix, i), Labels: map[string]string{}}
		}
		k := rapid.IntRange(1, len(nodes)).Draw(t, "before")
		m := rapid.IntRange(k+1, 25).Draw(t, "after")
		d := deployment(int32(k), "web:1", "25%", "25%")
		d.Metadata.Name = rapid.StringMatching(`[a-z]{1,10}`).Draw(t, "name")
		place := func() map[string]string {
			desired, res, _, _ := plan([]*api.Deployment{d}, nil, nil, nil, nodes, nil)
			out := map[string]string{}
			for _, p := range desired {
				out[p.Metadata.Name] = res.Assign[podKey(&p)]
			}
			return out
		}
		before := place()
		*d.Spec.Replicas = int32(m)
		after := place()
		if len(before) != k || len(after) != m {
			t.Fatalf("%d pods before, %d after; want %d, %d", len(before), len(after), k, m)
		}
		for name, n := range before {
			if after[name] != n {
				t.Fatalf("%s moved from %s to %s when scaling %d -> %d over %d peers", name, n, after[name], k, m, len(nodes))
			}
		}
	})
}
