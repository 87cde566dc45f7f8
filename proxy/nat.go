package proxy

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// natPort is one service address the kernel may translate: a ClusterIP,
// NodePort or LoadBalancer port with the endpoints behind it.
type natPort struct {
	Service   string         // "ns/name:port[/UDP]", for logs
	Addr      netip.AddrPort // ClusterIP:Port, NodeIP:NodePort or NodeIP:Port
	Proto     string         // TCP or UDP
	Affinity  time.Duration  // ClientIP affinity timeout, 0: none
	Endpoints []natEndpoint  // sorted by address
}

// natEndpoint is one Ready endpoint of a natPort.
type natEndpoint struct {
	Addr  netip.AddrPort
	Node  string
	Local bool
}

// natPlan is what the kernel translates: the ports, sorted by address and
// protocol, and this peer's pod subnet (which decides what is
// masqueraded).
type natPlan struct {
	PodSubnet netip.Prefix
	Ports     []natPort
}

// natKey names an endpoint in the kernel's connection tracking.
type natKey struct {
	Addr  netip.AddrPort
	Proto string
}

// planNAT decides which service addresses the kernel translates. A port is
// left to the user-space proxy, with the reason in the returned map (keyed
// by the port's service and address), when the kernel cannot serve it
// alone: an address or endpoint that is not IPv4, an endpoint on a peer
// whose pods this machine has no route to (routable false; the proxy's hop
// reaches them). A port without endpoints is left to the proxy too, without
// a reason: its listener closes such connections at once. Without a valid
// IPv4 pod subnet nothing is translated.
func planNAT(cands []natPort, podSubnet netip.Prefix, routable func(node string) bool) (natPlan, map[string]string) {
	plan := natPlan{PodSubnet: podSubnet.Masked()}
	fallback := map[string]string{}
	if !podSubnet.IsValid() || !podSubnet.Addr().Is4() {
		for _, c := range cands {
			fallback[c.Service+" "+c.Addr.String()] = "this peer has no IPv4 pod subnet yet"
		}
		return natPlan{}, fallback
	}
	for _, c := range cands {
		id := c.Service + " " + c.Addr.String()
		if len(c.Endpoints) == 0 {
			continue
		}
		if !c.Addr.Addr().Is4() || c.Addr.Port() == 0 {
			fallback[id] = "the service address is not IPv4"
			continue
		}
		reason := ""
		for _, e := range c.Endpoints {
			switch {
			case !e.Addr.Addr().Is4() || e.Addr.Port() == 0:
				reason = fmt.Sprintf("endpoint %v is not an IPv4 address and port", e.Addr)
			case !e.Local && (routable == nil || !routable(e.Node)):
				reason = fmt.Sprintf("endpoint %v is on peer %s, whose pods this machine has no route to", e.Addr, e.Node)
			}
			if reason != "" {
				break
			}
		}
		if reason != "" {
			fallback[id] = reason
			continue
		}
		p := c
		p.Endpoints = slices.Clone(c.Endpoints)
		slices.SortFunc(p.Endpoints, func(a, b natEndpoint) int { return a.Addr.Compare(b.Addr) })
		p.Endpoints = slices.CompactFunc(p.Endpoints, func(a, b natEndpoint) bool { return a.Addr == b.Addr })
		if p.Affinity < 0 {
			p.Affinity = 0
		}
		plan.Ports = append(plan.Ports, p)
	}
	slices.SortFunc(plan.Ports, func(a, b natPort) int {
		return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Proto, b.Proto))
	})
	plan.Ports = slices.CompactFunc(plan.Ports, func(a, b natPort) bool { return a.Addr == b.Addr && a.Proto == b.Proto })
	return plan, fallback
}

// equal reports whether two plans translate the same.
func (p natPlan) equal(o natPlan) bool {
	return p.PodSubnet == o.PodSubnet && slices.EqualFunc(p.Ports, o.Ports, func(a, b natPort) bool {
		return a.Service == b.Service && a.Addr == b.Addr && a.Proto == b.Proto && a.Affinity == b.Affinity &&
			slices.Equal(a.Endpoints, b.Endpoints)
	})
}

// endpoints returns every endpoint the plan translates to.
func (p natPlan) endpoints() map[natKey]bool {
	out := map[natKey]bool{}
	for _, port := range p.Ports {
		for _, e := range port.Endpoints {
			out[natKey{e.Addr, port.Proto}] = true
		}
	}
	return out
}

// removedEndpoints returns the endpoints old translated to and next does
// not, sorted.
func removedEndpoints(old, next natPlan) []natKey {
	keep := next.endpoints()
	var out []natKey
	for k := range old.endpoints() {
		if !keep[k] {
			out = append(out, k)
		}
	}
	slices.SortFunc(out, func(a, b natKey) int { return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Proto, b.Proto)) })
	return out
}

// natState is what the proxy knows of the kernel's translation.
type natState struct {
	plan      natPlan
	applied   bool              // the table holds plan
	lingering map[natKey]bool   // TCP endpoints removed while their pods lived
	fallback  map[string]string // ports left to user space, and why (as last logged)
	errors    uint64
	forgotten uint64
}

// natEndpoints turns a port's endpoints into the kernel's (an address that
// does not parse stays invalid, and planNAT says so).
func natEndpoints(eps []Endpoint) []natEndpoint {
	out := make([]natEndpoint, 0, len(eps))
	for _, e := range eps {
		var ap netip.AddrPort
		if a, err := netip.ParseAddr(e.IP); err == nil && validPort(e.Port) {
			ap = netip.AddrPortFrom(a.Unmap(), uint16(e.Port))
		}
		out = append(out, natEndpoint{Addr: ap, Node: e.Node, Local: e.Local})
	}
	return out
}

// updateNAT makes the kernel translate what it can of cands (p.mu held):
// the table is replaced when the plan changed; connections to endpoints
// that left it are ended (UDP at once, TCP once the pod is gone).
func (p *Proxy) updateNAT(cands []natPort, warn func(key, msg string, args ...any)) {
	k := p.cfg.Kernel
	var self netip.Prefix
	if k.PodSubnet != nil {
		self = k.PodSubnet()
	}
	plan, fallback := planNAT(cands, self, k.Routable)
	for id, why := range fallback {
		if p.nat.fallback[id] != why {
			p.log.Info("service port served in user space", "port", id, "reason", why)
		}
	}
	p.nat.fallback = fallback
	if !p.nat.applied || !plan.equal(p.nat.plan) {
		prev := p.nat.plan
		if !p.nat.applied {
			prev = natPlan{}
		}
		if err := applyNAT(k.Table, plan, prev); err != nil {
			p.nat.errors++
			warn("nat "+err.Error(), "the kernel cannot translate services: the user-space proxy serves them", "table", k.Table, "err", err)
			if p.nat.applied {
				// Rules of an older plan may translate to pods that are gone.
				if err := removeNAT(k.Table); err == nil {
					p.nat.plan, p.nat.applied = natPlan{}, false
				}
			}
			return
		}
		removed := removedEndpoints(p.nat.plan, plan)
		if len(plan.Ports) != len(p.nat.plan.Ports) || !p.nat.applied {
			p.log.Info("kernel translates services", "table", k.Table, "ports", len(plan.Ports), "user_space", len(fallback))
		}
		p.nat.plan, p.nat.applied = plan, true
		if p.nat.lingering == nil {
			p.nat.lingering = map[natKey]bool{}
		}
		for _, r := range removed {
			p.nat.lingering[r] = true
		}
	}
	if len(p.nat.lingering) == 0 {
		return
	}
	now := plan.endpoints()
	for r := range p.nat.lingering {
		switch {
		case now[r]:
			delete(p.nat.lingering, r) // back in the plan
		case r.Proto == UDP || k.PodAlive == nil || !k.PodAlive(r.Addr.Addr()):
			n, err := forgetConnections(r)
			if err != nil {
				warn("conntrack "+err.Error(), "end connections to a removed endpoint", "err", err)
				continue
			}
			p.nat.forgotten += uint64(n)
			if n > 0 {
				p.log.Info("connections to a removed endpoint ended", "endpoint", r.Addr.String(), "proto", r.Proto, "connections", n)
			}
			delete(p.nat.lingering, r)
		}
	}
}
