package placement

import (
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// ---- generators ----

var testSelectors = []map[string]string{
	nil,
	{"zone": "a"},
	{"disk": "ssd"},
	{"zone": "b", "disk": "hdd"},
	{"zone": "nowhere"},
}

type genCfg struct {
	minNodes, maxNodes int
	maxGroups          int
	maxPerGroup        int
	caps               bool // node capacities and replica requests
	selectors          bool
	pins               bool
	spread             bool // groups (with spread keys); else every replica is alone
	cordons            bool
}

var fullCfg = genCfg{minNodes: 0, maxNodes: 80, maxGroups: 12, maxPerGroup: 25,
	caps: true, selectors: true, pins: true, spread: true, cordons: true}

func genNodes(t *rapid.T, cfg genCfg) []Node {
	n := rapid.IntRange(cfg.minNodes, cfg.maxNodes).Draw(t, "nodes")
	nodes := make([]Node, n)
	for i := range nodes {
		nd := Node{Name: fmt.Sprintf("node-%03d", i), Labels: map[string]string{"kubernetes.io/hostname": fmt.Sprint(i)}}
		if z := rapid.IntRange(0, 3).Draw(t, "zone"); z < 3 {
			nd.Labels["zone"] = string(rune('a' + z))
		}
		if d := rapid.IntRange(0, 2).Draw(t, "disk"); d < 2 {
			nd.Labels["disk"] = []string{"ssd", "hdd"}[d]
		}
		if cfg.cordons {
			nd.Cordoned = rapid.IntRange(0, 9).Draw(t, "cordon") == 0
		}
		if cfg.caps && rapid.IntRange(0, 3).Draw(t, "capped") > 0 {
			nd.CPUMilli = rapid.Int64Range(1, 16).Draw(t, "cpu") * 250
			nd.MemBytes = rapid.Int64Range(1, 16).Draw(t, "mem") << 28
		}
		nodes[i] = nd
	}
	return nodes
}

func genReplicas(t *rapid.T, nodes []Node, cfg genCfg) []Replica {
	var out []Replica
	groups := rapid.IntRange(0, cfg.maxGroups).Draw(t, "groups")
	for g := range groups {
		name := fmt.Sprintf("default/app%d", g)
		var sel map[string]string
		if cfg.selectors {
			sel = rapid.SampledFrom(testSelectors).Draw(t, "selector")
		}
		var cpu, mem int64
		if cfg.caps {
			cpu = rapid.Int64Range(0, 8).Draw(t, "req.cpu") * 125
			mem = rapid.Int64Range(0, 8).Draw(t, "req.mem") << 27
		}
		spreadKey := ""
		if cfg.spread {
			spreadKey = rapid.SampledFrom([]string{"", "", "zone", "disk"}).Draw(t, "spreadKey")
		}
		pinned := cfg.pins && rapid.IntRange(0, 5).Draw(t, "pinned") == 0
		affinity := cfg.spread && rapid.Bool().Draw(t, "affinity")
		count := rapid.IntRange(1, cfg.maxPerGroup).Draw(t, "replicas")
		for j := range count {
			r := Replica{Key: fmt.Sprintf("%s-%d", name, j), NodeSelector: sel, CPUMilli: cpu, MemBytes: mem, Ordinal: j}
			if cfg.spread {
				r.Group, r.SpreadKey = name, spreadKey
			}
			if affinity {
				r.Affinity = fmt.Sprintf("%s/%d", name, j)
			}
			if pinned {
				if len(nodes) == 0 || rapid.IntRange(0, 9).Draw(t, "ghost") == 0 {
					r.Pin = "ghost"
				} else {
					r.Pin = nodes[rapid.IntRange(0, len(nodes)-1).Draw(t, "pin")].Name
				}
			}
			out = append(out, r)
		}
	}
	return out
}

func genOptions(t *rapid.T) Options {
	return Options{LoadFactor: rapid.SampledFrom([]float64{0, 0.05, 0.25, 1, 10}).Draw(t, "loadFactor")}
}

// ---- checkers ----

// usage is the load and resources used per node name.
type usage struct {
	load     map[string]int
	cpu, mem map[string]int64
}

func usageOf(replicas []Replica, res Result) usage {
	u := usage{map[string]int{}, map[string]int64{}, map[string]int64{}}
	for _, r := range replicas {
		if n, ok := res.Assign[r.Key]; ok {
			u.load[n]++
			u.cpu[n] += max(r.CPUMilli, 0)
			u.mem[n] += max(r.MemBytes, 0)
		}
	}
	return u
}

// fitsAtEnd: would r (not yet placed) fit n given the final usage.
func fitsAtEnd(r Replica, n Node, u usage) bool {
	return !n.Cordoned && (r.Pin == "" || r.Pin == n.Name) && matches(n.Labels, r.NodeSelector) &&
		(n.CPUMilli <= 0 || u.cpu[n.Name]+max(r.CPUMilli, 0) <= n.CPUMilli) &&
		(n.MemBytes <= 0 || u.mem[n.Name]+max(r.MemBytes, 0) <= n.MemBytes)
}

// checkHard: invariant 3. Every replica is in exactly one map; assignments
// respect cordon, selector, pin and capacity; a pending replica fits no node
// even now (so it was not left out while some node could take it).
func checkHard(t *rapid.T, nodes []Node, replicas []Replica, res Result) {
	byName := map[string]Node{}
	for _, n := range nodes {
		byName[n.Name] = n
	}
	keys := map[string]bool{}
	for _, r := range replicas {
		keys[r.Key] = true
		n, assigned := res.Assign[r.Key]
		why, pending := res.Pending[r.Key]
		if assigned == pending {
			t.Fatalf("replica %s: assigned=%v pending=%v", r.Key, assigned, pending)
		}
		if pending && why == "" {
			t.Fatalf("replica %s pending without a reason", r.Key)
		}
		if !assigned {
			continue
		}
		node, ok := byName[n]
		switch {
		case !ok:
			t.Fatalf("replica %s on unknown node %q", r.Key, n)
		case node.Cordoned:
			t.Fatalf("replica %s on cordoned node %s", r.Key, n)
		case !matches(node.Labels, r.NodeSelector):
			t.Fatalf("replica %s on %s: selector %v, labels %v", r.Key, n, r.NodeSelector, node.Labels)
		case r.Pin != "" && r.Pin != n:
			t.Fatalf("replica %s pinned to %s placed on %s", r.Key, r.Pin, n)
		}
	}
	for k := range res.Assign {
		if !keys[k] {
			t.Fatalf("unknown replica %s assigned", k)
		}
	}
	for k := range res.Pending {
		if !keys[k] {
			t.Fatalf("unknown replica %s pending", k)
		}
	}
	u := usageOf(replicas, res)
	for _, n := range nodes {
		if n.CPUMilli > 0 && u.cpu[n.Name] > n.CPUMilli {
			t.Fatalf("node %s: cpu %d > %d", n.Name, u.cpu[n.Name], n.CPUMilli)
		}
		if n.MemBytes > 0 && u.mem[n.Name] > n.MemBytes {
			t.Fatalf("node %s: memory %d > %d", n.Name, u.mem[n.Name], n.MemBytes)
		}
	}
	for _, r := range replicas {
		if _, ok := res.Pending[r.Key]; !ok {
			continue
		}
		for _, n := range nodes {
			if fitsAtEnd(r, n, u) {
				t.Fatalf("replica %s pending (%s) but fits %s", r.Key, res.Pending[r.Key], n.Name)
			}
		}
	}
}

// checkBound: invariant 2, exactly as documented. With B the bound, every
// node above B holds a replica r such that every other node m that could
// still take r has load(m) >= max(B, load(n)-1). When no replica has a
// selector, a pin or requests, no node is above B at all.
func checkBound(t *rapid.T, nodes []Node, replicas []Replica, opts Options, res Result) {
	b := Bound(nodes, replicas, opts)
	// B recomputed independently: R = replicas with a schedulable node
	// matching selector and pin, U = schedulable nodes.
	placeable, u, free := 0, 0, true
	seen := map[string]bool{}
	for _, n := range nodes {
		if !n.Cordoned {
			u++
		}
	}
	for _, r := range replicas {
		if seen[r.Key] {
			continue
		}
		seen[r.Key] = true
		for _, n := range nodes {
			if !n.Cordoned && (r.Pin == "" || r.Pin == n.Name) && matches(n.Labels, r.NodeSelector) {
				placeable++
				break
			}
		}
		if r.Pin != "" || len(r.NodeSelector) > 0 || r.CPUMilli > 0 || r.MemBytes > 0 {
			free = false
		}
	}
	if want := refBound(opts.LoadFactor, placeable, u); b != want {
		t.Fatalf("Bound = %d, want %d (R=%d U=%d)", b, want, placeable, u)
	}
	us := usageOf(replicas, res)
	onNode := map[string][]Replica{}
	for _, r := range replicas {
		if n, ok := res.Assign[r.Key]; ok {
			onNode[n] = append(onNode[n], r)
		}
	}
	for _, n := range nodes {
		l := us.load[n.Name]
		if l <= b {
			continue
		}
		if free {
			t.Fatalf("node %s holds %d > B=%d replicas with no constraint binding", n.Name, l, b)
		}
		justified := false
		for _, r := range onNode[n.Name] {
			ok := true
			for _, m := range nodes {
				if m.Name != n.Name && fitsAtEnd(r, m, us) && us.load[m.Name] < max(b, l-1) {
					ok = false
					break
				}
			}
			if ok {
				justified = true
				break
			}
		}
		if !justified {
			t.Fatalf("node %s holds %d > B=%d replicas, and each of them could have gone elsewhere", n.Name, l, b)
		}
	}
}

// checkSpread: invariant 4. For a group whose replicas share one template
// (selector, requests, spread key; not pinned), let E be the nodes that at
// the end could still take one more of its replicas below the bound. If
// |E| >= group size, its replicas are on distinct nodes; if E spans at least
// group-size domains of the spread key, they are in distinct domains.
func checkSpread(t *rapid.T, nodes []Node, replicas []Replica, opts Options, res Result) {
	b := Bound(nodes, replicas, opts)
	us := usageOf(replicas, res)
	groups := map[string][]Replica{}
	for _, r := range replicas {
		if r.Group != "" {
			groups[r.Group] = append(groups[r.Group], r)
		}
	}
	for g, rs := range groups {
		if rs[0].Pin != "" {
			continue
		}
		var eligible []Node
		for _, n := range nodes {
			if fitsAtEnd(rs[0], n, us) && us.load[n.Name] < b {
				eligible = append(eligible, n)
			}
		}
		if len(eligible) >= len(rs) {
			seen := map[string]string{}
			for _, r := range rs {
				n := res.Assign[r.Key]
				if other, dup := seen[n]; dup && n != "" {
					t.Fatalf("group %s: %s and %s both on %s though %d nodes had room for its %d replicas",
						g, other, r.Key, n, len(eligible), len(rs))
				}
				seen[n] = r.Key
			}
		}
		key := rs[0].SpreadKey
		if key == "" {
			continue
		}
		domain := func(n string) string {
			for _, m := range nodes {
				if m.Name == n {
					if v, ok := m.Labels[key]; ok {
						return "v=" + v
					}
				}
			}
			return "n=" + n
		}
		doms := map[string]bool{}
		for _, n := range eligible {
			doms[domain(n.Name)] = true
		}
		if len(doms) >= len(rs) {
			seen := map[string]string{}
			for _, r := range rs {
				n, ok := res.Assign[r.Key]
				if !ok {
					continue
				}
				d := domain(n)
				if other, dup := seen[d]; dup {
					t.Fatalf("group %s: %s and %s both in %s=%s though %d domains had room for its %d replicas",
						g, other, r.Key, key, d, len(doms), len(rs))
				}
				seen[d] = r.Key
			}
		}
	}
}

// ---- properties ----

// The fast implementation computes exactly what the documented algorithm
// (the slow reference) computes, pending reasons included.
func TestMatchesReference(t *testing.T) {
	t.Run("small", func(t *testing.T) { checkReference(t, fullCfg) })
	t.Run("large", func(t *testing.T) { checkReference(t, largeCfg) })
}

// largeCfg makes classes larger than a candidate list and groups that cover
// every node, to exercise the fast paths.
var largeCfg = genCfg{minNodes: 20, maxNodes: 150, maxGroups: 30, maxPerGroup: 200,
	caps: true, selectors: true, pins: true, spread: true, cordons: true}

func checkReference(t *testing.T, cfg genCfg) {
	rapid.Check(t, func(t *rapid.T) {
		nodes := genNodes(t, cfg)
		replicas := genReplicas(t, nodes, cfg)
		opts := genOptions(t)
		got := Assign(nodes, replicas, opts)
		want := refAssign(nodes, replicas, opts)
		if !reflect.DeepEqual(got, want) {
			for k, v := range want.Assign {
				if got.Assign[k] != v {
					t.Errorf("%s: got %q want %q", k, got.Assign[k], v)
				}
			}
			for k, v := range want.Pending {
				if got.Pending[k] != v {
					t.Errorf("%s: got pending %q want %q", k, got.Pending[k], v)
				}
			}
			t.Fatalf("result differs from the reference")
		}
	})
}

// Invariant 1: same result under any permutation of nodes and replicas and
// any construction order of the label maps.
func TestDeterminism(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nodes := genNodes(t, fullCfg)
		replicas := genReplicas(t, nodes, fullCfg)
		opts := genOptions(t)
		want := Assign(nodes, replicas, opts)

		pn := rapid.Permutation(nodes).Draw(t, "nodePerm")
		for i := range pn {
			pn[i].Labels = rebuild(t, pn[i].Labels)
		}
		pr := rapid.Permutation(replicas).Draw(t, "replicaPerm")
		for i := range pr {
			pr[i].NodeSelector = rebuild(t, pr[i].NodeSelector)
		}
		if got := Assign(pn, pr, opts); !reflect.DeepEqual(got, want) {
			t.Fatalf("permuted input changed the result")
		}
	})
}

// rebuild copies a map inserting its keys in a random order.
func rebuild(t *rapid.T, m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	keys := rapid.Permutation(sortedKeys(m)).Draw(t, "labelOrder")
	out := make(map[string]string, len(m))
	for _, k := range keys {
		out[k] = m[k]
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range maps.Keys(m) {
		keys = append(keys, k)
	}
	return keys
}

// Invariants 2, 3 and 4 on arbitrary inputs.
func TestInvariants(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nodes := genNodes(t, fullCfg)
		replicas := genReplicas(t, nodes, fullCfg)
		opts := genOptions(t)
		res := Assign(nodes, replicas, opts)
		checkHard(t, nodes, replicas, res)
		checkBound(t, nodes, replicas, opts, res)
		checkSpread(t, nodes, replicas, opts, res)
	})
}

// Invariant 2 without constraints: no node ever holds more than B.
func TestLoadBoundUnconstrained(t *testing.T) {
	cfg := genCfg{minNodes: 1, maxNodes: 60, maxGroups: 20, maxPerGroup: 60, spread: true, cordons: true}
	rapid.Check(t, func(t *rapid.T) {
		nodes := genNodes(t, cfg)
		replicas := genReplicas(t, nodes, cfg)
		opts := genOptions(t)
		res := Assign(nodes, replicas, opts)
		b := Bound(nodes, replicas, opts)
		for n, l := range usageOf(replicas, res).load {
			if l > b {
				t.Fatalf("node %s holds %d > B=%d", n, l, b)
			}
		}
		if len(res.Pending) > 0 && len(res.Assign) > 0 {
			t.Fatalf("%d replicas pending with schedulable nodes", len(res.Pending))
		}
	})
}

// top returns the node of nodes that replica key ranks first.
func top(key string, nodes []Node) string {
	_, slot, rk := keyHashes(key)
	sk := slotKey(slot)
	best, bl, bs := "", uint8(0), uint64(0)
	for _, n := range nodes {
		h := nodeHash(n.Name)
		l, s := levelOf(sk, h), rscore(rk, h)
		if best == "" || l > bl || l == bl && (s > bs || s == bs && n.Name < best) {
			best, bl, bs = n.Name, l, s
		}
	}
	return best
}

func moved(a, b Result) map[string]bool {
	out := map[string]bool{}
	for k, n := range a.Assign {
		if b.Assign[k] != n {
			out[k] = true
		}
	}
	for k := range a.Pending {
		if _, ok := b.Pending[k]; !ok {
			out[k] = true
		}
	}
	return out
}

func without(nodes []Node, i int) []Node {
	out := append([]Node(nil), nodes[:i]...)
	return append(out, nodes[i+1:]...)
}

// Invariant 5 without bound pressure: removing a node moves exactly the
// replicas it held. Replicas must not interact, so no groups (spread makes
// replicas of a group compete) and no capacities; selectors are fine. No
// bound at all (LoadFactor +Inf) with arbitrary selectors, and LoadFactor 10
// without selectors when replicas are many (the bound then never binds).
func TestLeaveNoPressure(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    float64
		cfg  genCfg
	}{
		{"unbounded", math.Inf(1), genCfg{minNodes: 2, maxNodes: 60, maxGroups: 10, maxPerGroup: 80, selectors: true, cordons: true}},
		{"e=10", 10, genCfg{minNodes: 2, maxNodes: 60, maxGroups: 10, maxPerGroup: 80}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rapid.Check(t, func(t *rapid.T) {
				nodes := genNodes(t, tc.cfg)
				replicas := genReplicas(t, nodes, tc.cfg)
				if tc.e == 10 {
					for len(replicas) < 10*len(nodes) {
						replicas = append(replicas, Replica{Key: fmt.Sprintf("extra-%d", len(replicas))})
					}
				}
				opts := Options{LoadFactor: tc.e}
				before := Assign(nodes, replicas, opts)
				i := rapid.IntRange(0, len(nodes)-1).Draw(t, "leaver")
				after := Assign(without(nodes, i), replicas, opts)
				got := moved(before, after)
				for k := range got {
					if before.Assign[k] != nodes[i].Name {
						t.Fatalf("%s moved from %s to %s though %s left", k, before.Assign[k], after.Assign[k], nodes[i].Name)
					}
				}
				for k, n := range before.Assign {
					if n == nodes[i].Name && !got[k] {
						t.Fatalf("%s still on departed %s", k, n)
					}
				}
			})
		})
	}
}

// Invariant 6 without bound pressure: adding a node moves exactly the
// replicas whose top-scoring node is the new one.
func TestJoinNoPressure(t *testing.T) {
	cfg := genCfg{minNodes: 1, maxNodes: 60, maxGroups: 10, maxPerGroup: 80, selectors: true, cordons: true}
	rapid.Check(t, func(t *rapid.T) {
		nodes := genNodes(t, cfg)
		replicas := genReplicas(t, nodes, cfg)
		opts := Options{LoadFactor: math.Inf(1)}
		newcomer := Node{Name: rapid.StringMatching(`[a-z]{1,12}`).Draw(t, "newName"),
			Labels: map[string]string{"zone": "a", "disk": "ssd"}}
		for _, n := range nodes {
			if n.Name == newcomer.Name {
				t.Skip("name taken")
			}
		}
		before := Assign(nodes, replicas, opts)
		grown := append(append([]Node(nil), nodes...), newcomer)
		after := Assign(grown, replicas, opts)
		got := moved(before, after)
		for _, r := range replicas {
			var eligible []Node
			for _, n := range grown {
				if !n.Cordoned && matches(n.Labels, r.NodeSelector) {
					eligible = append(eligible, n)
				}
			}
			want := len(eligible) > 0 && top(r.Key, eligible) == newcomer.Name
			if got[r.Key] != want {
				t.Fatalf("%s: moved=%v, top-scoring node is the newcomer=%v", r.Key, got[r.Key], want)
			}
			if want && after.Assign[r.Key] != newcomer.Name {
				t.Fatalf("%s moved to %s, not to the newcomer", r.Key, after.Assign[r.Key])
			}
		}
	})
}

// Leader is one of the names, does not depend on their order, and when a
// name leaves only the keys it led change leader.
func TestLeaderProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		names := rapid.SliceOfNDistinct(rapid.StringMatching(`[a-z]{1,6}`), 1, 12, rapid.ID[string]).Draw(t, "names")
		key := rapid.String().Draw(t, "key")
		l := Leader(key, names)
		if !slices.Contains(names, l) {
			t.Fatalf("leader %q not among %v", l, names)
		}
		shuffled := slices.Clone(names)
		slices.Reverse(shuffled)
		if Leader(key, shuffled) != l {
			t.Fatalf("leader depends on the order of names")
		}
		gone := rapid.SampledFrom(names).Draw(t, "gone")
		rest := slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == gone })
		if l2 := Leader(key, rest); gone != l && l2 != l {
			t.Fatalf("%s left, the leader moved from %s to %s", gone, l, l2)
		}
	})
	if Leader("k", nil) != "" {
		t.Fatal("no names: want no leader")
	}
}
