package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/chorus-sh/chorus/gossip"
	"github.com/chorus-sh/chorus/podnet"
	"github.com/chorus-sh/chorus/proxy"
)

// podNetLoop keeps this machine's routes to the other peers' pod subnets
// (package podnet) current with membership and the subnets' claims,
// checking every interval: a peer's pods are reached by their own
// addresses from any peer on the same network, or, when both peers run
// WireGuard (a secured cluster), through the encrypted overlay. The
// WireGuard device is made when the first WireGuard peer appears (peers
// sharing a machine never need one) and closed when the loop ends. It
// logs the peers it cannot route to, once per change.
func (a *Agent) podNetLoop(ctx context.Context, interval time.Duration) {
	var last []podnet.Route
	lastLink := 0
	lastSkipped, lastInput := "", ""
	var planned time.Time
	var wg *podnet.WireGuard
	defer func() {
		if wg != nil {
			wg.Close()
		}
	}()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		// This peer's subnet may move (a lost claim): read it each time.
		// The plan asks the kernel about every peer: it is made again only
		// when its inputs changed, after a failure, or every replanEvery
		// (the machine's own routes may have changed).
		self, peers := a.podSubnet(), a.podNetPeers()
		if in := fmt.Sprint(self, peers); in != lastInput || time.Since(planned) >= replanEvery {
			lastInput, planned = in, time.Now()
			host := podnet.MachineHost(self)
			host.WireGuard = a.wgKey != nil
			d := podnet.Plan(host, peers)
			var err error
			if wg, err = a.ensureWireGuard(wg, self, d); err != nil {
				// Its peers are not reached: no route, not routable.
				a.log.Warn("pod network: WireGuard", "err", err)
				d = withoutWireGuard(d, err)
			}
			a.routedPeers.Store(routedPeers(peers, d.Skipped))
			link := 0
			if wg != nil {
				link = wg.Link()
			}
			if !slices.Equal(d.Routes, last) || link != lastLink {
				changed, removed, err := podnet.Apply(d.Routes, link)
				if err != nil {
					a.log.Warn("pod network: routes to peers", "err", err)
					lastInput = "" // again at the next tick
				} else {
					last, lastLink = d.Routes, link
				}
				if changed+removed > 0 {
					a.log.Info("pod network: routes to peers' pod subnets", "routes", len(d.Routes), "wireguard_peers", len(d.WireGuard), "changed", changed, "removed", removed)
				}
			}
			if s := fmt.Sprint(d.Skipped); s != lastSkipped {
				for _, sk := range d.Skipped {
					a.log.Warn("pod network: no route to a peer's pods", "peer", sk.Peer, "reason", sk.Reason)
				}
				lastSkipped = s
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// ensureWireGuard opens the WireGuard device if the decision has
// WireGuard peers and it is not open, and gives it this peer's overlay
// address and the decision's peers (changing only what changed). It
// returns the device (nil: none).
func (a *Agent) ensureWireGuard(wg *podnet.WireGuard, self netip.Prefix, d podnet.Decision) (*podnet.WireGuard, error) {
	if wg == nil {
		if len(d.WireGuard) == 0 || a.wgKey == nil {
			return nil, nil
		}
		var err error
		wg, err = podnet.OpenWireGuard(wireGuardName(a.cfg.Bridge), a.cfg.WireGuardPort, a.wgMTU, *a.wgKey, a.log.With("plane", "wireguard"))
		if err != nil {
			return nil, err
		}
		a.log.Info("pod network: WireGuard device up", "device", wg.Name(), "port", a.cfg.WireGuardPort, "mtu", a.wgMTU)
	}
	if err := wg.SetAddress(overlayAddr(self)); err != nil {
		return wg, err
	}
	changed, removed, err := wg.Configure(d.WireGuard)
	if err != nil {
		return wg, err
	}
	if changed+removed > 0 {
		a.log.Info("pod network: WireGuard peers", "peers", len(d.WireGuard), "changed", changed, "removed", removed)
	}
	return wg, nil
}

// overlayAddr is this peer's address on the WireGuard device: the first
// address of its pod subnet (its network address, which no pod gets; the
// bridge has the second), as flannel gives its tunnel device. What the
// machine itself sends to other peers' pods leaves from it (in this
// peer's pod subnet: their devices accept it, and answer through theirs),
// and so does what the kernel's service rules masquerade towards them.
func overlayAddr(self netip.Prefix) netip.Prefix {
	return netip.PrefixFrom(self.Masked().Addr(), self.Addr().BitLen())
}

// withoutWireGuard is d with its WireGuard peers left out (no device:
// err), and their routes.
func withoutWireGuard(d podnet.Decision, err error) podnet.Decision {
	if len(d.WireGuard) == 0 {
		return d
	}
	out := podnet.Decision{Skipped: slices.Clone(d.Skipped)}
	for _, r := range d.Routes {
		if !r.WireGuard {
			out.Routes = append(out.Routes, r)
		}
	}
	for _, w := range d.WireGuard {
		out.Skipped = append(out.Skipped, podnet.Skipped{Peer: w.Peer, Reason: "no WireGuard device: " + err.Error()})
	}
	return out
}

// replanEvery bounds how long the pod network's routes go unchecked.
const replanEvery = 30 * time.Second

// podNetPeers returns the other alive peers with their addresses and the
// pod subnets they claimed (the replicated claims).
func (a *Agent) podNetPeers() []podnet.Peer {
	claims := storedClaims(a.store)
	var out []podnet.Peer
	for _, m := range a.gossip.Members() {
		if m.Name == a.cfg.Name || m.Status != gossip.StatusAlive {
			continue
		}
		p := podnet.Peer{Name: m.Name, Subnet: claims[m.Name].Subnet}
		if host, _, err := net.SplitHostPort(m.Tags[tagAPI]); err == nil {
			p.Addr, _ = netip.ParseAddr(host)
		}
		if port, key, ok := parseWireGuardTag(m.Tags[tagWireGuard]); ok {
			p.WireGuardKey, p.WireGuardPort = key, port
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(x, y podnet.Peer) int { return strings.Compare(x.Name, y.Name) })
	return out
}

// routedPeers returns the peers whose pods this machine reaches on the pod
// network: every peer the plan did not leave out (routed, or on this
// machine).
func routedPeers(peers []podnet.Peer, skipped []podnet.Skipped) *map[string]bool {
	out := make(map[string]bool, len(peers))
	for _, p := range peers {
		out[p.Name] = true
	}
	for _, s := range skipped {
		delete(out, s.Peer)
	}
	return &out
}

// kernelProxy is the proxy's configuration for translating services in the
// kernel (nil with --service-proxy=userspace).
func (a *Agent) kernelProxy() *proxy.KernelConfig {
	if a.cfg.ServiceProxy != ServiceProxyKernel {
		return nil
	}
	return &proxy.KernelConfig{
		Table:     svcTable(a.cfg.Bridge),
		PodSubnet: a.podSubnet,
		Routable: func(node string) bool {
			m := a.routedPeers.Load()
			return m != nil && (*m)[node]
		},
		PodAlive: func(ip netip.Addr) bool {
			m := a.clusterPodIPs.Load()
			return m == nil || (*m)[ip]
		},
	}
}

// svcTable is the nftables table of the kernel's service rules of the peer
// whose pod bridge is br.
func svcTable(br string) string { return "chorus_svc_" + br }
