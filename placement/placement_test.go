package placement

import (
	"fmt"
	"math"
	"reflect"
	"testing"
)

func names(prefix string, n int) []Node {
	out := make([]Node, n)
	for i := range out {
		out[i] = Node{Name: fmt.Sprintf("%s%d", prefix, i)}
	}
	return out
}

func TestPendingReasons(t *testing.T) {
	nodes := []Node{
		{Name: "a", Labels: map[string]string{"disk": "hdd"}},
		{Name: "b"},
		{Name: "c", Labels: map[string]string{"disk": "hdd"}},
		{Name: "d", Labels: map[string]string{"disk": "ssd"}, CPUMilli: 1000},
		{Name: "e", Labels: map[string]string{"disk": "ssd"}, CPUMilli: 1500, MemBytes: 1 << 30},
	}
	ssd := map[string]string{"disk": "ssd"}
	for _, tc := range []struct {
		name  string
		nodes []Node
		r     Replica
		want  string
	}{
		{"selector and cpu", nodes, Replica{Key: "x", NodeSelector: ssd, CPUMilli: 2000},
			"0/5 nodes are available: 3 node(s) didn't match node selector, 2 Insufficient cpu"},
		{"cpu and memory on one node", nodes, Replica{Key: "x", NodeSelector: ssd, CPUMilli: 1200, MemBytes: 2 << 30},
			"0/5 nodes are available: 3 node(s) didn't match node selector, 1 Insufficient cpu, 1 Insufficient memory"},
		{"cordon first", []Node{{Name: "a", Cordoned: true, CPUMilli: 1}, {Name: "b", CPUMilli: 1}}, Replica{Key: "x", CPUMilli: 2},
			"0/2 nodes are available: 1 Insufficient cpu, 1 node(s) were unschedulable"},
		{"all cordoned", []Node{{Name: "a", Cordoned: true}, {Name: "b", Cordoned: true}}, Replica{Key: "x"},
			"0/2 nodes are available: 2 node(s) were unschedulable"},
		{"no nodes", nil, Replica{Key: "x"}, "no nodes available to schedule pods"},
		{"pin to unknown", nodes, Replica{Key: "x", Pin: "zz"},
			"0/5 nodes are available: 5 node(s) didn't match pinned node name"},
		{"pin to mismatching node", nodes, Replica{Key: "x", Pin: "a", NodeSelector: ssd},
			"0/5 nodes are available: 4 node(s) didn't match pinned node name, 1 node(s) didn't match node selector"},
		{"pin to full node", nodes, Replica{Key: "x", Pin: "d", CPUMilli: 1001},
			"0/5 nodes are available: 4 node(s) didn't match pinned node name, 1 Insufficient cpu"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := Assign(tc.nodes, []Replica{tc.r}, Options{})
			if got := res.Pending[tc.r.Key]; got != tc.want {
				t.Errorf("reason %q, want %q", got, tc.want)
			}
			if len(res.Assign) != 0 {
				t.Errorf("assigned: %v", res.Assign)
			}
		})
	}
}

// Reasons describe the final state: the node that was filled by others is
// reported short of CPU.
func TestPendingReasonAfterFilling(t *testing.T) {
	nodes := []Node{{Name: "a", CPUMilli: 1000}, {Name: "b", CPUMilli: 1000}}
	var rs []Replica
	for i := range 3 {
		rs = append(rs, Replica{Key: fmt.Sprint(i), CPUMilli: 600})
	}
	res := Assign(nodes, rs, Options{})
	if len(res.Assign) != 2 || len(res.Pending) != 1 {
		t.Fatalf("got %v", res)
	}
	for _, why := range res.Pending {
		if want := "0/2 nodes are available: 2 Insufficient cpu"; why != want {
			t.Errorf("reason %q, want %q", why, want)
		}
	}
}

func TestPin(t *testing.T) {
	nodes := []Node{{Name: "a"}, {Name: "b"}, {Name: "c", Cordoned: true}, {Name: "d", CPUMilli: 500}}
	var rs []Replica
	// A DaemonSet-like group: one replica pinned to each node.
	for _, n := range nodes {
		rs = append(rs, Replica{Key: "ds-" + n.Name, Group: "kube-system/ds", Pin: n.Name, CPUMilli: 100})
	}
	// Many replicas pinned to one node: far above the bound B, yet all
	// placed, since that node is the only one they may go to.
	for i := range 10 {
		rs = append(rs, Replica{Key: fmt.Sprintf("pinned-%d", i), Pin: "a"})
	}
	rs = append(rs, Replica{Key: "big", Pin: "d", CPUMilli: 450})
	res := Assign(nodes, rs, Options{})
	want := map[string]string{"ds-a": "a", "ds-b": "b", "ds-d": "d"}
	for i := range 10 {
		want[fmt.Sprintf("pinned-%d", i)] = "a"
	}
	if !reflect.DeepEqual(res.Assign, want) {
		t.Errorf("assign %v, want %v", res.Assign, want)
	}
	if got := res.Pending["ds-c"]; got != "0/4 nodes are available: 3 node(s) didn't match pinned node name, 1 node(s) were unschedulable" {
		t.Errorf("ds-c: %q", got)
	}
	if got := res.Pending["big"]; got != "0/4 nodes are available: 3 node(s) didn't match pinned node name, 1 Insufficient cpu" {
		t.Errorf("big: %q", got)
	}
	if b := Bound(nodes, rs, Options{}); b >= 11 {
		t.Errorf("B = %d; the test wants pins above it", b)
	}
}

func TestCordonedGetsNothing(t *testing.T) {
	nodes := names("n", 4)
	nodes[2].Cordoned = true
	var rs []Replica
	for i := range 100 {
		rs = append(rs, Replica{Key: fmt.Sprint(i), Group: fmt.Sprint(i % 7)})
	}
	res := Assign(nodes, rs, Options{})
	for k, n := range res.Assign {
		if n == "n2" {
			t.Fatalf("%s on cordoned n2", k)
		}
	}
	if len(res.Assign) != 100 {
		t.Fatalf("%d pending", len(res.Pending))
	}
}

func TestSpreadTiers(t *testing.T) {
	var nodes []Node
	for z := range 3 {
		for i := range 2 {
			nodes = append(nodes, Node{Name: fmt.Sprintf("z%d-%d", z, i), Labels: map[string]string{"zone": fmt.Sprint(z)}})
		}
	}
	group := func(n int) []Replica {
		var rs []Replica
		for i := range n {
			rs = append(rs, Replica{Key: fmt.Sprintf("web-%d", i), Group: "default/web", SpreadKey: "zone"})
		}
		return rs
	}
	count := func(res Result, f func(node string) string) map[string]int {
		c := map[string]int{}
		for _, n := range res.Assign {
			c[f(n)]++
		}
		return c
	}
	zone := func(n string) string { return n[:2] }
	node := func(n string) string { return n }
	opts := Options{LoadFactor: 10}
	// 3 replicas: one per zone.
	if c := count(Assign(nodes, group(3), opts), zone); len(c) != 3 {
		t.Errorf("3 replicas over zones: %v", c)
	}
	// 6 replicas: zones relaxed, nodes distinct.
	if c := count(Assign(nodes, group(6), opts), node); len(c) != 6 {
		t.Errorf("6 replicas over nodes: %v", c)
	}
	// 8 replicas over 6 nodes: every node has one, two have two.
	c := count(Assign(nodes, group(8), opts), node)
	for _, v := range c {
		if v < 1 || v > 2 {
			t.Errorf("8 replicas over nodes: %v", c)
		}
	}
	// A node without the label is a zone of its own.
	nodes = append(nodes, Node{Name: "x0"}, Node{Name: "x1"})
	if c := count(Assign(nodes, group(5), opts), func(n string) string {
		if n[0] == 'x' {
			return n
		}
		return zone(n)
	}); len(c) != 5 {
		t.Errorf("5 replicas over 3 zones and 2 unlabelled nodes: %v", c)
	}
}

// A hot selector: every replica may only go to one node, far above B; they
// overflow there rather than wait.
func TestOverflow(t *testing.T) {
	nodes := names("n", 4)
	nodes[3].Labels = map[string]string{"gpu": "yes"}
	var rs []Replica
	for i := range 10 {
		rs = append(rs, Replica{Key: fmt.Sprintf("gpu-%d", i), NodeSelector: map[string]string{"gpu": "yes"}})
		rs = append(rs, Replica{Key: fmt.Sprintf("web-%d", i)})
	}
	res := Assign(nodes, rs, Options{})
	b := Bound(nodes, rs, Options{})
	if b != 7 { // ⌈1.25·20/4⌉
		t.Fatalf("B = %d, want 7", b)
	}
	load := map[string]int{}
	for k, n := range res.Assign {
		load[n]++
		if k[:3] == "gpu" && n != "n3" {
			t.Errorf("%s on %s", k, n)
		}
	}
	if len(res.Pending) != 0 || load["n3"] != 10 {
		t.Errorf("load %v, pending %v", load, res.Pending)
	}
	for _, n := range []string{"n0", "n1", "n2"} {
		if load[n] > b {
			t.Errorf("%s holds %d > B", n, load[n])
		}
	}
}

func TestBound(t *testing.T) {
	nodes := names("n", 4)
	rs := make([]Replica, 10)
	for i := range rs {
		rs[i].Key = fmt.Sprint(i)
	}
	for _, tc := range []struct {
		e    float64
		want int
	}{{0, 4}, {-1, 4}, {math.NaN(), 4}, {0.25, 4}, {0.01, 3}, {1, 5}, {10, 28}, {math.Inf(1), math.MaxInt}} {
		if got := Bound(nodes, rs, Options{LoadFactor: tc.e}); got != tc.want {
			t.Errorf("Bound(e=%v) = %d, want %d", tc.e, got, tc.want)
		}
	}
	if got := Bound(nil, rs, Options{}); got != 0 {
		t.Errorf("Bound without nodes = %d", got)
	}
	if !reflect.DeepEqual(Assign(nodes, rs, Options{}), Assign(nodes, rs, Options{LoadFactor: DefaultLoadFactor})) {
		t.Errorf("zero options differ from the default load factor")
	}
}

func TestDuplicates(t *testing.T) {
	nodes := []Node{{Name: "a", Cordoned: true}, {Name: "a"}, {Name: "b"}}
	rs := []Replica{{Key: "x", Pin: "b"}, {Key: "x", Pin: "a"}, {Key: "y"}}
	res := Assign(nodes, rs, Options{})
	// Of the two "a", the uncordoned one is kept; of the two "x", the one
	// pinned to "a" (the least Pin).
	if res.Assign["x"] != "a" || res.Assign["y"] == "" || len(res.Assign) != 2 || len(res.Pending) != 0 {
		t.Errorf("got %v", res)
	}
	rev := Assign([]Node{nodes[2], nodes[1], nodes[0]}, []Replica{rs[2], rs[1], rs[0]}, Options{})
	if !reflect.DeepEqual(res, rev) {
		t.Errorf("order matters with duplicates: %v vs %v", res, rev)
	}
}

func TestEmpty(t *testing.T) {
	res := Assign(nil, nil, Options{})
	if res.Assign == nil || res.Pending == nil || len(res.Assign)+len(res.Pending) != 0 {
		t.Errorf("got %#v", res)
	}
}

// Fixed inputs give fixed outputs: the hash functions and the algorithm are
// a contract between peers that may run different builds, so any change to
// them must show up here (and be rolled out as a protocol change).
func TestGolden(t *testing.T) {
	kh, slot, rk := keyHashes("default/web-0")
	nh := nodeHash("node-1")
	got := fmt.Sprintf("%#x %d %#x %#x %d %#x", kh, slot, rk, nh, levelOf(slotKey(slot), nh), rscore(rk, nh))
	if want := "0xb32983f11a520523 45865 0xdbacc343bc22b186 0x75bb87ef033a16f0 208 0x4632492050194ad5"; got != want {
		t.Errorf("hashes %s, want %s", got, want)
	}
	var rs []Replica
	for i := range 8 {
		rs = append(rs, Replica{Key: fmt.Sprintf("default/web-%d", i), Group: "default/web"})
	}
	want := map[string]string{"default/web-0": "node-0", "default/web-1": "node-3", "default/web-2": "node-0",
		"default/web-3": "node-4", "default/web-4": "node-1", "default/web-5": "node-2", "default/web-6": "node-2",
		"default/web-7": "node-1"}
	if res := Assign(names("node-", 5), rs, Options{}); !reflect.DeepEqual(res.Assign, want) {
		t.Errorf("assign %v, want %v", res.Assign, want)
	}
}
