// Package podnet is the pod network between peers: every peer's pods reach
// every other peer's pods by their IP addresses, without address
// translation, as Kubernetes requires.
//
// Each peer runs its pods on a bridge with a pod subnet of its own (package
// runtime). This package routes the other peers' pod subnets: a route
// "subnet via peer" for every peer on a network this machine reaches
// directly (one link, no router between: the "host-gw" backend of flannel),
// which costs nothing per packet. A peer whose address is reached through
// a router is left out and reported ([Plan] says why); an overlay (VXLAN,
// or WireGuard for encryption) is what such peers need, and is not built
// yet. Peers sharing one machine (every peer in the same network namespace)
// need no route: their bridges are all local.
//
// [Plan] is the pure decision (which routes, which peers left out, and
// why); [Apply] makes the kernel's routing table match it, touching only
// the routes it made (marked with its own routing protocol number).
package podnet

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// Peer is another peer as membership knows it.
type Peer struct {
	Name   string
	Addr   netip.Addr   // its address (where its gossip and API listen)
	Subnet netip.Prefix // its pod subnet
}

// Route sends Dst (a peer's pod subnet) to Via (that peer).
type Route struct {
	Dst  netip.Prefix
	Via  netip.Addr
	Peer string
}

// Skipped is a peer Plan made no route for, and why.
type Skipped struct {
	Peer   string
	Reason string
}

// Host is what Plan needs to know of this machine.
type Host struct {
	// Self is this peer's pod subnet.
	Self netip.Prefix
	// Local reports whether a is an address of this machine (a peer on
	// the same machine: its bridge is local).
	Local func(a netip.Addr) bool
	// Direct reports whether a is on a network this machine is attached
	// to (reached without a router).
	Direct func(a netip.Addr) bool
	// Connected reports whether p is already routed to a local device (a
	// bridge of a peer on this machine).
	Connected func(p netip.Prefix) bool
}

// Plan returns the routes to the other peers' pod subnets, sorted by
// subnet, and the peers it left out. A peer with an invalid address or
// subnet, a subnet overlapping this peer's or another peer's (the first by
// name keeps it), a peer on this machine, or one behind a router, gets no
// route.
func Plan(h Host, peers []Peer) ([]Route, []Skipped) {
	peers = slices.Clone(peers)
	slices.SortFunc(peers, func(a, b Peer) int { return cmp.Compare(a.Name, b.Name) })
	var routes []Route
	var skipped []Skipped
	skip := func(p Peer, format string, args ...any) {
		skipped = append(skipped, Skipped{Peer: p.Name, Reason: fmt.Sprintf(format, args...)})
	}
	for _, p := range peers {
		switch {
		case !p.Addr.IsValid() || !p.Subnet.IsValid():
			skip(p, "no address or pod subnet advertised")
			continue
		case p.Subnet.Addr().Is4() != p.Addr.Is4():
			skip(p, "pod subnet %v and address %v are not of one IP family", p.Subnet, p.Addr)
			continue
		case h.Self.IsValid() && p.Subnet.Overlaps(h.Self):
			skip(p, "pod subnet %v overlaps this peer's %v", p.Subnet, h.Self)
			continue
		case h.Local != nil && h.Local(p.Addr):
			continue // on this machine: its bridge is here
		case h.Connected != nil && h.Connected(p.Subnet.Masked()):
			continue // routed to a local device already
		case h.Direct != nil && !h.Direct(p.Addr):
			skip(p, "address %v is behind a router: its pods need an overlay (VXLAN or WireGuard), which this version lacks", p.Addr)
			continue
		}
		dup := false
		for _, r := range routes {
			if r.Dst.Overlaps(p.Subnet) {
				skip(p, "pod subnet %v overlaps %v of peer %s", p.Subnet, r.Dst, r.Peer)
				dup = true
				break
			}
		}
		if !dup {
			routes = append(routes, Route{Dst: p.Subnet.Masked(), Via: p.Addr, Peer: p.Name})
		}
	}
	slices.SortFunc(routes, func(a, b Route) int {
		return cmp.Or(a.Dst.Addr().Compare(b.Dst.Addr()), cmp.Compare(a.Dst.Bits(), b.Dst.Bits()))
	})
	return routes, skipped
}
