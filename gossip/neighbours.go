package gossip

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
)

// Which members a peer keeps a data-plane connection to. Up to
// fullMeshUpTo members every peer connects to every other (deltas then
// reach everyone in one hop). Beyond, each peer dials only its neighbours:
// its two neighbours on the ring of member names (so the graph is
// connected whatever the hashes say) and the neighbourLinks members that
// rank highest for it by rendezvous hashing (so the graph is an expander:
// a delta crosses the cluster in a few hops, and no peer is every peer's
// neighbour). Connections made by others are kept; a connection this peer
// dialed to a member that neither side picks (an anti-entropy exchange
// with a random peer) is closed once idle for connGrace.
const (
	fullMeshUpTo   = 32
	neighbourLinks = 8
)

// neighbours returns the members self dials (self never among them):
// every other member when there are at most fullMesh, else its ring
// neighbours and the links members ranking highest for it. members need
// not be sorted and may contain self or repeat a name. It is pure and costs O(members).
func neighbours(self string, members []string, fullMesh, links int) map[string]bool {
	out := map[string]bool{}
	others := make([]string, 0, len(members))
	for _, m := range members {
		if m != self {
			others = append(others, m)
		}
	}
	slices.Sort(others)
	others = slices.Compact(others)
	if len(others) <= fullMesh {
		for _, m := range others {
			out[m] = true
		}
		return out
	}
	i, _ := slices.BinarySearch(others, self)
	ring := slices.Insert(slices.Clone(others), i, self)
	out[ring[(i+1)%len(ring)]] = true
	out[ring[(i+len(ring)-1)%len(ring)]] = true
	type ranked struct {
		name string
		w    uint64
	}
	top := make([]ranked, 0, links+1)
	for _, m := range others {
		if links <= 0 {
			break
		}
		w := pairWeight(self, m)
		if len(top) == links && w <= top[len(top)-1].w {
			continue
		}
		j, _ := slices.BinarySearchFunc(top, w, func(r ranked, w uint64) int {
			switch {
			case r.w > w:
				return -1
			case r.w < w:
				return 1
			}
			return 0
		})
		top = slices.Insert(top, j, ranked{m, w})
		if len(top) > links {
			top = top[:links]
		}
	}
	for _, r := range top {
		out[r.name] = true
	}
	return out
}

// pairWeight is the rendezvous weight of member m for self: the first 8
// bytes of a SHA-256 of both names (a few hundred nanoseconds; the choice
// runs every few seconds over the members).
func pairWeight(self, m string) uint64 {
	h := sha256.New()
	h.Write([]byte(self))
	h.Write([]byte{0})
	h.Write([]byte(m))
	var sum [sha256.Size]byte
	return binary.BigEndian.Uint64(h.Sum(sum[:0]))
}
