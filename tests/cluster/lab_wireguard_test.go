package cluster

import (
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/lab"
	"github.com/chorus-sh/chorus/tests/harness"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// machineNet is a netlink handle in a lab machine's network namespace.
func machineNet(t testing.TB, m lab.Machine) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromPath(m.NetNS)
	if err != nil {
		t.Fatalf("network namespace of %s: %v", m.Name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink in %s: %v", m.Name, err)
	}
	t.Cleanup(h.Close)
	return h
}

// wireGuardLink returns the WireGuard device of the peer in m (a TUN
// named cw...), nil if there is none.
func wireGuardLink(t testing.TB, h *netlink.Handle) netlink.Link {
	t.Helper()
	links, err := h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, "cw") && l.Type() == "tuntap" {
			return l
		}
	}
	return nil
}

// wireGuardBytes returns the bytes received and sent by the WireGuard
// device of the peer in m.
func wireGuardBytes(t testing.TB, h *netlink.Handle, name string) (rx, tx uint64) {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	s := l.Attrs().Statistics
	if s == nil {
		t.Fatalf("%s: no statistics", name)
	}
	return s.RxBytes, s.TxBytes
}

// overlayAddrs returns each node's address on the WireGuard overlay: the
// first address of its pod subnet.
func overlayAddrs(t testing.TB, mustK func(args ...string) string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range strings.Fields(mustK("get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name}={.spec.podCIDR} {end}")) {
		node, cidr, _ := strings.Cut(f, "=")
		p, err := netip.ParsePrefix(cidr)
		if err != nil {
			t.Fatalf("pod CIDR of %s: %q", node, cidr)
		}
		out[node] = p.Masked().Addr().String()
	}
	return out
}

// hostWeb builds the web test program for this host, to run in machines.
func hostWeb(t testing.TB) string {
	t.Helper()
	web := filepath.Join(t.TempDir(), "web")
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", web, "./tests/images/web")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the web program: %v\n%s", err, out)
	}
	return web
}

// checkWireGuard checks the encrypted pod network of a lab cluster: on
// every machine the other peers' pod subnets are routed to the peer's
// WireGuard device, the pods' links have the overlay's MTU, bytes between
// pods of two peers go through the devices at both ends (their counters
// grow by at least what was sent), and each peer's machine reaches a pod
// of another peer by its IP, seen from the overlay address of the peer.
func checkWireGuard(t *testing.T, ms []lab.Machine, ps []labPod, web string, mustK func(args ...string) string) {
	t.Helper()
	overlay := overlayAddrs(t, mustK)
	byNode := map[string]labPod{}
	for _, p := range ps {
		byNode[p.node] = p
	}
	handles := map[string]*netlink.Handle{}
	devices := map[string]string{}
	for _, m := range ms {
		h := machineNet(t, m)
		handles[m.Name] = h
		wg := wireGuardLink(t, h)
		if wg == nil {
			t.Fatalf("%s: no WireGuard device", m.Name)
		}
		devices[m.Name] = wg.Attrs().Name
		if wg.Attrs().MTU != 1420 {
			t.Errorf("%s: WireGuard device %s has MTU %d, want 1420 (1500 - 80)", m.Name, wg.Attrs().Name, wg.Attrs().MTU)
		}
		for node, p := range byNode {
			if node == m.Name {
				continue
			}
			rs, err := h.RouteGet(netip.MustParseAddr(p.ip).AsSlice())
			if err != nil || len(rs) == 0 || rs[0].LinkIndex != wg.Attrs().Index || rs[0].Gw != nil {
				t.Fatalf("%s: route to pod %s of %s is %v (%v), want dev %s", m.Name, p.ip, node, rs, err, wg.Attrs().Name)
			}
		}
		// The host end of every pod's link has the overlay's MTU.
		links, err := h.LinkList()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			if l.Type() == "veth" && l.Attrs().MasterIndex != 0 && l.Attrs().MTU != 1420 {
				t.Errorf("%s: pod link %s has MTU %d, want 1420", m.Name, l.Attrs().Name, l.Attrs().MTU)
			}
		}
	}
	// Pod to pod: the bytes go through both ends' devices.
	var from, to labPod
	for _, p := range byNode {
		if from.name == "" {
			from = p
		} else if to.name == "" {
			to = p
		}
	}
	const size = 4_000_000
	rxTo0, txTo0 := wireGuardBytes(t, handles[to.node], devices[to.node])
	rxFrom0, txFrom0 := wireGuardBytes(t, handles[from.node], devices[from.node])
	out := mustK("exec", from.name, "--", "/app", "throughput", fmt.Sprintf("http://%s:8080/zero?bytes=%d", to.ip, size))
	if !strings.HasPrefix(strings.TrimSpace(out), fmt.Sprintf("%d bytes", size)) {
		t.Fatalf("throughput from %s to %s: %q", from.name, to.name, out)
	}
	rxTo, txTo := wireGuardBytes(t, handles[to.node], devices[to.node])
	rxFrom, txFrom := wireGuardBytes(t, handles[from.node], devices[from.node])
	if txTo-txTo0 < size || rxFrom-rxFrom0 < size || rxTo == rxTo0 || txFrom == txFrom0 {
		t.Fatalf("%d bytes from pod %s (on %s) to pod %s (on %s): WireGuard device of %s sent %d, received %d; of %s received %d, sent %d",
			size, to.name, to.node, from.name, from.node, to.node, txTo-txTo0, rxTo-rxTo0, from.node, rxFrom-rxFrom0, txFrom-txFrom0)
	}
	t.Logf("%d bytes pod to pod: through WireGuard device %s of %s (sent %d) and %s of %s (received %d)",
		size, devices[to.node], to.node, txTo-txTo0, devices[from.node], from.node, rxFrom-rxFrom0)
	// Every peer reaches a pod of another peer, from its overlay address.
	for _, m := range ms {
		checkMachineReachesPods(t, m, func() []labPod { return ps }, overlay, web)
	}
}

// checkMachineReachesPods checks that machine m (its peer) reaches a pod
// of every other peer by its IP, and is seen from its overlay address,
// within 30 s (a peer that just started meets the others' WireGuard
// devices at their next plan, then at the next handshake; its pods may
// move meanwhile: pods lists the current ones).
func checkMachineReachesPods(t *testing.T, m lab.Machine, pods func() []labPod, overlay map[string]string, web string) {
	t.Helper()
	var problem string
	for deadline := time.Now().Add(30 * time.Second); ; {
		problem = ""
		reached := map[string]bool{}
		for _, p := range pods() {
			if p.node == m.Name || reached[p.node] {
				continue
			}
			out, err := exec.Command("nsenter", "--net="+m.NetNS, "--", web, "fetch", "http://"+p.ip+":8080/remote").CombinedOutput()
			if err != nil {
				problem = fmt.Sprintf("%s fetching pod %s (%s on %s): %v\n%s", m.Name, p.name, p.ip, p.node, err, out)
				continue
			}
			if got := strings.TrimSpace(string(out)); got != overlay[m.Name] {
				t.Fatalf("%s reached pod %s (on %s), which saw it as %q, want its overlay address %s", m.Name, p.name, p.node, got, overlay[m.Name])
			}
			reached[p.node] = true
		}
		if problem == "" && len(reached) == 0 {
			problem = m.Name + ": no pod on another peer"
		}
		if problem == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("for 30 s: %s", problem)
		}
		time.Sleep(time.Second)
	}
}
