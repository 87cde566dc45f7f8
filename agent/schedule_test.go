package agent

import (
	"fmt"
	"testing"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/placement"
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
				dk := objectKey(api.KindDeployment, p.Metadata.Namespace, p.Metadata.Labels[api.LabelDeployment])
				byDeploy[dk] = append(byDeploy[dk], p)
			}
			desired, res := plan(deps, nil, byDeploy, nodes)
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
