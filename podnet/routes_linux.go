package podnet

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Protocol marks the routes this package makes (the routing protocol
// field, as `ip route` shows it: "proto 177"); no other route is touched.
const Protocol = netlink.RouteProtocol(177)

// Apply makes this machine's routes of Protocol match routes: it replaces
// the wanted ones and deletes the others. Routes to WireGuard go to the
// device of index wgLink (0: there is none, and such routes fail). It
// returns the number of routes added or changed and removed.
func Apply(routes []Route, wgLink int) (changed, removed int, err error) {
	have, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: Protocol}, netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return 0, 0, fmt.Errorf("list routes: %w", err)
	}
	want := map[netip.Prefix]routeTarget{}
	for _, r := range routes {
		if r.WireGuard {
			want[r.Dst] = routeTarget{link: wgLink}
		} else {
			want[r.Dst] = routeTarget{via: r.Via}
		}
	}
	var errs []error
	for _, h := range have {
		dst, via := routeKey(h)
		if w, ok := want[dst]; ok && w == via {
			delete(want, dst) // already there
			continue
		}
		if _, ok := want[dst]; ok {
			continue // replaced below
		}
		if err := netlink.RouteDel(&h); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route %v: %w", dst, err))
			continue
		}
		removed++
	}
	for _, r := range routes {
		if _, ok := want[r.Dst]; !ok {
			continue
		}
		dst := &net.IPNet{IP: r.Dst.Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), r.Dst.Addr().BitLen())}
		nr := &netlink.Route{Dst: dst, Gw: r.Via.AsSlice(), Protocol: Protocol}
		if r.WireGuard {
			if wgLink == 0 {
				errs = append(errs, fmt.Errorf("route %v to WireGuard (peer %s): no WireGuard device", r.Dst, r.Peer))
				continue
			}
			nr = &netlink.Route{Dst: dst, LinkIndex: wgLink, Scope: netlink.SCOPE_LINK, Protocol: Protocol}
		}
		if err := netlink.RouteReplace(nr); err != nil {
			errs = append(errs, fmt.Errorf("route %v via %v (peer %s, WireGuard %v): %w", r.Dst, r.Via, r.Peer, r.WireGuard, err))
			continue
		}
		changed++
	}
	return changed, removed, errors.Join(errs...)
}

// routeTarget is where a route sends: a gateway, or (no gateway) a device.
type routeTarget struct {
	via  netip.Addr
	link int
}

func routeKey(r netlink.Route) (netip.Prefix, routeTarget) {
	var dst netip.Prefix
	if r.Dst != nil {
		a, _ := netip.AddrFromSlice(r.Dst.IP)
		ones, _ := r.Dst.Mask.Size()
		dst = netip.PrefixFrom(a.Unmap(), ones)
	}
	via, _ := netip.AddrFromSlice(r.Gw)
	if via.IsValid() {
		return dst, routeTarget{via: via.Unmap()}
	}
	return dst, routeTarget{link: r.LinkIndex}
}

// MachineHost returns the Host of this machine's network namespace, for
// a peer whose pod subnet is self.
func MachineHost(self netip.Prefix) Host {
	return Host{
		Self: self,
		Local: func(a netip.Addr) bool {
			rs, err := netlink.RouteGet(a.AsSlice())
			return err == nil && len(rs) > 0 && rs[0].Type == unix.RTN_LOCAL
		},
		Direct: func(a netip.Addr) bool {
			rs, err := netlink.RouteGet(a.AsSlice())
			return err == nil && len(rs) > 0 && rs[0].Gw == nil
		},
		Connected: func(p netip.Prefix) bool {
			rs, err := netlink.RouteGet(p.Addr().Next().AsSlice())
			if err != nil || len(rs) == 0 || rs[0].Gw != nil {
				return false
			}
			// Routed by the kernel to a device, not by this package.
			all, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Dst: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}, netlink.RT_FILTER_DST)
			if err != nil {
				return false
			}
			for _, r := range all {
				if r.Protocol != Protocol && r.Gw == nil {
					return true
				}
			}
			return false
		},
	}
}
