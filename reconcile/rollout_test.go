package reconcile

import (
	"fmt"
	"testing"

	"github.com/chorus-sh/chorus/api"
	"pgregory.net/rapid"
)

func withReady(pods []api.Pod, ready bool) []api.Pod {
	out := make([]api.Pod, len(pods))
	for i, p := range pods {
		s := "False"
		if ready {
			s = "True"
		}
		p.Status.Conditions = []api.PodCondition{{Type: "Ready", Status: s}}
		out[i] = p
	}
	return out
}

func TestDesiredPodsFreshDeployment(t *testing.T) {
	d := testDeployment("web", 3, "web:1", "25%", "25%")
	got := desiredPods(d, nil)
	if len(got) != 3 {
		t.Fatalf("got %d pods, want 3", len(got))
	}
	for i, p := range got {
		if want := api.PodName("web", api.TemplateHash(&d.Spec.Template), i); p.Metadata.Name != want {
			t.Errorf("pod %d named %s, want %s", i, p.Metadata.Name, want)
		}
	}
}

func TestDesiredPodsScaleDown(t *testing.T) {
	d := testDeployment("web", 5, "web:1", "25%", "25%")
	running := withReady(desiredPods(d, nil), true)
	*d.Spec.Replicas = 2
	got := desiredPods(d, running)
	if len(got) != 2 {
		t.Fatalf("got %d pods after scaling to 2", len(got))
	}
}

// TestRollingUpdateBounds simulates a rollout step by step: at every step
// the pods kept never exceed replicas+maxSurge, the Ready pods never drop
// below replicas-maxUnavailable, and the rollout finishes with only new pods.
func TestRollingUpdateBounds(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 12).Draw(t, "replicas")
		surgePct := rapid.SampledFrom([]string{"0%", "25%", "50%", "100%"}).Draw(t, "surge")
		unavPct := rapid.SampledFrom([]string{"0%", "25%", "50%"}).Draw(t, "unavailable")
		old := testDeployment("web", int32(n), "web:1", surgePct, unavPct)
		running := withReady(desiredPods(old, nil), true)
		d := testDeployment("web", int32(n), "web:2", surgePct, unavPct)
		surge, _ := d.Spec.Strategy.RollingUpdate.MaxSurge.ScaledValue(n, true)
		unav, _ := d.Spec.Strategy.RollingUpdate.MaxUnavailable.ScaledValue(n, false)
		if surge == 0 && unav == 0 {
			unav = 1
		}
		newHash := api.TemplateHash(&d.Spec.Template)
		for step := 0; step < 4*n+4; step++ {
			want := desiredPods(d, running)
			if len(want) > n+surge {
				t.Fatalf("step %d: %d pods wanted, above %d+%d", step, len(want), n, surge)
			}
			// Pods kept stay as they are; new ones come up Ready at the next step.
			byName := map[string]api.Pod{}
			for _, p := range running {
				byName[p.Metadata.Name] = p
			}
			var next []api.Pod
			ready := 0
			for _, p := range want {
				if cur, ok := byName[p.Metadata.Name]; ok {
					p = cur
				} else {
					p = withReady([]api.Pod{p}, false)[0]
				}
				if Ready(&p) {
					ready++
				}
				next = append(next, p)
			}
			if ready < n-unav {
				t.Fatalf("step %d: %d ready, below %d-%d", step, ready, n, unav)
			}
			running = withReady(next, true)
			done := len(running) == n
			for _, p := range running {
				done = done && p.Metadata.Labels[api.LabelTemplateHash] == newHash
			}
			if done {
				return
			}
		}
		t.Fatalf("rollout of %d replicas (surge %s, unavailable %s) did not finish: %v", n, surgePct, unavPct, names(running))
	})
}

func names(pods []api.Pod) []string {
	var out []string
	for _, p := range pods {
		out = append(out, fmt.Sprintf("%s(%v)", p.Metadata.Name, Ready(&p)))
	}
	return out
}

func TestRecreateWaitsForOldPods(t *testing.T) {
	old := testDeployment("web", 3, "web:1", "25%", "25%")
	running := withReady(desiredPods(old, nil), true)
	d := testDeployment("web", 3, "web:2", "25%", "25%")
	d.Spec.Strategy = api.DeploymentStrategy{Type: "Recreate"}
	if got := desiredPods(d, running); len(got) != 0 {
		t.Fatalf("Recreate kept %d pods while old ones run", len(got))
	}
	if got := desiredPods(d, nil); len(got) != 3 {
		t.Fatalf("Recreate started %d pods once old ones were gone", len(got))
	}
}

func TestPausedRolloutStandsStill(t *testing.T) {
	d := testDeployment("web", 3, "web:1", "25%", "25%")
	running := withReady(desiredPods(d, nil), true)
	d.Spec.Template.Spec.Containers[0].Image = "web:2"
	d.Spec.Paused = true
	got := desiredPods(d, running)
	if len(got) != 3 {
		t.Fatalf("paused: %d pods", len(got))
	}
	for i, p := range got {
		if p.Metadata.Name != running[i].Metadata.Name {
			t.Fatalf("paused rollout changed pod %d: %s", i, p.Metadata.Name)
		}
	}
	d.Spec.Paused = false
	if moved := desiredPods(d, running); len(moved) == 3 && moved[0].Metadata.Name == running[0].Metadata.Name {
		t.Fatal("resumed rollout does not start new pods")
	}
}
