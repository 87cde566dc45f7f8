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
// addresses from any peer on the same network. It logs the peers it
// cannot route to, once per change.
func (a *Agent) podNetLoop(ctx context.Context, interval time.Duration) {
	var last []podnet.Route
	lastSkipped, lastInput := "", ""
	var planned time.Time
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
			routes, skipped := podnet.Plan(podnet.MachineHost(self), peers)
			a.routedPeers.Store(routedPeers(peers, skipped))
			if !slices.Equal(routes, last) {
				changed, removed, err := podnet.Apply(routes)
				if err != nil {
					a.log.Warn("pod network: routes to peers", "err", err)
					lastInput = "" // again at the next tick
				} else {
					last = routes
				}
				if changed+removed > 0 {
					a.log.Info("pod network: routes to peers' pod subnets", "routes", len(routes), "changed", changed, "removed", removed)
				}
			}
			if s := fmt.Sprint(skipped); s != lastSkipped {
				for _, sk := range skipped {
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

// replanEvery bounds how long the pod network's routes go unchecked.
const replanEvery = 30 * time.Second

// podNetPeers returns the other alive peers with their addresses and the
// pod subnets they claimed (the replicated claims).
func (a *Agent) podNetPeers() []podnet.Peer {
	claims := a.store.storedClaims()
	var out []podnet.Peer
	for _, m := range a.gossip.Members() {
		if m.Name == a.cfg.Name || m.Status != gossip.StatusAlive {
			continue
		}
		p := podnet.Peer{Name: m.Name, Subnet: claims[m.Name].Subnet}
		if host, _, err := net.SplitHostPort(m.Tags[tagAPI]); err == nil {
			p.Addr, _ = netip.ParseAddr(host)
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
