package agent

import (
	"context"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/gossip"
	"github.com/chorus-sh/chorus/placement/subnet"
	"github.com/chorus-sh/chorus/proxy"
)

// NodePorts are allocated in Kubernetes' range.
const (
	nodePortMin = 30000
	nodePortMax = 32767
)

// allocateNodePorts gives every NodePort service port without a nodePort
// one: the port it already has if the service exists, else the first free
// port from a hash of the service and port, so that the same manifest gets
// the same port. Ports taken by other services, or earlier in the same
// apply, are skipped. The allocation happens on the peer that takes the
// write and is replicated with the object.
func (a *Agent) allocateNodePorts(objs []api.Object) error {
	used := map[int32]string{}
	for _, o := range a.store.List(api.KindService, "") {
		s := o.(*api.Service)
		for _, p := range s.Spec.Ports {
			if p.NodePort != 0 {
				used[p.NodePort] = api.ObjectKey(s)
			}
		}
	}
	// Ports given explicitly in this apply are taken first.
	for _, o := range objs {
		if s, ok := o.(*api.Service); ok {
			for _, p := range s.Spec.Ports {
				if p.NodePort != 0 {
					used[p.NodePort] = api.ObjectKey(s)
				}
			}
		}
	}
	for _, o := range objs {
		s, ok := o.(*api.Service)
		if !ok {
			continue
		}
		key := api.ObjectKey(s)
		if !s.HasNodePorts() {
			for i := range s.Spec.Ports {
				s.Spec.Ports[i].NodePort = 0
			}
			continue
		}
		var existing *api.Service
		if cur, ok := a.store.Get(key); ok {
			existing = cur.(*api.Service)
		}
		for i := range s.Spec.Ports {
			p := &s.Spec.Ports[i]
			if p.NodePort != 0 {
				continue
			}
			if existing != nil {
				for _, ep := range existing.Spec.Ports {
					if ep.NodePort != 0 && ep.Port == p.Port && ep.Name == p.Name && (used[ep.NodePort] == key || used[ep.NodePort] == "") {
						p.NodePort = ep.NodePort
					}
				}
			}
			if p.NodePort != 0 {
				used[p.NodePort] = key
				continue
			}
			h := fnv.New32a()
			fmt.Fprintf(h, "%s/%d/%s", key, p.Port, p.Name)
			span := uint32(nodePortMax - nodePortMin + 1)
			start := h.Sum32() % span
			for k := uint32(0); k < span; k++ {
				port := int32(nodePortMin + (start+k)%span)
				if _, taken := used[port]; !taken {
					p.NodePort = port
					used[port] = key
					break
				}
			}
			if p.NodePort == 0 {
				return &api.ManifestError{Errors: []api.FieldError{{Kind: api.KindService, Name: s.Metadata.Name,
					Field: fmt.Sprintf("spec.ports[%d].nodePort", i), Reason: "no free port left in 30000-32767"}}}
			}
		}
	}
	return nil
}

// serviceNet gives each peer its own service addresses, on the loopback
// device, in the /24 that goes with its pod subnet (subnet.ServiceNet:
// 10.89.<n>.0/24 for 10.88.<n>.0/24). .1 is the peer's DNS server;
// services get the others.
type serviceNet struct {
	prefix atomic.Pointer[[3]byte]

	// virtual: addresses are given but never put on lo (a Sim peer,
	// which has no service proxy).
	virtual bool

	mu       sync.Mutex
	assigned map[string]string // service key -> IP
	added    map[string]bool   // IPs added to lo
}

func newServiceNet(podSubnet string) (*serviceNet, error) {
	pfx, err := netip.ParsePrefix(podSubnet)
	if err != nil {
		return nil, err
	}
	n := &serviceNet{assigned: map[string]string{}, added: map[string]bool{}}
	n.setPrefix(pfx)
	return n, nil
}

func (n *serviceNet) setPrefix(podSubnet netip.Prefix) {
	b := subnet.ServiceNet(podSubnet.Masked()).Addr().As4()
	n.prefix.Store(&[3]byte{b[0], b[1], b[2]})
}

// setSubnet moves the service addresses to those of podSubnet: the old
// ones leave lo, services are given addresses anew at the next assign,
// and the DNS address is added at once.
func (n *serviceNet) setSubnet(ctx context.Context, podSubnet netip.Prefix) error {
	n.removeAll(ctx)
	n.mu.Lock()
	n.setPrefix(podSubnet)
	clear(n.assigned)
	clear(n.added)
	n.mu.Unlock()
	return n.sync(ctx, nil)
}

func (n *serviceNet) ip(host byte) string {
	p := n.prefix.Load()
	return netip.AddrFrom4([4]byte{p[0], p[1], p[2], host}).String()
}

// dnsIP is the peer's DNS server address.
func (n *serviceNet) dnsIP() string { return n.ip(1) }

// assign gives every service key an address, keeping those already given;
// new ones take the first free address from a hash of the key.
func (n *serviceNet) assign(keys []string) map[string]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	want := map[string]bool{}
	for _, k := range keys {
		want[k] = true
	}
	taken := map[string]bool{}
	for k, ip := range n.assigned {
		if !want[k] {
			delete(n.assigned, k)
			continue
		}
		taken[ip] = true
	}
	sort.Strings(keys)
	for _, k := range keys {
		if _, ok := n.assigned[k]; ok {
			continue
		}
		h := fnv.New32a()
		h.Write([]byte(k))
		start := h.Sum32() % 253
		for i := uint32(0); i < 253; i++ {
			ip := n.ip(byte(2 + (start+i)%253))
			if !taken[ip] {
				n.assigned[k] = ip
				taken[ip] = true
				break
			}
		}
	}
	out := make(map[string]string, len(n.assigned))
	for k, v := range n.assigned {
		out[k] = v
	}
	return out
}

// sync makes the addresses on lo exactly ips (plus the DNS address).
func (n *serviceNet) sync(ctx context.Context, ips []string) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	want := map[string]bool{n.dnsIP(): true}
	for _, ip := range ips {
		want[ip] = true
	}
	if n.virtual {
		return nil
	}
	var errs []string
	for ip := range want {
		if n.added[ip] {
			continue
		}
		out, err := exec.CommandContext(ctx, "ip", "addr", "add", ip+"/32", "dev", "lo").CombinedOutput()
		if err != nil && !strings.Contains(string(out), "File exists") && !strings.Contains(string(out), "already assigned") {
			errs = append(errs, fmt.Sprintf("add %s: %s", ip, strings.TrimSpace(string(out))))
			continue
		}
		n.added[ip] = true
	}
	for ip := range n.added {
		if want[ip] {
			continue
		}
		_ = exec.CommandContext(ctx, "ip", "addr", "del", ip+"/32", "dev", "lo").Run()
		delete(n.added, ip)
	}
	if len(errs) > 0 {
		return fmt.Errorf("service addresses: %s", strings.Join(errs, "; "))
	}
	return nil
}

// removeAll removes every address of this peer's service network from lo.
func (n *serviceNet) removeAll(ctx context.Context) {
	if n.virtual {
		return
	}
	out, err := exec.CommandContext(ctx, "ip", "-o", "-4", "addr", "show", "dev", "lo").Output()
	if err != nil {
		return
	}
	p := n.prefix.Load()
	pfx := fmt.Sprintf("%d.%d.%d.", p[0], p[1], p[2])
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		for i, x := range f {
			if x == "inet" && i+1 < len(f) && strings.HasPrefix(f[i+1], pfx) {
				_ = exec.CommandContext(ctx, "ip", "addr", "del", f[i+1], "dev", "lo").Run()
			}
		}
	}
}

// resolvConf writes the resolv.conf of pods in namespace ns and returns
// its path.
func (a *Agent) resolvConf(ns string) string {
	dir := filepath.Join(a.cfg.DataDir, "resolv")
	path := filepath.Join(dir, ns+".conf")
	content := proxy.ResolvConf(a.svcNet.dnsIP(), ns, "cluster.local")
	if b, err := os.ReadFile(path); err == nil && string(b) == content {
		return path
	}
	_ = os.MkdirAll(dir, 0o755)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err == nil {
		_ = os.Rename(tmp, path)
	}
	return path
}

// proxyServices turns the services and the cluster's pods into the proxy's
// view: this peer's address for each service (none for a headless one, whose
// name resolves to its Ready pods), its Ready endpoints, LoadBalancer
// ports, session affinity, and the hostnames of selected pods whose
// subdomain is the service.
func (a *Agent) proxyServices(services []*api.Service, ips map[string]string, pods []api.Pod) []proxy.Service {
	var out []proxy.Service
	alive := make(map[netip.Addr]bool, len(pods))
	for i := range pods {
		if ip, err := netip.ParseAddr(pods[i].Status.PodIP); err == nil {
			alive[ip] = true
		}
	}
	a.clusterPodIPs.Store(&alive)
	for _, s := range services {
		ps := proxy.Service{Namespace: s.Metadata.Namespace, Name: s.Metadata.Name, ClusterIP: ips[api.ObjectKey(s)],
			Affinity: time.Duration(s.AffinityTimeout()) * time.Second}
		var ready []*api.Pod
		for i := range pods {
			p := &pods[i]
			if p.Metadata.Namespace != s.Metadata.Namespace || !podReady(p) || p.Status.PodIP == "" {
				continue
			}
			if len(s.Spec.Selector) == 0 || !api.SelectorMatches(s.Spec.Selector, p.Metadata.Labels) {
				continue
			}
			ready = append(ready, p)
			// As the endpoints controller records a hostname: the pod is
			// selected and names the service as its subdomain.
			if p.Spec.Hostname != "" && p.Spec.Subdomain == s.Metadata.Name {
				if ps.Hostnames == nil {
					ps.Hostnames = map[string]string{}
				}
				ps.Hostnames[p.Spec.Hostname] = p.Status.PodIP
			}
		}
		if s.Headless() {
			ps.ClusterIP = ""
			for _, p := range ready {
				ps.Addresses = append(ps.Addresses, p.Status.PodIP)
			}
		}
		for _, sp := range s.Spec.Ports {
			port := proxy.ServicePort{Name: sp.Name, Protocol: sp.Protocol, Port: int(sp.Port), NodePort: int(sp.NodePort),
				LoadBalancer: s.Spec.Type == api.ServiceTypeLoadBalancer}
			seen := map[string]bool{}
			for _, p := range ready {
				// A named targetPort resolves per pod; a pod without that
				// port name is no endpoint of this port.
				tp, err := strconv.Atoi(targetPort(sp, p))
				if err != nil {
					continue
				}
				id := p.Spec.NodeName + "/" + p.Status.PodIP
				if seen[id] {
					continue
				}
				seen[id] = true
				port.Endpoints = append(port.Endpoints, proxy.Endpoint{Node: p.Spec.NodeName, IP: p.Status.PodIP, Port: tp, Local: p.Spec.NodeName == a.cfg.Name})
			}
			ps.Ports = append(ps.Ports, port)
		}
		out = append(out, ps)
	}
	return out
}

// aliveAddrs returns the addresses of the alive peers, sorted: what a
// LoadBalancer Service or an Ingress reports in status.loadBalancer.
func (a *Agent) aliveAddrs() []string {
	if a.gossip == nil {
		return []string{a.cfg.Bind}
	}
	var out []string
	for _, m := range a.gossip.Members() {
		if m.Status != gossip.StatusAlive {
			continue
		}
		host, _, err := net.SplitHostPort(m.Addr)
		if err != nil {
			host = m.Addr
		}
		out = append(out, host)
	}
	sort.Strings(out)
	return out
}

// hopAddrOf returns the hop listener of a peer, from its tags.
func (a *Agent) hopAddrOf(node string) (string, bool) { return a.memberTag(node, tagHop) }

// allowHop accepts hop targets that are the address of a pod this peer
// runs, in its pod subnet: never the bridge gateway (the host itself) or
// any other address of the host.
func (a *Agent) allowHop(ip string, port int) bool {
	pfx := a.podSubnet()
	addr, err := netip.ParseAddr(ip)
	if err != nil || !pfx.Contains(addr) || port <= 0 || port >= 65536 {
		return false
	}
	ips := a.podIPs.Load()
	return ips != nil && (*ips)[addr]
}

func hostPort(host string, port int) string { return net.JoinHostPort(host, strconv.Itoa(port)) }

// optHostPort is hostPort, or "" for port 0 (not served).
func optHostPort(host string, port int) string {
	if port == 0 {
		return ""
	}
	return hostPort(host, port)
}
