package reconcile

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/placement"
	"pgregory.net/rapid"
)

// A rolling update simulated step by step over several peers: each step
// runs what place places (new pods are Ready at the next step), and no pod
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
		other := testDeployment("db", int32(rapid.IntRange(0, 8).Draw(t, "other")), "db:1", "25%", "25%")

		d := testDeployment("web", replicas, "web:1", surge, unavail)
		running := map[string]api.Pod{} // pod key -> pod as it runs, Spec.NodeName set
		node := map[string]string{}     // pod key -> the peer it was ever placed on
		step := func(deps []*api.Deployment) {
			byDeploy := map[string][]api.Pod{}
			for _, p := range running {
				dk := deploymentKey(p.Metadata.Namespace, p.Metadata.Labels[api.LabelDeployment])
				byDeploy[dk] = append(byDeploy[dk], p)
			}
			desired, res, _, _ := place(deps, nil, nil, byDeploy, nodes, nil)
			next := map[string]api.Pod{}
			for _, p := range desired {
				k := key(&p)
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
		d = testDeployment("web", replicas, "web:2", surge, unavail)
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
		d := testDeployment("web", 2, image, "1", "0")
		d.Spec.Template.Spec.Containers[0].Resources.Requests = map[string]string{"cpu": "600m"}
		return d
	}
	running := map[string]api.Pod{}
	step := func(d *api.Deployment) {
		byDeploy := map[string][]api.Pod{}
		for _, p := range running {
			byDeploy[deploymentKey("default", "web")] = append(byDeploy[deploymentKey("default", "web")], p)
		}
		desired, res, _, _ := place([]*api.Deployment{d}, nil, nil, byDeploy, nodes, nil)
		next := map[string]api.Pod{}
		for _, p := range desired {
			if n := res.Assign[key(&p)]; n != "" {
				p.Spec.NodeName = n
				p.Status.Conditions = []api.PodCondition{{Type: "Ready", Status: "True"}}
				next[key(&p)] = p
			} else if old, ok := running[key(&p)]; ok {
				next[key(&p)] = old
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

// The case, through place: a deployment of k replicas on U peers,
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
		d := testDeployment("web", int32(k), "web:1", "25%", "25%")
		d.Metadata.Name = rapid.StringMatching(`[a-z]{1,10}`).Draw(t, "name")
		place := func() map[string]string {
			desired, res, _, _ := place([]*api.Deployment{d}, nil, nil, nil, nodes, nil)
			out := map[string]string{}
			for _, p := range desired {
				out[p.Metadata.Name] = res.Assign[key(&p)]
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

// Replicas that cannot run cost no pod objects: 200 deployments of 10,000
// replicas each that fit nowhere make a handful of pods each, the rest only
// counted, with the reason.
func TestPlaceCountsReplicasThatCannotRun(t *testing.T) {
	nodes := []placement.Node{{Name: "n1", Labels: map[string]string{}, CPUMilli: 2000, MemBytes: 1 << 30},
		{Name: "n2", Labels: map[string]string{}, CPUMilli: 2000, MemBytes: 1 << 30}}
	var deps []*api.Deployment
	for i := range 200 {
		d := testDeployment("web", 10000, "web:1", "25%", "25%")
		d.Metadata.Name = fmt.Sprintf("d%03d", i)
		switch i % 3 {
		case 0: // a selector no node matches
			d.Spec.Template.Spec.NodeSelector = map[string]string{"disk": "ssd"}
		case 1: // more CPU than any node has
			d.Spec.Template.Spec.Containers[0].Resources.Requests = map[string]string{"cpu": "4"}
		case 2: // no requests: bounded by the pods a peer takes
		}
		deps = append(deps, d)
	}
	desired, res, counted, reasons := place(deps, nil, nil, map[string][]api.Pod{}, nodes, nil)
	if len(desired) > 2*maxPodsPerPeer+200 {
		t.Fatalf("%d pods made for replicas that cannot run", len(desired))
	}
	total := len(desired)
	for _, n := range counted {
		total += n
	}
	if total != 200*10000 {
		t.Fatalf("pods + counted = %d, want every replica", total)
	}
	if len(res.Assign) > 2*maxPodsPerPeer {
		t.Fatalf("%d pods placed on 2 peers", len(res.Assign))
	}
	for _, want := range []struct{ dep, why string }{{"d000", "node selector"}, {"d001", "Insufficient cpu"}, {"d002", "Too many pods"}, {"d005", "Too many pods"}} {
		if r := reasons["Deployment/default/"+want.dep]; !strings.Contains(r, want.why) {
			t.Errorf("%s pending because %q, want %q", want.dep, r, want.why)
		}
	}
}

// Measures what place holds for replicas that cannot run: 200 deployments
// x 10,000 replicas whose selector matches no peer.
//
//	go test ./reconcile -run '^$' -bench PlanUnschedulable -benchmem
func BenchmarkPlaceUnschedulable(b *testing.B) {
	nodes := []placement.Node{{Name: "n1", Labels: map[string]string{}}, {Name: "n2", Labels: map[string]string{}}, {Name: "n3", Labels: map[string]string{}}}
	var deps []*api.Deployment
	for i := range 200 {
		d := testDeployment("web", 10000, "web:1", "25%", "25%")
		d.Metadata.Name = fmt.Sprintf("d%03d", i)
		d.Spec.Template.Spec.NodeSelector = map[string]string{"disk": "ssd"}
		deps = append(deps, d)
	}
	var ms runtime.MemStats
	peak := uint64(0)
	for b.Loop() {
		desired, _, _, _ := place(deps, nil, nil, map[string][]api.Pod{}, nodes, nil)
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
		_ = desired
	}
	b.ReportMetric(float64(peak)/(1<<20), "heapMiB")
}

func drawNodes(t *rapid.T, label string) []placement.Node {
	nodes := make([]placement.Node, rapid.IntRange(0, 5).Draw(t, label))
	for i := range nodes {
		nodes[i] = placement.Node{Name: fmt.Sprintf("n%d", i),
			Labels:   map[string]string{"zone": rapid.SampledFrom([]string{"a", "b"}).Draw(t, label+"-zone")},
			Cordoned: rapid.IntRange(0, 3).Draw(t, label+"-cordoned") == 0,
			CPUMilli: int64(rapid.SampledFrom([]int{0, 1000, 2000}).Draw(t, label+"-cpu"))}
	}
	return nodes
}

func drawPod(t *rapid.T, name string, labels map[string]string) api.Pod {
	p := api.Pod{Metadata: api.ObjectMeta{Name: name, Namespace: "default", Labels: labels},
		Spec: api.PodSpec{Containers: []api.Container{{Name: "c", Image: "example/web:1"}}}}
	if cpu := rapid.SampledFrom([]string{"", "500m", "1"}).Draw(t, name+"-cpu"); cpu != "" {
		p.Spec.Containers[0].Resources.Requests = api.ResourceList{"cpu": cpu}
	}
	if rapid.Bool().Draw(t, name+"-selector") {
		p.Spec.NodeSelector = map[string]string{"zone": rapid.SampledFrom([]string{"a", "b", "c"}).Draw(t, name+"-zone")}
	}
	return p
}

// Binding is the scheduler's: an unbound pod goes to a node it may run on
// (alive, not cordoned, matching its selector) or to none with a reason,
// the same whatever the order of the inputs; and a bound pod never changes
// node, whatever the cluster becomes.
func TestBindNodeProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nodes := drawNodes(t, "nodes")
		var others []api.Pod
		for i := range rapid.IntRange(0, 8).Draw(t, "others") {
			labels := map[string]string{}
			if rapid.Bool().Draw(t, "deployment") {
				labels[api.LabelDeployment] = "web"
			}
			o := drawPod(t, fmt.Sprintf("o-%d", i), labels)
			if len(labels) == 0 && rapid.Bool().Draw(t, "bound") {
				o.Spec.NodeName = fmt.Sprintf("n%d", rapid.IntRange(0, 6).Draw(t, "node"))
			}
			others = append(others, o)
		}
		p := drawPod(t, "p", nil)

		node, why := BindNode(&p, others, nodes)
		if node == "" {
			if why == "" {
				t.Fatalf("unbound without a reason")
			}
		} else {
			i := slices.IndexFunc(nodes, func(n placement.Node) bool { return n.Name == node })
			if i < 0 || nodes[i].Cordoned || len(p.Spec.NodeSelector) > 0 && !api.SelectorMatches(p.Spec.NodeSelector, nodes[i].Labels) {
				t.Fatalf("bound to %q, which it may not run on (nodes %+v)", node, nodes)
			}
		}
		rn, ro := slices.Clone(nodes), slices.Clone(others)
		slices.Reverse(rn)
		slices.Reverse(ro)
		if n2, _ := BindNode(&p, ro, rn); n2 != node {
			t.Fatalf("bound to %q, and to %q with the inputs reversed", node, n2)
		}
		if node == "" {
			return
		}
		p.Spec.NodeName = node
		later := drawNodes(t, "later") // peers died, were cordoned, joined
		if n, why := BindNode(&p, others, later); n != node || why != "" {
			t.Fatalf("a pod bound to %s is bound again to %q (%s)", node, n, why)
		}
	})
}

// A daemon set has one pod per schedulable peer its selector matches,
// pinned there: none on a cordoned peer.
func TestDaemonPods(t *testing.T) {
	nodes := []placement.Node{
		{Name: "n0", Labels: map[string]string{"zone": "a"}},
		{Name: "n1", Labels: map[string]string{"zone": "b"}},
		{Name: "n2", Labels: map[string]string{"zone": "a"}, Cordoned: true},
		{Name: "n3", Labels: map[string]string{}},
	}
	on := func(pods []api.Pod) []string {
		var out []string
		for _, p := range pods {
			if p.Metadata.Labels[api.LabelDaemonSet] != "agent" || p.Spec.NodeName == "" {
				t.Fatalf("daemon pod %s: labels %v, node %q", p.Metadata.Name, p.Metadata.Labels, p.Spec.NodeName)
			}
			out = append(out, p.Spec.NodeName)
		}
		return out
	}
	if got := on(DaemonPods(testDaemonSet("agent", "agent:1", nil), nodes)); !slices.Equal(got, []string{"n0", "n1", "n3"}) {
		t.Errorf("no selector: on %v, want every schedulable peer", got)
	}
	if got := on(DaemonPods(testDaemonSet("agent", "agent:1", map[string]string{"zone": "a"}), nodes)); !slices.Equal(got, []string{"n0"}) {
		t.Errorf("zone=a: on %v, want [n0]", got)
	}
	if got := DaemonPods(testDaemonSet("agent", "agent:1", map[string]string{"zone": "c"}), nodes); len(got) != 0 {
		t.Errorf("a selector no peer matches: %d pods", len(got))
	}
	// Placed by place, each runs on its peer, also when placement's
	// spread would rather go elsewhere.
	desired, res, _, _ := place(nil, []*api.DaemonSet{testDaemonSet("agent", "agent:1", nil)}, nil, nil, nodes, nil)
	for _, p := range desired {
		if res.Assign[key(&p)] != p.Spec.NodeName {
			t.Errorf("%s placed on %q, pinned to %s", p.Metadata.Name, res.Assign[key(&p)], p.Spec.NodeName)
		}
	}
}

// While a deployment rolls out, pinRollouts pins its pods of older
// templates to the peer that runs them (if it is alive, schedulable and
// still matches their selector), and every other deployment pod to the
// peer the finished rollouts give it; daemon pods are left as they are.
func TestPinRollouts(t *testing.T) {
	nodes := []placement.Node{{Name: "n0", Labels: map[string]string{"disk": "ssd"}}, {Name: "n1", Labels: map[string]string{}},
		{Name: "n2", Labels: map[string]string{}, Cordoned: true}}
	web := testDeployment("web", 3, "web:2", "1", "0")
	hash := api.TemplateHash(&web.Spec.Template)
	old := func(name, node string, sel map[string]string) api.Pod {
		return api.Pod{Metadata: api.ObjectMeta{Namespace: "default", Name: name,
			Labels: map[string]string{api.LabelDeployment: "web", api.LabelTemplateHash: "old"}},
			Spec: api.PodSpec{NodeName: node, NodeSelector: sel}}
	}
	fresh := api.PodsForDeployment(web)[0]
	db := api.PodsForDeployment(testDeployment("db", 1, "db:1", "1", "0"))[0]
	daemon := api.DaemonPod(testDaemonSet("agent", "agent:1", nil), "n1")
	desired := []api.Pod{
		old("web-old-0", "n0", nil),                              // pinned to n0
		old("web-old-1", "n2", nil),                              // its peer is cordoned: free
		old("web-old-2", "n1", map[string]string{"disk": "ssd"}), // n1 no longer matches: free
		old("web-old-3", "gone", nil),                            // its peer is not alive: free
		fresh,                                                    // the new template: where the finished rollout puts it
		db,                                                       // another deployment: where it is at the end
		daemon,                                                   // pinned already
	}
	replicas := replicasOf(desired)
	target := placement.Result{Assign: map[string]string{key(&fresh): "n1", key(&db): "n0", key(&daemon): "n0"}}
	pinned := pinRollouts(desired, replicas, map[string]string{deploymentKey("default", "web"): hash}, nodes, target)
	if want := []int{0, 4, 5}; !slices.Equal(pinned, want) {
		t.Fatalf("pinned %v, want %v", pinned, want)
	}
	for i, want := range []string{"n0", "", "", "", "n1", "n0", "n1"} {
		if replicas[i].Pin != want {
			t.Errorf("%s pinned to %q, want %q", desired[i].Metadata.Name, replicas[i].Pin, want)
		}
	}
}

// samePodNames and withReplicas, which decide whether a deployment is
// mid-rollout.
func TestRolloutHelpers(t *testing.T) {
	d := testDeployment("web", 3, "web:1", "1", "0")
	two := withReplicas(d, 2)
	if *two.Spec.Replicas != 2 || *d.Spec.Replicas != 3 {
		t.Fatalf("withReplicas: %d, original %d", *two.Spec.Replicas, *d.Spec.Replicas)
	}
	a, b := api.PodsForDeployment(d), api.PodsForDeployment(two)
	if !samePodNames(a, slices.Clone(a)) || samePodNames(a, b) {
		t.Fatal("samePodNames")
	}
	if ordinalOf(a[2].Metadata.Name) != 2 || ordinalOf("web") != -1 {
		t.Fatal("ordinalOf")
	}
}
