package gossip

import (
	"fmt"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"pgregory.net/rapid"
)

// TestNeighboursGraph: at any size the links (a dials b, or b dials a)
// connect every member, each member dials at most links+2 others, a small
// cluster is a full mesh, and the choice depends only on the set of names.
func TestNeighboursGraph(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 400).Draw(t, "members")
		full := rapid.IntRange(0, 40).Draw(t, "fullMesh")
		links := rapid.IntRange(0, 12).Draw(t, "links")
		members := make([]string, n)
		for i := range members {
			members[i] = fmt.Sprintf("p%04d", rapid.IntRange(0, 9999).Draw(t, "name"))
		}
		set := map[string]bool{}
		for _, m := range members {
			set[m] = true
		}
		adj := map[string]map[string]bool{}
		for m := range set {
			adj[m] = map[string]bool{}
		}
		for m := range set {
			picked := neighbours(m, members, full, links)
			if picked[m] {
				t.Fatalf("%s picks itself", m)
			}
			if len(set)-1 <= full && len(picked) != len(set)-1 {
				t.Fatalf("%d members, full mesh up to %d: %s picks %d", len(set), full, m, len(picked))
			}
			if len(set)-1 > full && len(picked) > links+2 {
				t.Fatalf("%s picks %d, want at most %d", m, len(picked), links+2)
			}
			rev := make([]string, len(members))
			for i := range members {
				rev[len(members)-1-i] = members[i]
			}
			if again := neighbours(m, rev, full, links); fmt.Sprint(again) != fmt.Sprint(picked) {
				t.Fatalf("%s: the choice depends on the order of members", m)
			}
			for p := range picked {
				if !set[p] {
					t.Fatalf("%s picks %s, not a member", m, p)
				}
				adj[m][p], adj[p][m] = true, true
			}
		}
		var start string
		for m := range set {
			start = m
			break
		}
		seen := map[string]bool{start: true}
		queue := []string{start}
		for len(queue) > 0 {
			m := queue[0]
			queue = queue[1:]
			for p := range adj[m] {
				if !seen[p] {
					seen[p] = true
					queue = append(queue, p)
				}
			}
		}
		if len(seen) != len(set) {
			t.Fatalf("the links reach %d of %d members", len(seen), len(set))
		}
	})
}

// TestNeighboursSpread: with rendezvous links no member is picked by far
// more than its share (the most picked of 1,000 by at most 4x the mean).
func TestNeighboursSpread(t *testing.T) {
	members := make([]string, 1000)
	for i := range members {
		members[i] = fmt.Sprintf("p%04d", i)
	}
	picked := map[string]int{}
	for _, m := range members {
		for p := range neighbours(m, members, fullMeshUpTo, neighbourLinks) {
			picked[p]++
		}
	}
	most := 0
	for _, c := range picked {
		most = max(most, c)
	}
	mean := float64(len(members)*(neighbourLinks+2)) / float64(len(members))
	if float64(most) > 4*mean {
		t.Fatalf("a member is picked by %d, mean %.1f", most, mean)
	}
	t.Logf("most picked %d, mean %.1f", most, mean)
}

func BenchmarkNeighbours1000(b *testing.B) {
	members := make([]string, 1000)
	for i := range members {
		members[i] = fmt.Sprintf("p%04d", i)
	}
	for b.Loop() {
		neighbours("p0500", members, fullMeshUpTo, neighbourLinks)
	}
}

// TestDialsAtOnce: a member event dials the member at once in a full mesh,
// and beyond it only a member picked as a neighbour, whatever the event;
// the others wait for the reconcile loop's next pick (which the event
// asks for).
func TestDialsAtOnce(t *testing.T) {
	alive := func(names ...string) map[peer.ID]string {
		out := map[peer.ID]string{}
		for _, n := range names {
			out[peer.ID("id-"+n)] = n
		}
		return out
	}
	n := &Node{cfg: Config{FullMeshUpTo: 3}, peers: alive("a", "b", "c")}
	for _, m := range []string{"a", "b", "c"} {
		if !n.dialsAtOnce(m) {
			t.Errorf("full mesh of 3: %s not dialed at once", m)
		}
	}
	n.peers = alive("a", "b", "c", "d", "e")
	n.picks = map[string]bool{"b": true, "d": true}
	for m, want := range map[string]bool{"a": false, "b": true, "c": false, "d": true, "e": false, "new": false} {
		if got := n.dialsAtOnce(m); got != want {
			t.Errorf("5 alive beyond a full mesh of 3, picks b and d: dialsAtOnce(%s) = %v, want %v", m, got, want)
		}
	}
}
