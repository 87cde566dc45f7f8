// Package podnet is the pod network between peers: every peer's pods reach
// every other peer's pods by their IP addresses, without address
// translation, as Kubernetes requires, and every peer reaches every pod.
//
// Each peer runs its pods on a bridge with a pod subnet of its own (package
// runtime). This package routes the other peers' pod subnets, one of three
// ways per peer:
//
//   - none: a peer sharing this machine (every peer in the same network
//     namespace) needs no route, its bridge is local;
//   - WireGuard: when this peer and the other both run the encrypted
//     overlay (a secured cluster: each advertises a WireGuard public key and
//     port), the other peer is a WireGuard peer of this one (endpoint its
//     address and port, allowed IPs its pod subnet) and its pod subnet is
//     routed to the WireGuard device; this works behind routers too;
//   - host-gw: otherwise, a route "subnet via peer" for a peer on a network
//     this machine reaches directly (one link, no router between: the
//     "host-gw" backend of flannel), which costs nothing per packet but is
//     not encrypted. A peer behind a router without WireGuard is left out
//     and reported ([Plan] says why).
//
// [Plan] is the pure decision (which routes, which WireGuard peers, which
// peers left out, and why); [Apply] makes the kernel's routing table match
// it, touching only the routes it made (marked with its own routing
// protocol number), and [WireGuard] is the user-space WireGuard device
// (wireguard-go over a TUN device: this kernel has no WireGuard module).
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
	// WireGuardKey is its WireGuard public key (base64), and WireGuardPort
	// the UDP port its device listens on; empty or 0: it runs no overlay.
	WireGuardKey  string
	WireGuardPort int
}

// Route sends Dst (a peer's pod subnet) to Via (that peer), or, with
// WireGuard set, to the WireGuard device (Via is then invalid).
type Route struct {
	Dst       netip.Prefix
	Via       netip.Addr
	Peer      string
	WireGuard bool
}

// WireGuardPeer is another peer as the WireGuard device knows it: its
// public key, where its device listens, and the addresses it may send
// from and is sent (its pod subnet).
type WireGuardPeer struct {
	Peer      string
	PublicKey string // base64
	Endpoint  netip.AddrPort
	Allowed   netip.Prefix
}

// Skipped is a peer Plan made no route for, and why.
type Skipped struct {
	Peer   string
	Reason string
}

// Decision is what Plan decided: the routes to the other peers' pod
// subnets (sorted by subnet), the WireGuard peers (sorted by name; each
// has a WireGuard route), and the peers left out.
type Decision struct {
	Routes    []Route
	WireGuard []WireGuardPeer
	Skipped   []Skipped
}

// Host is what Plan needs to know of this machine.
type Host struct {
	// Self is this peer's pod subnet.
	Self netip.Prefix
	// WireGuard is whether this peer runs the encrypted overlay.
	WireGuard bool
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

// Plan returns, for every other peer, how this machine reaches its pods.
// A peer with an invalid address or subnet, a subnet overlapping this
// peer's or another peer's (the first by name keeps it), a peer on this
// machine, or one behind a router that does not run WireGuard with this
// one, gets no route. Two peers that both run WireGuard are WireGuard
// peers of each other; else a peer on a directly attached network gets a
// host-gw route.
func Plan(h Host, peers []Peer) Decision {
	peers = slices.Clone(peers)
	slices.SortFunc(peers, func(a, b Peer) int { return cmp.Compare(a.Name, b.Name) })
	var d Decision
	skip := func(p Peer, format string, args ...any) {
		d.Skipped = append(d.Skipped, Skipped{Peer: p.Name, Reason: fmt.Sprintf(format, args...)})
	}
	for _, p := range peers {
		wg := h.WireGuard && p.WireGuardKey != ""
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
		case wg && !ValidKey(p.WireGuardKey):
			skip(p, "its WireGuard public key %q is not a key", p.WireGuardKey)
			continue
		case wg && (p.WireGuardPort <= 0 || p.WireGuardPort > 65535):
			skip(p, "its WireGuard port %d is not a port", p.WireGuardPort)
			continue
		case !wg && h.Direct != nil && !h.Direct(p.Addr):
			skip(p, "address %v is behind a router and the peers do not both run WireGuard (a cluster with a key, --wireguard-port not 0): its pods need the overlay", p.Addr)
			continue
		}
		dup := false
		for _, r := range d.Routes {
			if r.Dst.Overlaps(p.Subnet) {
				skip(p, "pod subnet %v overlaps %v of peer %s", p.Subnet, r.Dst, r.Peer)
				dup = true
				break
			}
		}
		if dup {
			continue
		}
		if wg {
			d.Routes = append(d.Routes, Route{Dst: p.Subnet.Masked(), Peer: p.Name, WireGuard: true})
			d.WireGuard = append(d.WireGuard, WireGuardPeer{Peer: p.Name, PublicKey: p.WireGuardKey,
				Endpoint: netip.AddrPortFrom(p.Addr, uint16(p.WireGuardPort)), Allowed: p.Subnet.Masked()})
			continue
		}
		d.Routes = append(d.Routes, Route{Dst: p.Subnet.Masked(), Via: p.Addr, Peer: p.Name})
	}
	slices.SortFunc(d.Routes, func(a, b Route) int {
		return cmp.Or(a.Dst.Addr().Compare(b.Dst.Addr()), cmp.Compare(a.Dst.Bits(), b.Dst.Bits()))
	})
	return d
}

// OverlayMTU is the MTU of the WireGuard device over a link of MTU link:
// WireGuard adds at most 80 bytes (IPv6 40, UDP 8, its header 16, its tag
// 16), so 1420 on a 1500 link, as wg-quick does; never below IPv6's 1280.
func OverlayMTU(link int) int {
	return max(link-80, 1280)
}
