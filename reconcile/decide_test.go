package reconcile

import (
	"fmt"
	"slices"
	"testing"

	"pgregory.net/rapid"

	"github.com/chorus-sh/chorus/api"
)

func newPod(name, node string, ready bool) api.Pod {
	p := api.Pod{Metadata: api.ObjectMeta{Namespace: "default", Name: name,
		Labels: map[string]string{api.LabelDeployment: "web"}}}
	p.Spec.NodeName = node
	if ready {
		p.Status.Conditions = []api.PodCondition{{Type: "Ready", Status: "True"}}
	}
	return p
}

func keys(ps []api.Pod) []string {
	var out []string
	for _, p := range ps {
		out = append(out, key(&p))
	}
	return out
}

// The decisions of one pass, case by case.
func TestDecide(t *testing.T) {
	desired := []api.Pod{newPod("a", "", false), newPod("b", "", false), newPod("c", "", false), newPod("d", "", false)}
	alone := api.Pod{Metadata: api.ObjectMeta{Namespace: "default", Name: "solo"}}
	mineBound := api.Pod{Metadata: api.ObjectMeta{Namespace: "default", Name: "bound"}, Spec: api.PodSpec{NodeName: "n1"}}
	elsewhere := api.Pod{Metadata: api.ObjectMeta{Namespace: "default", Name: "far"}, Spec: api.PodSpec{NodeName: "n2"}}
	lost := api.Pod{Metadata: api.ObjectMeta{Namespace: "default", Name: "lost"}}
	d := placed{
		Pods:       append(desired, alone, mineBound, elsewhere, lost),
		Assign:     map[string]string{"default/a": "n1", "default/b": "n2", "default/c": "n2", "default/solo": "n1", "default/far": "n2", "default/bound": "n1"},
		Pending:    map[string]string{"default/d": "0/2 nodes are available", "default/lost": "no room"},
		Standalone: map[string]bool{"default/solo": true, "default/bound": true, "default/far": true, "default/lost": true},
	}
	local := []api.Pod{
		newPod("a", "n1", true),
		newPod("b", "n1", true),   // moved to n2, whose copy is not Ready yet: kept
		newPod("c", "n1", true),   // moved to n2, whose copy is Ready: stops
		newPod("x", "n1", true),   // no longer desired: stops
		newPod("far", "n1", true), // a standalone pod bound elsewhere: stops at once
	}
	cluster := append(slices.Clone(local), newPod("b", "n2", false), newPod("c", "n2", true))
	a := decide(d, Observed{Local: local, Cluster: cluster}, "n1")
	if got, want := keys(a.Run), []string{"default/a", "default/bound", "default/b"}; !slices.Equal(got, want) {
		t.Errorf("Run %q, want %q", got, want)
	}
	if want := []string{"default/b"}; !slices.Equal(a.Kept, want) {
		t.Errorf("Kept %q, want %q", a.Kept, want)
	}
	if got, want := keys(a.Bind), []string{"default/solo"}; !slices.Equal(got, want) {
		t.Errorf("Bind %q, want %q", got, want)
	}
	if want := []string{"default/c", "default/far", "default/x"}; !slices.Equal(a.Stop, want) {
		t.Errorf("Stop %q, want %q", a.Stop, want)
	}
	if got, want := keys(a.Pending), []string{"default/d", "default/lost"}; !slices.Equal(got, want) {
		t.Fatalf("Pending %q, want %q", got, want)
	}
	if c := a.Pending[0].Status.Conditions[0]; a.Pending[0].Status.Phase != api.PodPending || c.Reason != "Unschedulable" || c.Message != "0/2 nodes are available" {
		t.Errorf("pending pod %+v", a.Pending[0].Status)
	}

	// A copy that is not Ready here is not kept: nothing serves anyway.
	local[1].Status.Conditions = nil
	if a := decide(d, Observed{Local: local, Cluster: cluster}, "n1"); slices.Contains(a.Kept, "default/b") {
		t.Error("kept a copy that is not Ready")
	}
	// The owner gone (placement gave the pod to no peer): pending, not kept.
	delete(d.Assign, "default/b")
	local[1] = newPod("b", "n1", true)
	if a := decide(d, Observed{Local: local, Cluster: cluster}, "n1"); slices.Contains(a.Kept, "default/b") || !slices.Contains(keys(a.Pending), "default/b") {
		t.Errorf("unplaced pod: kept %q, pending %q", a.Kept, keys(a.Pending))
	}
}

func drawPlaced(t *rapid.T, peers []string, label string) placed {
	d := placed{Assign: map[string]string{}, Pending: map[string]string{}}
	for i := range rapid.IntRange(0, 12).Draw(t, label+"pods") {
		p := newPod(fmt.Sprintf("web-%d", i), "", false)
		d.Pods = append(d.Pods, p)
		if rapid.IntRange(0, 5).Draw(t, label+"fits") == 0 {
			d.Pending[key(&p)] = "no room"
		} else {
			d.Assign[key(&p)] = rapid.SampledFrom(peers).Draw(t, label+"peer")
		}
	}
	return d
}

// Once settled, every desired pod that fits runs on exactly one peer, its
// owner, and nothing else runs anywhere (deleted pods included); during a
// planned move (the placement changes, every peer alive) a pod that was
// Ready somewhere always has a Ready copy somewhere (make-before-break).
func TestDecideSettlesAndMakesBeforeBreak(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		peers := []string{"n0", "n1", "n2", "n3"}[:rapid.IntRange(1, 4).Draw(t, "peers")]
		var d placed // what the peers decide over
		c := &sim{peers: peers, runs: map[string]map[string]api.Pod{}, age: map[string]map[string]int{},
			readyAt: rapid.IntRange(0, 3).Draw(t, "readyAt"),
			plan:    func(peer string, o Observed) Actions { return decide(d, o, peer) }}
		settle := func() {
			for range c.readyAt + 3 {
				c.pass()
			}
			counts := map[string]int{}
			for _, peer := range peers {
				for k := range c.runs[peer] {
					counts[k]++
					if d.Assign[k] != peer {
						t.Fatalf("settled: %s runs on %s, placed on %q", k, peer, d.Assign[k])
					}
				}
			}
			for k := range d.Assign {
				if counts[k] != 1 {
					t.Fatalf("settled: %s runs on %d peers", k, counts[k])
				}
			}
		}
		d = drawPlaced(t, peers, "before")
		settle()
		// A planned move: some pods deleted, the others placed anew.
		moved := placed{Assign: map[string]string{}, Pending: d.Pending}
		for _, p := range d.Pods {
			k := key(&p)
			if rapid.IntRange(0, 4).Draw(t, "delete") == 0 {
				continue
			}
			moved.Pods = append(moved.Pods, p)
			if n, ok := d.Assign[k]; ok {
				moved.Assign[k] = n
				if rapid.Bool().Draw(t, "move") {
					moved.Assign[k] = rapid.SampledFrom(peers).Draw(t, "to")
				}
			}
		}
		wasReady := c.readyCopies()
		for k := range wasReady {
			if _, ok := moved.Assign[k]; !ok {
				delete(wasReady, k) // deleted: nothing to keep
			}
		}
		d = moved
		for range c.readyAt + 3 {
			c.pass()
			now := c.readyCopies()
			for k, n := range wasReady {
				if n > 0 && now[k] == 0 {
					t.Fatalf("%s had a Ready copy before the move and has none during it", k)
				}
			}
		}
		settle()
	})
}

// The order in which pods are observed changes nothing.
func TestDecideIgnoresOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		peers := []string{"n0", "n1", "n2"}
		d := drawPlaced(t, peers, "")
		var o Observed
		for _, p := range d.Pods {
			for _, peer := range peers {
				if rapid.IntRange(0, 2).Draw(t, "runs") == 0 {
					cp := newPod(p.Metadata.Name, peer, rapid.Bool().Draw(t, "ready"))
					if peer == "n0" {
						o.Local = append(o.Local, cp)
					}
					o.Cluster = append(o.Cluster, cp)
				}
			}
		}
		a := decide(d, o, "n0")
		shuffled := Observed{Local: slices.Clone(o.Local), Cluster: slices.Clone(o.Cluster)}
		slices.Reverse(shuffled.Local)
		slices.Reverse(shuffled.Cluster)
		b := decide(d, shuffled, "n0")
		ka, kb := keys(a.Run), keys(b.Run)
		slices.Sort(ka)
		slices.Sort(kb)
		if !slices.Equal(ka, kb) || !slices.Equal(a.Stop, b.Stop) || !slices.Equal(keys(a.Pending), keys(b.Pending)) {
			t.Fatalf("order changed the plan: run %q vs %q, stop %q vs %q", ka, kb, a.Stop, b.Stop)
		}
	})
}
