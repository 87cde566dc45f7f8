package placement

import (
	"fmt"
	"math"
	"reflect"
	"sync/atomic"
	"testing"

	"pgregory.net/rapid"
)

// A scale is a change of every group's replica count: ordinals 0..n-1 of
// group g exist before, 0..m-1 after, the replicas of one group sharing
// everything but key and ordinal (as a deployment's do). Replicas in no
// group come and go too, pinned or not.
type scale struct {
	nodes         []Node
	before, after []Replica
	kept          []string // keys present in both
}

func genScale(t *rapid.T, cfg genCfg) scale {
	s := scale{nodes: genNodes(t, cfg)}
	groups := rapid.IntRange(0, cfg.maxGroups).Draw(t, "groups")
	for g := range groups {
		name := fmt.Sprintf("default/app%d", g)
		tmpl := Replica{Group: name}
		if cfg.selectors {
			tmpl.NodeSelector = rapid.SampledFrom(testSelectors).Draw(t, "selector")
		}
		if cfg.caps {
			tmpl.CPUMilli = rapid.Int64Range(0, 8).Draw(t, "req.cpu") * 125
			tmpl.MemBytes = rapid.Int64Range(0, 8).Draw(t, "req.mem") << 27
		}
		tmpl.SpreadKey = rapid.SampledFrom([]string{"", "", "zone", "disk"}).Draw(t, "spreadKey")
		n := rapid.IntRange(0, cfg.maxPerGroup).Draw(t, "before")
		m := rapid.IntRange(0, cfg.maxPerGroup).Draw(t, "after")
		for j := range max(n, m) {
			r := tmpl
			r.Key, r.Affinity, r.Ordinal = fmt.Sprintf("%s-%d", name, j), fmt.Sprintf("%s/%d", name, j), j
			if j < n {
				s.before = append(s.before, r)
			}
			if j < m {
				s.after = append(s.after, r)
			}
			if j < min(n, m) {
				s.kept = append(s.kept, r.Key)
			}
		}
	}
	alone := rapid.IntRange(0, 2*cfg.maxPerGroup).Draw(t, "alone")
	for j := range alone {
		r := Replica{Key: fmt.Sprintf("alone-%d", j)}
		if cfg.pins && len(s.nodes) > 0 && rapid.IntRange(0, 3).Draw(t, "pinned") == 0 {
			r.Pin = s.nodes[rapid.IntRange(0, len(s.nodes)-1).Draw(t, "pin")].Name
		}
		in := rapid.IntRange(0, 2).Draw(t, "in") // 0: before only, 1: after only, 2: both
		if in != 1 {
			s.before = append(s.before, r)
		}
		if in != 0 {
			s.after = append(s.after, r)
		}
		if in == 2 {
			s.kept = append(s.kept, r.Key)
		}
	}
	return s
}

// unpressed reports whether neither the load bound nor capacity changed
// anything: Assign gives what it gives with no bound and unlimited nodes.
func unpressed(nodes []Node, replicas []Replica, opts Options, res Result) bool {
	free := make([]Node, len(nodes))
	for i, n := range nodes {
		n.CPUMilli, n.MemBytes = 0, 0
		free[i] = n
	}
	return reflect.DeepEqual(res, Assign(free, replicas, Options{LoadFactor: math.Inf(1)}))
}

// Growth: scaling groups up or down (adding or removing their highest
// ordinals), adding and removing replicas in no group, moves no replica that
// stays, whenever the bound and capacity bind in neither placement. Without
// a bound and capacities they never bind, so it holds unconditionally.
func TestScaleMovesNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  genCfg
		opts func(*rapid.T) Options
		min  float64 // least share of cases where the condition held
	}{
		{"unbounded", genCfg{minNodes: 0, maxNodes: 40, maxGroups: 10, maxPerGroup: 30, selectors: true, pins: true, cordons: true},
			func(*rapid.T) Options { return Options{LoadFactor: math.Inf(1)} }, 1},
		{"any", fullCfg, genOptions, 0.05},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var cases, held atomic.Int64
			rapid.Check(t, func(t *rapid.T) {
				s := genScale(t, tc.cfg)
				opts := tc.opts(t)
				before := Assign(s.nodes, s.before, opts)
				after := Assign(s.nodes, s.after, opts)
				cases.Add(1)
				if !unpressed(s.nodes, s.before, opts, before) || !unpressed(s.nodes, s.after, opts, after) {
					if tc.min == 1 {
						t.Fatalf("no bound, no capacity, yet the result differs from the free one")
					}
					return
				}
				held.Add(1)
				for _, k := range s.kept {
					b, bok := before.Assign[k]
					a, aok := after.Assign[k]
					if b != a || bok != aok {
						t.Fatalf("%s moved from %q to %q", k, b, a)
					}
				}
			})
			share := float64(held.Load()) / float64(cases.Load())
			t.Logf("condition held in %d of %d cases (%.2f)", held.Load(), cases.Load(), share)
			if share < tc.min {
				t.Errorf("condition held in %.2f of the cases, want at least %.2f", share, tc.min)
			}
		})
	}
}
