package podnet

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

func TestPlan(t *testing.T) {
	h := Host{
		Self:      netip.MustParsePrefix("10.88.1.0/24"),
		Local:     func(a netip.Addr) bool { return a == netip.MustParseAddr("10.0.0.1") || a.IsLoopback() },
		Direct:    func(a netip.Addr) bool { return netip.MustParsePrefix("10.0.0.0/24").Contains(a) },
		Connected: func(p netip.Prefix) bool { return p == netip.MustParsePrefix("10.88.9.0/24") },
	}
	peer := func(name, addr, subnet string) Peer {
		p := Peer{Name: name}
		p.Addr, _ = netip.ParseAddr(addr)
		p.Subnet, _ = netip.ParsePrefix(subnet)
		return p
	}
	routes, skipped := Plan(h, []Peer{
		peer("c", "10.0.0.3", "10.88.3.0/24"),
		peer("b", "10.0.0.2", "10.88.2.7/24"), // not masked: routed masked
		peer("same-machine", "127.0.0.5", "10.88.5.0/24"),
		peer("connected", "10.0.0.9", "10.88.9.0/24"),
		peer("far", "192.168.7.1", "10.88.7.0/24"),
		peer("clash-self", "10.0.0.4", "10.88.1.0/25"),
		peer("d-dup", "10.0.0.6", "10.88.3.0/24"), // after c by name: c keeps it
		peer("none", "", ""),
		peer("v6", "fd00::1", "10.88.8.0/24"),
	})
	want := []Route{
		{Dst: netip.MustParsePrefix("10.88.2.0/24"), Via: netip.MustParseAddr("10.0.0.2"), Peer: "b"},
		{Dst: netip.MustParsePrefix("10.88.3.0/24"), Via: netip.MustParseAddr("10.0.0.3"), Peer: "c"},
	}
	if !slices.Equal(routes, want) {
		t.Fatalf("routes = %v, want %v", routes, want)
	}
	got := map[string]bool{}
	for _, s := range skipped {
		got[s.Peer] = true
	}
	for _, p := range []string{"far", "clash-self", "d-dup", "none", "v6"} {
		if !got[p] {
			t.Errorf("%s not reported as skipped: %v", p, skipped)
		}
	}
	if got["same-machine"] || got["connected"] || len(skipped) != 5 {
		t.Errorf("skipped = %v", skipped)
	}
}

// Plan is a function of the set of peers (not their order), its routes
// never overlap one another nor this peer's subnet, and every peer is
// routed, skipped or on this machine.
func TestPlanProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(0, 30).Draw(t, "n")
		self := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 88, byte(rapid.IntRange(0, 7).Draw(t, "self")), 0}), 24)
		var peers []Peer
		for i := range n {
			bits := rapid.SampledFrom([]int{22, 24, 25}).Draw(t, "bits")
			sub := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 88, byte(rapid.IntRange(0, 9).Draw(t, "third")), 0}), bits)
			addr := netip.AddrFrom4([4]byte{10, 0, byte(rapid.IntRange(0, 2).Draw(t, "net")), byte(i + 1)})
			peers = append(peers, Peer{Name: fmt.Sprintf("p%02d", i), Addr: addr, Subnet: sub})
		}
		h := Host{Self: self,
			Local:  func(a netip.Addr) bool { return a.As4()[3] == 1 },
			Direct: func(a netip.Addr) bool { return a.As4()[2] == 0 }}
		routes, skipped := Plan(h, peers)
		shuffled := rapid.Permutation(peers).Draw(t, "order")
		r2, s2 := Plan(h, shuffled)
		if !slices.Equal(routes, r2) || !slices.Equal(skipped, s2) {
			t.Fatalf("order changed the plan: %v %v / %v %v", routes, skipped, r2, s2)
		}
		for i, r := range routes {
			if r.Dst.Overlaps(self) {
				t.Fatalf("route %v overlaps this peer's %v", r, self)
			}
			for _, o := range routes[i+1:] {
				if r.Dst.Overlaps(o.Dst) {
					t.Fatalf("routes %v and %v overlap", r, o)
				}
			}
		}
		seen := map[string]bool{}
		for _, r := range routes {
			seen[r.Peer] = true
		}
		for _, s := range skipped {
			if seen[s.Peer] {
				t.Fatalf("%s both routed and skipped", s.Peer)
			}
			seen[s.Peer] = true
		}
		for _, p := range peers {
			if !seen[p.Name] && !h.Local(p.Addr) {
				t.Fatalf("peer %v neither routed nor skipped", p)
			}
		}
	})
}
