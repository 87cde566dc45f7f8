package placement

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
)

// refAssign is a slow, direct transcription of the algorithm in the package
// documentation: every replica scores every node and walks them in order.
// It shares only the hash primitives with the fast implementation.
func refAssign(nodes []Node, replicas []Replica, opts Options) Result {
	ns := slices.Clone(nodes)
	slices.SortFunc(ns, nodeCmp)
	ns = slices.CompactFunc(ns, func(a, b Node) bool { return a.Name == b.Name })

	byKey := map[string]Replica{}
	for _, r := range replicas {
		if old, ok := byKey[r.Key]; !ok || replicaCmp(&r, &old) < 0 {
			byKey[r.Key] = r
		}
	}
	static := func(r Replica, n Node) bool {
		return !n.Cordoned && (r.Pin == "" || r.Pin == n.Name) && matches(n.Labels, r.NodeSelector)
	}
	type item struct {
		r        Replica
		feasible int
		kh       uint64
	}
	var items []item
	placeable, u := 0, 0
	for _, n := range ns {
		if !n.Cordoned {
			u++
		}
	}
	for _, r := range byKey {
		it := item{r: r}
		it.kh, _, _ = keyHashes(scoreKey(r))
		for _, n := range ns {
			if static(r, n) {
				it.feasible++
			}
		}
		if it.feasible > 0 {
			placeable++
		}
		items = append(items, it)
	}
	slices.SortFunc(items, func(a, b item) int {
		return cmp.Or(cmp.Compare(a.feasible, b.feasible), cmp.Compare(a.r.Ordinal, b.r.Ordinal),
			cmp.Compare(a.kh, b.kh), strings.Compare(a.r.Key, b.r.Key))
	})
	bound := refBound(opts.LoadFactor, placeable, u)

	load := map[string]int{}
	used := map[string][2]int64{}
	groupNodes := map[string]map[string]bool{}
	fits := func(r Replica, n Node) (cpuOK, memOK bool) {
		u := used[n.Name]
		cpuOK = n.CPUMilli <= 0 || u[0]+max(r.CPUMilli, 0) <= n.CPUMilli
		memOK = n.MemBytes <= 0 || u[1]+max(r.MemBytes, 0) <= n.MemBytes
		return
	}
	domain := func(key string, n Node) string {
		if v, ok := n.Labels[key]; ok {
			return "v=" + v
		}
		return "n=" + n.Name
	}
	byName := map[string]Node{}
	for _, n := range ns {
		byName[n.Name] = n
	}
	tier := func(r Replica, n Node) int {
		if r.Group == "" {
			return 1
		}
		if groupNodes[r.Group][n.Name] {
			return 3
		}
		if r.SpreadKey != "" {
			d := domain(r.SpreadKey, n)
			for m := range groupNodes[r.Group] {
				if domain(r.SpreadKey, byName[m]) == d {
					return 2
				}
			}
		}
		return 1
	}

	res := Result{Assign: map[string]string{}, Pending: map[string]string{}}
	var pending []Replica
	for _, it := range items {
		r := it.r
		_, slot, rk := keyHashes(scoreKey(r))
		sk := slotKey(slot)
		type cand struct {
			n  Node
			lv uint8
			sc uint64
		}
		var feasible []cand
		for _, n := range ns {
			if !static(r, n) {
				continue
			}
			if c, m := fits(r, n); !c || !m {
				continue
			}
			h := nodeHash(n.Name)
			feasible = append(feasible, cand{n, levelOf(sk, h), rscore(rk, h)})
		}
		if len(feasible) == 0 {
			pending = append(pending, r)
			continue
		}
		slices.SortFunc(feasible, func(a, b cand) int {
			return cmp.Or(cmp.Compare(b.lv, a.lv), cmp.Compare(b.sc, a.sc), strings.Compare(a.n.Name, b.n.Name))
		})
		var chosen *Node
		for t := 1; t <= 3 && chosen == nil; t++ {
			for i := range feasible {
				if load[feasible[i].n.Name] < bound && tier(r, feasible[i].n) == t {
					chosen = &feasible[i].n
					break
				}
			}
		}
		if chosen == nil { // overflow: least loaded, best score first
			best := 0
			for i := range feasible {
				if load[feasible[i].n.Name] < load[feasible[best].n.Name] {
					best = i
				}
			}
			chosen = &feasible[best].n
		}
		n := *chosen
		load[n.Name]++
		u := used[n.Name]
		used[n.Name] = [2]int64{u[0] + max(r.CPUMilli, 0), u[1] + max(r.MemBytes, 0)}
		if r.Group != "" {
			if groupNodes[r.Group] == nil {
				groupNodes[r.Group] = map[string]bool{}
			}
			groupNodes[r.Group][n.Name] = true
		}
		res.Assign[r.Key] = n.Name
	}
	for _, r := range pending { // reasons describe the final state
		res.Pending[r.Key] = refReason(r, ns, used)
	}
	return res
}

// scoreKey is what a replica's scores and order hash: Affinity if set.
func scoreKey(r Replica) string {
	if r.Affinity != "" {
		return r.Affinity
	}
	return r.Key
}

func refBound(e float64, r, u int) int {
	if u == 0 {
		return 0
	}
	if !(e > 0) {
		e = 0.25
	}
	if math.IsInf(e, 1) {
		return math.MaxInt
	}
	return max(1, int(math.Ceil((1+e)*float64(r)/float64(u))))
}

func refReason(r Replica, ns []Node, used map[string][2]int64) string {
	if len(ns) == 0 {
		return "no nodes available to schedule pods"
	}
	counts := map[string]int{}
	for _, n := range ns {
		switch {
		case r.Pin != "" && r.Pin != n.Name:
			counts["node(s) didn't match pinned node name"]++
		case n.Cordoned:
			counts["node(s) were unschedulable"]++
		case !matches(n.Labels, r.NodeSelector):
			counts["node(s) didn't match node selector"]++
		default:
			u := used[n.Name]
			if n.CPUMilli > 0 && u[0]+max(r.CPUMilli, 0) > n.CPUMilli {
				counts["Insufficient cpu"]++
			}
			if n.MemBytes > 0 && u[1]+max(r.MemBytes, 0) > n.MemBytes {
				counts["Insufficient memory"]++
			}
		}
	}
	type kv struct {
		why string
		c   int
	}
	var kvs []kv
	for why, c := range counts {
		kvs = append(kvs, kv{why, c})
	}
	slices.SortFunc(kvs, func(a, b kv) int { return cmp.Or(b.c-a.c, strings.Compare(a.why, b.why)) })
	var parts []string
	for _, x := range kvs {
		parts = append(parts, fmt.Sprintf("%d %s", x.c, x.why))
	}
	return fmt.Sprintf("0/%d nodes are available: %s", len(ns), strings.Join(parts, ", "))
}
