package agent

import (
	"net/netip"

	"github.com/chorus-sh/chorus/api"
)

// localPodIPs records the addresses of the pods this peer runs, the only
// targets hops from other peers may reach (allowHop).
func (a *Agent) localPodIPs(pods []api.Pod) {
	ips := make(map[netip.Addr]bool, len(pods))
	for i := range pods {
		if ip, err := netip.ParseAddr(pods[i].Status.PodIP); err == nil {
			ips[ip] = true
		}
	}
	a.podIPs.Store(&ips)
}
