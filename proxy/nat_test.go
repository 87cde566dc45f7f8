package proxy

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"pgregory.net/rapid"
)

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestPlanNAT(t *testing.T) {
	self := netip.MustParsePrefix("10.88.1.0/24")
	routed := func(n string) bool { return n == "b" }
	cands := []natPort{
		{Service: "ns/ok:80", Addr: ap("10.89.1.5:80"), Proto: TCP, Endpoints: []natEndpoint{
			{Addr: ap("10.88.2.7:8080"), Node: "b"}, {Addr: ap("10.88.1.3:8080"), Node: "a", Local: true}, {Addr: ap("10.88.2.7:8080"), Node: "b"}}},
		{Service: "ns/far:80", Addr: ap("192.0.2.1:30080"), Proto: TCP, Endpoints: []natEndpoint{
			{Addr: ap("10.88.1.3:8080"), Node: "a", Local: true}, {Addr: ap("10.88.3.4:8080"), Node: "c"}}},
		{Service: "ns/none:80", Addr: ap("10.89.1.6:80"), Proto: TCP},
		{Service: "ns/v6:80", Addr: ap("[fd00::1]:80"), Proto: UDP, Endpoints: []natEndpoint{{Addr: ap("10.88.1.3:53"), Local: true}}},
	}
	plan, fallback := planNAT(cands, self, routed)
	if len(plan.Ports) != 1 || plan.Ports[0].Service != "ns/ok:80" {
		t.Fatalf("planned %+v", plan.Ports)
	}
	if got := plan.Ports[0].Endpoints; len(got) != 2 || got[0].Addr != ap("10.88.1.3:8080") || got[1].Addr != ap("10.88.2.7:8080") {
		t.Fatalf("endpoints not sorted and deduplicated: %+v", got)
	}
	if why := fallback["ns/far:80 192.0.2.1:30080"]; !strings.Contains(why, "peer c") {
		t.Fatalf("the port with an endpoint on an unrouted peer: %q (all: %v)", why, fallback)
	}
	if why := fallback["ns/v6:80 [fd00::1]:80"]; !strings.Contains(why, "not IPv4") {
		t.Fatalf("the IPv6 port: %q", why)
	}
	if _, ok := fallback["ns/none:80 10.89.1.6:80"]; ok || len(fallback) != 2 {
		t.Fatalf("a port without endpoints is the listener's, without a reason: %v", fallback)
	}
	if p, fb := planNAT(cands, netip.Prefix{}, routed); len(p.Ports) != 0 || len(fb) != len(cands) {
		t.Fatalf("without a pod subnet: %+v %v", p, fb)
	}
}

func TestPlanNATProperties(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		nodes := []string{"a", "b", "c"}
		routed := map[string]bool{}
		for _, n := range nodes {
			routed[n] = rapid.Bool().Draw(t, "routed "+n)
		}
		genPort := func(label string) natPort {
			p := natPort{
				Service: label,
				Addr:    netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 89, 1, byte(rapid.IntRange(1, 4).Draw(t, "ip"))}), uint16(rapid.IntRange(1, 3).Draw(t, "port"))),
				Proto:   rapid.SampledFrom([]string{TCP, UDP}).Draw(t, "proto"),
			}
			for range rapid.IntRange(0, 4).Draw(t, "n") {
				n := rapid.SampledFrom(nodes).Draw(t, "node")
				p.Endpoints = append(p.Endpoints, natEndpoint{
					Addr:  netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 88, byte(slices.Index(nodes, n)), byte(rapid.IntRange(2, 5).Draw(t, "host"))}), 8080),
					Node:  n,
					Local: n == "a",
				})
			}
			return p
		}
		var cands []natPort
		for i := range rapid.IntRange(0, 6).Draw(t, "ports") {
			cands = append(cands, genPort(fmt.Sprint("svc", i)))
		}
		plan, fallback := planNAT(cands, netip.MustParsePrefix("10.88.0.0/24"), func(n string) bool { return routed[n] })
		for _, p := range plan.Ports {
			if len(p.Endpoints) == 0 {
				t.Fatalf("planned a port without endpoints: %+v", p)
			}
			for _, e := range p.Endpoints {
				if !e.Local && !routed[e.Node] {
					t.Fatalf("planned %s with endpoint %v on unrouted peer %s", p.Service, e.Addr, e.Node)
				}
			}
		}
		if !slices.IsSortedFunc(plan.Ports, func(a, b natPort) int { return a.Addr.Compare(b.Addr)*2 + strings.Compare(a.Proto, b.Proto) }) {
			t.Fatalf("plan not sorted: %+v", plan.Ports)
		}
		for _, c := range cands {
			_, fb := fallback[c.Service+" "+c.Addr.String()]
			in := slices.ContainsFunc(plan.Ports, func(p natPort) bool { return p.Addr == c.Addr && p.Proto == c.Proto })
			if len(c.Endpoints) > 0 && !in && !fb {
				t.Fatalf("%s with endpoints is neither translated nor given a reason", c.Service)
			}
			if fb && in && slices.IndexFunc(plan.Ports, func(p natPort) bool { return p.Service == c.Service }) >= 0 {
				t.Fatalf("%s both translated and left to user space", c.Service)
			}
		}
		// Removed endpoints: in the old plan, not in the new.
		plan2, _ := planNAT(cands[:len(cands)/2], netip.MustParsePrefix("10.88.0.0/24"), func(n string) bool { return routed[n] })
		next := plan2.endpoints()
		old := plan.endpoints()
		for _, k := range removedEndpoints(plan, plan2) {
			if next[k] || !old[k] {
				t.Fatalf("removed %v: in new %v, in old %v", k, next[k], old[k])
			}
		}
		for k := range old {
			if !next[k] && !slices.Contains(removedEndpoints(plan, plan2), k) {
				t.Fatalf("%v left the plan and was not reported", k)
			}
		}
	})
}

func TestTranslatedTo(t *testing.T) {
	f := translatedTo{ap("10.88.2.7:8080"), unix.IPPROTO_TCP}
	flow := func(proto uint8, dst, replySrc netip.AddrPort) *netlink.ConntrackFlow {
		var fl netlink.ConntrackFlow
		fl.Forward.Protocol = proto
		fl.Forward.DstIP, fl.Forward.DstPort = net.IP(dst.Addr().AsSlice()), dst.Port()
		fl.Reverse.SrcIP, fl.Reverse.SrcPort = net.IP(replySrc.Addr().AsSlice()), replySrc.Port()
		return &fl
	}
	for _, c := range []struct {
		flow *netlink.ConntrackFlow
		want bool
	}{
		{flow(unix.IPPROTO_TCP, ap("10.89.1.5:80"), ap("10.88.2.7:8080")), true},     // translated to it
		{flow(unix.IPPROTO_TCP, ap("10.88.2.7:8080"), ap("10.88.2.7:8080")), false},  // sent to it directly
		{flow(unix.IPPROTO_UDP, ap("10.89.1.5:80"), ap("10.88.2.7:8080")), false},    // another protocol
		{flow(unix.IPPROTO_TCP, ap("10.89.1.5:80"), ap("10.88.2.7:9090")), false},    // another port
		{flow(unix.IPPROTO_TCP, ap("192.0.2.1:30080"), ap("10.88.2.8:8080")), false}, // another endpoint
	} {
		if got := f.MatchConntrackFlow(c.flow); got != c.want {
			t.Errorf("%+v: %v, want %v", c.flow, got, c.want)
		}
	}
}

// TestApplyNATKernel has the kernel of a new network namespace take a
// plan (one transaction) and reads the table back.
func TestApplyNATKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes a network namespace and nftables rules in it")
	}
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // the thread is in it now
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	defer netns.Set(orig)
	opt := nftables.WithNetNSFd(int(ns))
	plan := natPlan{PodSubnet: netip.MustParsePrefix("10.88.1.0/24"), Ports: []natPort{
		{Service: "ns/a:80", Addr: ap("10.89.1.5:80"), Proto: TCP, Affinity: 3 * time.Hour, Endpoints: []natEndpoint{
			{Addr: ap("10.88.1.3:8080"), Local: true}, {Addr: ap("10.88.2.7:8080"), Node: "b"}, {Addr: ap("10.88.3.9:8080"), Node: "c"}}},
		{Service: "ns/a:53/UDP", Addr: ap("192.0.2.1:30053"), Proto: UDP, Endpoints: []natEndpoint{{Addr: ap("10.88.1.3:53"), Local: true}}},
	}}
	var prev natPlan
	for range 2 { // the second replaces the first
		if err := applyNAT("chorus_svc_test", plan, prev, opt); err != nil {
			t.Fatal(err)
		}
		prev = plan
	}
	c, err := nftables.New(opt)
	if err != nil {
		t.Fatal(err)
	}
	tbl := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: "chorus_svc_test"}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, ch := range chains {
		if ch.Table.Name == tbl.Name {
			names = append(names, ch.Name)
		}
	}
	slices.Sort(names)
	want := []string{"ep0_0", "ep0_1", "ep0_2", "ep1_0", "output", "postrouting", "prerouting", "services", "svc0", "svc1"}
	if !slices.Equal(names, want) {
		t.Fatalf("chains %v, want %v", names, want)
	}
	count := func(chain string) int {
		rules, err := c.GetRules(tbl, &nftables.Chain{Name: chain, Table: tbl})
		if err != nil {
			t.Fatal(err)
		}
		return len(rules)
	}
	// svc0: 3 affinity lookups, 2 random picks and the last endpoint.
	for chain, n := range map[string]int{"services": 2, "svc0": 6, "svc1": 1, "ep0_1": 1, "postrouting": 2, "output": 2, "prerouting": 1} {
		if got := count(chain); got != n {
			t.Errorf("chain %s has %d rules, want %d", chain, got, n)
		}
	}
	sets, err := c.GetSets(tbl)
	if err != nil {
		t.Fatal(err)
	}
	if len(sets) != 3 || !sets[0].HasTimeout || sets[0].Timeout != 3*time.Hour {
		t.Fatalf("affinity sets: %d, %+v", len(sets), sets)
	}

	// A client bound to endpoint 10.88.2.7 stays bound to it when the
	// table is made again for a plan where that endpoint and its port
	// have other places (another port before it, an endpoint before it).
	client := []byte{10, 0, 0, 9}
	if err := c.SetAddElements(&nftables.Set{Table: tbl, Name: "aff0_1", KeyType: nftables.TypeIPAddr, HasTimeout: true},
		[]nftables.SetElement{{Key: client, Timeout: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	next := natPlan{PodSubnet: plan.PodSubnet, Ports: []natPort{
		{Service: "ns/z:80", Addr: ap("10.89.1.1:80"), Proto: TCP, Affinity: time.Hour, Endpoints: []natEndpoint{{Addr: ap("10.88.2.7:8080"), Node: "b"}}},
		plan.Ports[0], plan.Ports[1]}}
	next.Ports[1].Endpoints = append([]natEndpoint{{Addr: ap("10.88.1.2:8080"), Local: true}}, next.Ports[1].Endpoints...)
	if err := applyNAT("chorus_svc_test", next, plan, opt); err != nil {
		t.Fatal(err)
	}
	for set, want := range map[string]int{"aff1_2": 1, "aff1_1": 0, "aff0_0": 0, "aff1_0": 0} {
		elems, err := c.GetSetElements(&nftables.Set{Table: tbl, Name: set, KeyType: nftables.TypeIPAddr})
		if err != nil {
			t.Fatal(err)
		}
		if len(elems) != want || want == 1 && (!slices.Equal(elems[0].Key, client) || elems[0].Expires <= 59*time.Minute || elems[0].Expires > time.Hour) {
			t.Errorf("set %s after the plan changed: %+v, want %d binding(s) of 10.0.0.9 with about an hour left", set, elems, want)
		}
	}

	if err := applyNAT("chorus_svc_test", natPlan{PodSubnet: plan.PodSubnet}, next, opt); err != nil {
		t.Fatal(err)
	}
	if got := count("services"); got != 0 {
		t.Fatalf("an empty plan left %d rules", got)
	}
}
