package podnet

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

func peer(name, addr, subnet string) Peer {
	p := Peer{Name: name}
	p.Addr, _ = netip.ParseAddr(addr)
	p.Subnet, _ = netip.ParsePrefix(subnet)
	return p
}

func testHost(wg bool) Host {
	return Host{
		Self:      netip.MustParsePrefix("10.88.1.0/24"),
		WireGuard: wg,
		Local:     func(a netip.Addr) bool { return a == netip.MustParseAddr("10.0.0.1") || a.IsLoopback() },
		Direct:    func(a netip.Addr) bool { return netip.MustParsePrefix("10.0.0.0/24").Contains(a) },
		Connected: func(p netip.Prefix) bool { return p == netip.MustParsePrefix("10.88.9.0/24") },
	}
}

func TestPlan(t *testing.T) {
	d := Plan(testHost(false), []Peer{
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
	if !slices.Equal(d.Routes, want) || len(d.WireGuard) != 0 {
		t.Fatalf("routes = %v, WireGuard %v, want %v", d.Routes, d.WireGuard, want)
	}
	got := map[string]bool{}
	for _, s := range d.Skipped {
		got[s.Peer] = true
	}
	for _, p := range []string{"far", "clash-self", "d-dup", "none", "v6"} {
		if !got[p] {
			t.Errorf("%s not reported as skipped: %v", p, d.Skipped)
		}
	}
	if got["same-machine"] || got["connected"] || len(d.Skipped) != 5 {
		t.Errorf("skipped = %v", d.Skipped)
	}
}

func TestPlanWireGuard(t *testing.T) {
	k1, _ := NewKey()
	k2, _ := NewKey()
	wg := func(p Peer, key Key, port int) Peer {
		p.WireGuardKey, p.WireGuardPort = key.Public().String(), port
		return p
	}
	peers := []Peer{
		wg(peer("b", "10.0.0.2", "10.88.2.0/24"), k1, 7949),
		peer("c-plain", "10.0.0.3", "10.88.3.0/24"),                     // runs no WireGuard: host-gw
		wg(peer("far", "192.168.7.1", "10.88.7.0/24"), k2, 7949),        // behind a router: WireGuard
		peer("far-plain", "192.168.7.2", "10.88.6.0/24"),                // behind a router, no WireGuard
		wg(peer("same-machine", "127.0.0.5", "10.88.5.0/24"), k1, 7949), // on this machine: nothing
		wg(peer("connected", "10.0.0.9", "10.88.9.0/24"), k1, 7949),     // nothing
		{Name: "badkey", Addr: netip.MustParseAddr("10.0.0.4"), Subnet: netip.MustParsePrefix("10.88.4.0/24"), WireGuardKey: "nope", WireGuardPort: 7949},
		wg(peer("badport", "10.0.0.8", "10.88.8.0/24"), k2, 0),
	}
	d := Plan(testHost(true), peers)
	wantRoutes := []Route{
		{Dst: netip.MustParsePrefix("10.88.2.0/24"), Peer: "b", WireGuard: true},
		{Dst: netip.MustParsePrefix("10.88.3.0/24"), Via: netip.MustParseAddr("10.0.0.3"), Peer: "c-plain"},
		{Dst: netip.MustParsePrefix("10.88.7.0/24"), Peer: "far", WireGuard: true},
	}
	if !slices.Equal(d.Routes, wantRoutes) {
		t.Fatalf("routes = %v, want %v", d.Routes, wantRoutes)
	}
	wantWG := []WireGuardPeer{
		{Peer: "b", PublicKey: k1.Public().String(), Endpoint: netip.MustParseAddrPort("10.0.0.2:7949"), Allowed: netip.MustParsePrefix("10.88.2.0/24")},
		{Peer: "far", PublicKey: k2.Public().String(), Endpoint: netip.MustParseAddrPort("192.168.7.1:7949"), Allowed: netip.MustParsePrefix("10.88.7.0/24")},
	}
	if !slices.Equal(d.WireGuard, wantWG) {
		t.Fatalf("WireGuard = %v, want %v", d.WireGuard, wantWG)
	}
	var skipped []string
	for _, s := range d.Skipped {
		skipped = append(skipped, s.Peer)
	}
	if !slices.Equal(skipped, []string{"badkey", "badport", "far-plain"}) {
		t.Fatalf("skipped = %v", d.Skipped)
	}
	// This peer without WireGuard (--insecure, or port 0): host-gw for
	// the direct ones, whatever they advertise.
	d = Plan(testHost(false), peers)
	if len(d.WireGuard) != 0 || len(d.Routes) != 4 {
		t.Fatalf("without WireGuard: %+v", d)
	}
	for _, r := range d.Routes {
		if r.WireGuard || !r.Via.IsValid() {
			t.Fatalf("without WireGuard, route %v", r)
		}
	}
}

// Plan is a function of the set of peers (not their order); its routes
// never overlap one another nor this peer's subnet; every peer is routed,
// skipped or on this machine; a WireGuard peer exactly when both run it,
// each with a route to the device and nothing else, its allowed IPs its
// subnet; a host-gw route only to a direct peer; and two peers that both
// run WireGuard decide the same of each other.
func TestPlanProperties(t *testing.T) {
	keys := make([]string, 4)
	for i := range keys {
		k, _ := NewKey()
		keys[i] = k.Public().String()
	}
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(0, 30).Draw(t, "n")
		self := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 88, byte(rapid.IntRange(0, 7).Draw(t, "self")), 0}), 24)
		var peers []Peer
		for i := range n {
			bits := rapid.SampledFrom([]int{22, 24, 25}).Draw(t, "bits")
			sub := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 88, byte(rapid.IntRange(0, 9).Draw(t, "third")), 0}), bits)
			addr := netip.AddrFrom4([4]byte{10, 0, byte(rapid.IntRange(0, 2).Draw(t, "net")), byte(i + 1)})
			p := Peer{Name: fmt.Sprintf("p%02d", i), Addr: addr, Subnet: sub}
			if rapid.Bool().Draw(t, "wg") {
				p.WireGuardKey = rapid.SampledFrom(append(keys, "bad")).Draw(t, "key")
				p.WireGuardPort = rapid.SampledFrom([]int{7949, 0, 51820}).Draw(t, "port")
			}
			peers = append(peers, p)
		}
		h := Host{Self: self, WireGuard: rapid.Bool().Draw(t, "self wg"),
			Local:  func(a netip.Addr) bool { return a.As4()[3] == 1 },
			Direct: func(a netip.Addr) bool { return a.As4()[2] == 0 }}
		d := Plan(h, peers)
		shuffled := rapid.Permutation(peers).Draw(t, "order")
		d2 := Plan(h, shuffled)
		if !slices.Equal(d.Routes, d2.Routes) || !slices.Equal(d.Skipped, d2.Skipped) || !slices.Equal(d.WireGuard, d2.WireGuard) {
			t.Fatalf("order changed the plan: %+v / %+v", d, d2)
		}
		byName := map[string]Peer{}
		for _, p := range peers {
			byName[p.Name] = p
		}
		wgPeers := map[string]WireGuardPeer{}
		for _, w := range d.WireGuard {
			wgPeers[w.Peer] = w
			p := byName[w.Peer]
			if !h.WireGuard || w.PublicKey != p.WireGuardKey || w.Allowed != p.Subnet.Masked() || w.Endpoint.Addr() != p.Addr || int(w.Endpoint.Port()) != p.WireGuardPort {
				t.Fatalf("WireGuard peer %+v of %+v (this peer runs WireGuard: %v)", w, p, h.WireGuard)
			}
		}
		for i, r := range d.Routes {
			if r.Dst.Overlaps(self) {
				t.Fatalf("route %v overlaps this peer's %v", r, self)
			}
			for _, o := range d.Routes[i+1:] {
				if r.Dst.Overlaps(o.Dst) {
					t.Fatalf("routes %v and %v overlap", r, o)
				}
			}
			p := byName[r.Peer]
			_, isWG := wgPeers[r.Peer]
			switch {
			case r.WireGuard != isWG:
				t.Fatalf("route %v: WireGuard %v, WireGuard peer %v", r, r.WireGuard, isWG)
			case r.WireGuard && r.Via.IsValid():
				t.Fatalf("route %v to WireGuard has a gateway", r)
			case !r.WireGuard && (r.Via != p.Addr || !h.Direct(p.Addr)):
				t.Fatalf("host-gw route %v to a peer that is not direct: %+v", r, p)
			case !r.WireGuard && h.WireGuard && ValidKey(p.WireGuardKey) && p.WireGuardPort > 0:
				t.Fatalf("host-gw route %v where both run WireGuard", r)
			}
		}
		if len(wgPeers) > len(d.Routes) {
			t.Fatalf("WireGuard peers without routes: %+v", d)
		}
		seen := map[string]bool{}
		for _, r := range d.Routes {
			seen[r.Peer] = true
		}
		for _, s := range d.Skipped {
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

// Two peers that both run WireGuard see each other as WireGuard peers;
// if either does not, neither does: the overlay is symmetric.
func TestPlanSymmetric(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		ka, _ := NewKey()
		kb, _ := NewKey()
		aWG, bWG := rapid.Bool().Draw(t, "a"), rapid.Bool().Draw(t, "b")
		direct := rapid.Bool().Draw(t, "direct")
		mk := func(name, addr, subnet string, on bool, k Key) (Peer, Host) {
			p := peer(name, addr, subnet)
			if on {
				p.WireGuardKey, p.WireGuardPort = k.Public().String(), 7949
			}
			return p, Host{Self: p.Subnet, WireGuard: on, Direct: func(netip.Addr) bool { return direct }}
		}
		pa, ha := mk("a", "10.0.0.1", "10.88.1.0/24", aWG, ka)
		pb, hb := mk("b", "10.0.1.1", "10.88.2.0/24", bWG, kb)
		da, db := Plan(ha, []Peer{pb}), Plan(hb, []Peer{pa})
		if len(da.WireGuard) != len(db.WireGuard) || len(da.Routes) != len(db.Routes) {
			t.Fatalf("a decided %+v, b decided %+v", da, db)
		}
		if (len(da.WireGuard) == 1) != (aWG && bWG) {
			t.Fatalf("both run WireGuard: %v; a decided %+v", aWG && bWG, da)
		}
	})
}

func TestOverlayMTU(t *testing.T) {
	for link, want := range map[int]int{1500: 1420, 9000: 8920, 1280: 1280, 1400: 1320} {
		if got := OverlayMTU(link); got != want {
			t.Errorf("OverlayMTU(%d) = %d, want %d", link, got, want)
		}
	}
}

func TestKeys(t *testing.T) {
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseKey(k.String())
	if err != nil || back != k {
		t.Fatalf("ParseKey(%q) = %v, %v", k, back, err)
	}
	if k.Public() == k || k.Public() == (Key{}) || k.Public() != back.Public() {
		t.Fatalf("public key of %v: %v", k, k.Public())
	}
	for _, bad := range []string{"", "abc", k.String()[:40]} {
		if ValidKey(bad) {
			t.Errorf("ValidKey(%q)", bad)
		}
	}
}
