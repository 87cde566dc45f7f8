package reconcile

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/placement"
)

// sim is a cluster of peers each running Plan (or plan, when set) at every
// pass, over the desired state (where a peer that binds a standalone pod records it, the
// first bind winning) and what every alive peer runs. A pod is Ready once
// its peer ran it for readyAt passes. A peer in gone has left: it is in no
// one's alive nodes, nobody sees its pods, but it still plans (with its
// own pods) until it runs nothing.
type sim struct {
	peers   []string
	cordon  map[string]bool
	gone    map[string]bool
	labels  map[string]map[string]string
	d       Desired
	runs    map[string]map[string]api.Pod // peer -> pod key -> pod
	age     map[string]map[string]int     // peer -> pod key -> passes run
	readyAt int
	last    map[string]Actions // each peer's actions at the last pass
	plan    func(peer string, o Observed) Actions
}

func (s *sim) nodes() []placement.Node {
	var out []placement.Node
	for _, p := range s.peers {
		if !s.gone[p] {
			out = append(out, placement.Node{Name: p, Labels: s.labels[p], Cordoned: s.cordon[p]})
		}
	}
	return out
}

func (s *sim) observed(peer string) Observed {
	o := Observed{Nodes: s.nodes()}
	for _, p := range s.peers {
		if s.gone[p] && p != peer {
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(s.runs[p])) {
			if p == peer {
				o.Local = append(o.Local, s.runs[p][k])
			}
			o.Cluster = append(o.Cluster, s.runs[p][k])
		}
	}
	slices.SortStableFunc(o.Cluster, func(a, b api.Pod) int { return strings.Compare(key(&a), key(&b)) })
	return o
}

// pass runs one reconcile pass on every peer: each plans over what the
// others ran before the pass, binds, then runs its pods.
func (s *sim) pass() {
	s.last = map[string]Actions{}
	for _, p := range s.peers {
		if s.plan != nil {
			s.last[p] = s.plan(p, s.observed(p))
		} else {
			s.last[p] = Plan(s.d, s.observed(p), p)
		}
	}
	for _, peer := range s.peers {
		run := slices.Clone(s.last[peer].Run)
		for _, p := range s.last[peer].Bind {
			i := slices.IndexFunc(s.d.Pods, func(q api.Pod) bool { return key(&q) == key(&p) })
			if s.d.Pods[i].Spec.NodeName == "" {
				s.d.Pods[i].Spec.NodeName = peer
				p.Spec.NodeName = peer
				run = append(run, p)
			}
		}
		next, age := map[string]api.Pod{}, map[string]int{}
		for _, p := range run {
			k := key(&p)
			p.Spec.NodeName = peer
			age[k] = s.age[peer][k] + 1
			status := "False"
			if age[k] > s.readyAt {
				status = "True"
			}
			p.Status = api.PodStatus{Phase: api.PodRunning, Conditions: []api.PodCondition{{Type: "Ready", Status: status}}}
			next[k] = p
		}
		s.runs[peer], s.age[peer] = next, age
	}
}

// readyCopies returns, by pod key, how many peers run a Ready copy.
func (s *sim) readyCopies() map[string]int {
	out := map[string]int{}
	for _, peer := range s.peers {
		for k, p := range s.runs[peer] {
			if Ready(&p) {
				out[k]++
			}
		}
	}
	return out
}

// owned returns the keys of the desired pods that have a peer: neither
// pending nor bound to a peer that left. Every alive peer plans the same
// desired pods; the first alive one's are taken.
func (s *sim) owned() map[string]bool {
	out := map[string]bool{}
	for _, peer := range s.peers {
		if s.gone[peer] {
			continue
		}
		a := s.last[peer]
		pending := map[string]bool{}
		for _, p := range a.Pending {
			pending[key(&p)] = true
		}
		for _, p := range a.Desired {
			if !pending[key(&p)] && !s.gone[p.Spec.NodeName] {
				out[key(&p)] = true
			}
		}
		return out
	}
	return out
}

// settle runs passes until a pass over pods all Ready changes nothing; it
// fails when that takes more than limit passes.
func (s *sim) settle(t *rapid.T, limit int) {
	for range limit {
		before, ready := s.runKeys(), s.allReady()
		s.pass()
		if ready && maps.EqualFunc(before, s.runKeys(), slices.Equal[[]string]) {
			return // a pass over pods all Ready changed nothing
		}
	}
	t.Fatalf("not settled after %d passes: %v", limit, s.runKeys())
}

func (s *sim) runKeys() map[string][]string {
	out := map[string][]string{}
	for _, p := range s.peers {
		out[p] = slices.Sorted(maps.Keys(s.runs[p]))
	}
	return out
}

func (s *sim) allReady() bool {
	for _, peer := range s.peers {
		for _, p := range s.runs[peer] {
			if !Ready(&p) {
				return false
			}
		}
	}
	return true
}

// checkSettled fails unless every pod with a peer runs on exactly one
// peer and nothing else runs anywhere, but for the standalone pods bound
// to a peer that left, which only that peer runs.
func (s *sim) checkSettled(t *rapid.T) {
	owned := s.owned()
	count := map[string][]string{}
	for _, peer := range s.peers {
		for k := range s.runs[peer] {
			count[k] = append(count[k], peer)
		}
	}
	for k, on := range count {
		if len(on) > 1 {
			t.Fatalf("settled: %s runs on %v", k, on)
		}
		if !owned[k] && !(len(on) == 1 && s.gone[on[0]] && s.boundTo(k) == on[0]) {
			t.Fatalf("settled: %s runs on %v and is not desired there", k, on)
		}
	}
	for k := range owned {
		if len(count[k]) != 1 {
			t.Fatalf("settled: desired %s runs on %v", k, count[k])
		}
	}
}

// boundTo returns the peer a standalone pod is bound to.
func (s *sim) boundTo(k string) string {
	for _, p := range s.d.Pods {
		if key(&p) == k {
			return p.Spec.NodeName
		}
	}
	return ""
}

// testDeployment is a rolling update of replicas pods of image, labelled
// app=name.
func testDeployment(name string, replicas int32, image, surge, unavailable string) *api.Deployment {
	su, un := api.FromString(surge), api.FromString(unavailable)
	d := &api.Deployment{Metadata: api.ObjectMeta{Name: name, Namespace: "default"}}
	d.Spec.Replicas = &replicas
	d.Spec.Selector = &api.LabelSelector{MatchLabels: map[string]string{"app": name}}
	d.Spec.Template.Metadata.Labels = map[string]string{"app": name}
	d.Spec.Template.Spec.Containers = []api.Container{{Name: name, Image: image}}
	d.Spec.Strategy = api.DeploymentStrategy{Type: "RollingUpdate", RollingUpdate: &api.RollingUpdateDeployment{MaxSurge: &su, MaxUnavailable: &un}}
	return d
}

func testDaemonSet(name, image string, selector map[string]string) *api.DaemonSet {
	ds := &api.DaemonSet{Metadata: api.ObjectMeta{Name: name, Namespace: "default"}}
	ds.Spec.Template.Metadata.Labels = map[string]string{"app": name}
	ds.Spec.Template.Spec = api.PodSpec{Containers: []api.Container{{Name: "c", Image: image}}, NodeSelector: selector}
	return ds
}

// drawSim draws peers (some in zone a, some in b), deployments, daemon
// sets and standalone pods (some bound), all settled.
func drawSim(t *rapid.T) *sim {
	s := &sim{cordon: map[string]bool{}, gone: map[string]bool{}, labels: map[string]map[string]string{},
		runs: map[string]map[string]api.Pod{}, age: map[string]map[string]int{}, readyAt: rapid.IntRange(0, 2).Draw(t, "readyAt")}
	for i := range rapid.IntRange(1, 5).Draw(t, "peers") {
		p := fmt.Sprintf("n%d", i)
		s.peers = append(s.peers, p)
		s.labels[p] = map[string]string{"zone": rapid.SampledFrom([]string{"a", "b"}).Draw(t, "zone"),
			"kubernetes.io/hostname": p}
	}
	for i := range rapid.IntRange(0, 3).Draw(t, "deployments") {
		s.d.Deployments = append(s.d.Deployments, testDeployment(fmt.Sprintf("d%d", i), int32(rapid.IntRange(0, 8).Draw(t, "replicas")),
			"web:1", rapid.SampledFrom([]string{"0", "1", "25%"}).Draw(t, "surge"), rapid.SampledFrom([]string{"0", "1", "25%"}).Draw(t, "unavailable")))
	}
	for i := range rapid.IntRange(0, 2).Draw(t, "daemonSets") {
		var sel map[string]string
		if rapid.Bool().Draw(t, "dsSelector") {
			sel = map[string]string{"zone": "a"}
		}
		s.d.DaemonSets = append(s.d.DaemonSets, testDaemonSet(fmt.Sprintf("ds%d", i), "agent:1", sel))
	}
	for i := range rapid.IntRange(0, 3).Draw(t, "standalone") {
		p := api.Pod{Metadata: api.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("solo%d", i)},
			Spec: api.PodSpec{Containers: []api.Container{{Name: "c", Image: "solo:1"}}}}
		if rapid.Bool().Draw(t, "bound") {
			p.Spec.NodeName = rapid.SampledFrom(s.peers).Draw(t, "boundTo")
		}
		s.d.Pods = append(s.d.Pods, p)
	}
	s.settle(t, 200)
	s.checkSettled(t)
	return s
}

// Once settled (every peer planned over the same membership and the same
// pods, and runs what it planned), no replica runs on two peers, every
// desired replica that has a peer runs on exactly one, and nothing else
// runs: at first, and again after a rolling update, a scale and a cordon.
func TestPlanSettlesOnePeerPerReplica(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := drawSim(t)
		for _, d := range s.d.Deployments {
			if rapid.Bool().Draw(t, "newImage") {
				d.Spec.Template.Spec.Containers[0].Image = "web:2"
			}
			if rapid.Bool().Draw(t, "scale") {
				*d.Spec.Replicas = int32(rapid.IntRange(0, 8).Draw(t, "scaledTo"))
			}
		}
		if rapid.Bool().Draw(t, "cordonOne") {
			s.cordon[rapid.SampledFrom(s.peers).Draw(t, "cordoned")] = true
		}
		s.settle(t, 200)
		s.checkSettled(t)
	})
}

// plannedMove draws a planned change of an alive cluster: a peer cordoned
// (a drain), a peer joining, or deployments scaled up.
func plannedMove(t *rapid.T, s *sim) string {
	switch rapid.IntRange(0, 2).Draw(t, "move") {
	case 0:
		p := rapid.SampledFrom(s.peers).Draw(t, "drained")
		s.cordon[p] = true
		return "drain " + p
	case 1:
		p := fmt.Sprintf("n%d", len(s.peers))
		s.peers = append(s.peers, p)
		s.labels[p] = map[string]string{"zone": rapid.SampledFrom([]string{"a", "b"}).Draw(t, "newZone"), "kubernetes.io/hostname": p}
		return "join " + p
	}
	for _, d := range s.d.Deployments {
		*d.Spec.Replicas += int32(rapid.IntRange(0, 4).Draw(t, "more"))
	}
	return "scale up"
}

// Make-before-break: on a planned move (every owner alive), a replica
// that has a Ready copy before keeps one at every pass while it moves,
// until its new owner's copy is Ready; then the old copy stops (settled:
// one copy). A replica no longer desired (a daemon pod of a cordoned
// peer) or that fits nowhere any more is not a move.
func TestPlanMakesBeforeBreak(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := drawSim(t)
		was := s.readyCopies()
		what := plannedMove(t, s)
		for range 4 * (s.readyAt + 2) {
			s.pass()
			now, owned := s.readyCopies(), s.owned()
			for k := range was {
				if owned[k] && now[k] == 0 {
					t.Fatalf("%s: %s had a Ready copy before and has none while it moves", what, k)
				}
			}
		}
		s.settle(t, 200)
		s.checkSettled(t)
	})
}

// Leave and drain: a peer that leaves (in no one's alive nodes) or is
// cordoned ends running nothing but the standalone pods bound to it
// (bound pods never move; a cordoned peer runs no daemon pod, as the
// daemon sets' pods are for schedulable peers). A peer leaving keeps its
// Ready copies until their new owners' are Ready, as a drain does.
func TestPlanLeaveAndDrain(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		s := drawSim(t)
		if len(s.peers) < 2 {
			return
		}
		peer := rapid.SampledFrom(s.peers).Draw(t, "peer")
		leave := rapid.Bool().Draw(t, "leave")
		if leave {
			s.gone[peer] = true
		} else {
			s.cordon[peer] = true
		}
		was := s.readyCopies()
		for range 4 * (s.readyAt + 2) {
			s.pass()
			now, owned := s.readyCopies(), s.owned()
			for k := range was {
				if owned[k] && now[k] == 0 {
					t.Fatalf("%s left (%v): %s had a Ready copy before and has none while it moves", peer, leave, k)
				}
			}
		}
		s.settle(t, 200)
		s.checkSettled(t)
		for k := range s.runs[peer] {
			if s.boundTo(k) != peer {
				t.Fatalf("%s left (%v) and still runs %s", peer, leave, k)
			}
		}
	})
}

// What Plan decides besides placement: the services' variables on the
// pods it runs and binds (its inputs unchanged), the FailedScheduling
// events, the evicted pods made again, the job pods that ended.
func TestPlanPass(t *testing.T) {
	nodes := []placement.Node{{Name: "n0", Labels: map[string]string{}, CPUMilli: 1000}}
	web := testDeployment("web", 1, "web:1", "1", "0")
	big := testDeployment("big", 5, "big:1", "1", "0")
	big.Spec.Template.Spec.Containers[0].Resources.Requests = api.ResourceList{"cpu": "2"}
	solo := api.Pod{Metadata: api.ObjectMeta{Namespace: "default", Name: "solo"}, Spec: api.PodSpec{Containers: []api.Container{{Name: "c", Image: "solo:1"}}}}
	done := api.Pod{Metadata: api.ObjectMeta{Namespace: "default", Name: "job-1"}, Spec: api.PodSpec{NodeName: "n0", Containers: []api.Container{{Name: "c", Image: "job:1"}}}}
	gone := done
	gone.Metadata.Name = "job-2"
	svc := &api.Service{Metadata: api.ObjectMeta{Namespace: "default", Name: "my-db"}, Spec: api.ServiceSpec{Ports: []api.ServicePort{{Port: 5432}}}}
	d := Desired{Deployments: []*api.Deployment{big, web}, Pods: []api.Pod{done, gone, solo},
		Ended:    map[string]bool{"default/job-1": true, "default/job-2": true},
		Services: []*api.Service{svc}, ServiceIPs: map[string]string{"Service/default/my-db": "10.89.0.7"}}
	evicted := api.PodsForDeployment(web)[0]
	evicted.Spec.NodeName = "n0"
	evicted.Status = api.PodStatus{Phase: api.PodFailed, Reason: "Evicted"}
	failedSolo := done
	failedSolo.Status = api.PodStatus{Phase: api.PodFailed, Reason: "Evicted"}
	local := []api.Pod{evicted, failedSolo}
	a := Plan(d, Observed{Nodes: nodes, Local: local, Cluster: local}, "n0")

	// job-1 ended but still runs here: kept (for its logs); job-2 ended
	// and runs nowhere: never again.
	if got, want := keys(a.Run), []string{evicted.Metadata.Namespace + "/" + evicted.Metadata.Name, "default/job-1"}; !slices.Equal(got, want) {
		t.Errorf("Run %q, want %q", got, want)
	}
	if got := keys(a.Bind); !slices.Equal(got, []string{"default/solo"}) {
		t.Errorf("Bind %q", got)
	}
	for _, p := range append(slices.Clone(a.Run), a.Bind...) {
		env := p.Spec.Containers[0].Env
		if len(env) != 2 || env[0] != (api.EnvVar{Name: "MY_DB_SERVICE_HOST", Value: "10.89.0.7"}) || env[1].Value != "5432" {
			t.Errorf("%s env %v", p.Metadata.Name, env)
		}
	}
	if len(d.Pods[2].Spec.Containers[0].Env) != 0 || len(local[0].Spec.Containers[0].Env) != 0 || len(a.Desired[0].Spec.Containers[0].Env) != 0 {
		t.Error("Plan changed its inputs or Desired")
	}
	// big's replicas need 2 CPUs, n0 has 1: one pod says why, the rest
	// are counted, each with an event.
	if got := keys(a.Pending); len(got) != 1 || !strings.HasPrefix(got[0], "default/big-") {
		t.Fatalf("Pending %q", got)
	}
	if a.Counted[deploymentKey("default", "big")] != 4 {
		t.Errorf("Counted %v", a.Counted)
	}
	if len(a.Events) != 2 || a.Events[0].Object.Kind != api.KindPod || a.Events[0].Reason != "FailedScheduling" ||
		!strings.Contains(a.Events[0].Message, "Insufficient cpu") ||
		a.Events[1].Object != (api.ObjectReference{Kind: api.KindDeployment, Namespace: "default", Name: "big"}) ||
		!strings.HasPrefix(a.Events[1].Message, "4 more replicas pending (not listed as pods): ") {
		t.Errorf("Events %+v", a.Events)
	}
	// A deployment's evicted pod is made again; a standalone one stays.
	if got := keys(a.Remake); !slices.Equal(got, keys(local[:1])) {
		t.Errorf("Remake %q", got)
	}
}

// The pods a pass hands out to run, bind or list have specs of their own,
// though a deployment's desired pods share one (api.PodsForDeployment):
// the pod manager and the API may change them.
func TestPlanHandsOutOwnSpecs(t *testing.T) {
	nodes := []placement.Node{{Name: "n0", Labels: map[string]string{}, CPUMilli: 1000}}
	web := testDeployment("web", 3, "web:1", "1", "0")
	big := testDeployment("big", 2, "big:1", "1", "0")
	big.Spec.Template.Spec.Containers[0].Resources.Requests = api.ResourceList{"cpu": "2"}
	a := Plan(Desired{Deployments: []*api.Deployment{web, big}}, Observed{Nodes: nodes}, "n0")
	if len(a.Run) != 3 || len(a.Pending) != 1 {
		t.Fatalf("Run %q Pending %q, want web's 3 and one of big's", keys(a.Run), keys(a.Pending))
	}
	for _, list := range [][]api.Pod{a.Run, a.Pending} {
		list[0].Spec.Containers[0].Image = "changed"
	}
	if a.Run[1].Spec.Containers[0].Image != "web:1" || a.Run[2].Spec.Containers[0].Image != "web:1" {
		t.Error("the pods to run share a spec")
	}
	for _, p := range a.Desired {
		if p.Spec.Containers[0].Image == "changed" {
			t.Errorf("changing a pod handed out changed the desired %s", p.Metadata.Name)
		}
	}
	if web.Spec.Template.Spec.Containers[0].Image != "web:1" || big.Spec.Template.Spec.Containers[0].Image != "big:1" {
		t.Error("changing a pod handed out changed its deployment")
	}
}

// A replica two peers run while it moves counts once in its deployment's
// pods, as the copy that serves.
func TestByDeploymentCountsAMoveOnce(t *testing.T) {
	old := newPod("web-0", "n0", true)
	moving := newPod("web-0", "n1", false)
	moving.Status.Phase = api.PodRunning
	other := newPod("web-1", "n1", false)
	solo := api.Pod{Metadata: api.ObjectMeta{Namespace: "default", Name: "solo"}}
	for _, cluster := range [][]api.Pod{{moving, old, other, solo}, {old, moving, other, solo}} {
		got := byDeployment(cluster)
		web := got[deploymentKey("default", "web")]
		if len(got) != 1 || len(web) != 2 || web[0].Spec.NodeName != "n0" || web[1].Metadata.Name != "web-1" {
			t.Fatalf("byDeployment = %v", got)
		}
	}
	if !ServesBetter(&moving, &other) || ServesBetter(&other, &moving) || ServesBetter(&moving, &old) {
		t.Fatal("ServesBetter: Ready, then Running, then bound")
	}
}
