package agent

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/chorus-sh/chorus/gossip"
	"github.com/chorus-sh/chorus/podnet"
)

// podNetLoop keeps this machine's routes to the other peers' pod subnets
// (package podnet) current with membership, checking every interval: a
// peer's pods are reached by their own addresses from any peer on the same
// network. It logs the peers it cannot route to, once per change.
func (a *Agent) podNetLoop(ctx context.Context, interval time.Duration) {
	self, err := netip.ParsePrefix(a.cfg.PodSubnet)
	if err != nil {
		a.log.Error("pod network: this peer's subnet", "subnet", a.cfg.PodSubnet, "err", err)
		return
	}
	host := podnet.MachineHost(self)
	var last []podnet.Route
	lastSkipped := ""
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		routes, skipped := podnet.Plan(host, a.podNetPeers())
		if !slices.Equal(routes, last) {
			changed, removed, err := podnet.Apply(routes)
			if err != nil {
				a.log.Warn("pod network: routes to peers", "err", err)
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
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// podNetPeers returns the other alive peers with their addresses and pod
// subnets (tag "net").
func (a *Agent) podNetPeers() []podnet.Peer {
	var out []podnet.Peer
	for _, m := range a.gossip.Members() {
		if m.Name == a.cfg.Name || m.Status != gossip.StatusAlive {
			continue
		}
		p := podnet.Peer{Name: m.Name}
		if host, _, err := net.SplitHostPort(m.Tags[tagAPI]); err == nil {
			p.Addr, _ = netip.ParseAddr(host)
		}
		p.Subnet, _ = netip.ParsePrefix(m.Tags[tagNet])
		out = append(out, p)
	}
	return out
}
