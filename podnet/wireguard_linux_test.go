package podnet

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"go.uber.org/goleak"
)

func wgPeer(t *testing.T, name, endpoint, allowed string) WireGuardPeer {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return WireGuardPeer{Peer: name, PublicKey: k.Public().String(), Endpoint: netip.MustParseAddrPort(endpoint), Allowed: netip.MustParsePrefix(allowed)}
}

// Only what changed is sent to the device.
func TestWireGuardChanges(t *testing.T) {
	a := wgPeer(t, "a", "10.0.0.2:7949", "10.88.2.0/24")
	b := wgPeer(t, "b", "10.0.0.3:7949", "10.88.3.0/24")
	cmds, have := wireGuardChanges(nil, []WireGuardPeer{a, b})
	if len(cmds) != 2 || len(have) != 2 {
		t.Fatalf("from nothing: %v", cmds)
	}
	if cmds, _ := wireGuardChanges(have, []WireGuardPeer{b, a}); len(cmds) != 0 {
		t.Fatalf("nothing changed, yet: %v", cmds)
	}
	moved := b
	moved.Endpoint = netip.MustParseAddrPort("192.168.1.3:7949")
	cmds, have2 := wireGuardChanges(have, []WireGuardPeer{moved})
	if len(cmds) != 2 || !cmds[0].remove && !cmds[1].remove || len(have2) != 1 {
		t.Fatalf("a gone, b moved: %v", cmds)
	}
	for _, c := range cmds {
		if !c.remove && (!strings.Contains(c.text, "endpoint=192.168.1.3:7949\n") || !strings.Contains(c.text, "allowed_ip=10.88.3.0/24\n") ||
			!strings.Contains(c.text, "replace_allowed_ips=true\n")) {
			t.Fatalf("b moved: %q", c.text)
		}
	}
	bad := a
	bad.PublicKey = "nope"
	if cmds, have := wireGuardChanges(nil, []WireGuardPeer{bad}); len(cmds) != 0 || len(have) != 0 {
		t.Fatalf("a peer with no valid key: %v", cmds)
	}
}

// A real device: created up with its MTU, its peers configured and
// changed, its address set, and gone with every goroutine once closed.
func TestWireGuardDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("a TUN device needs root; the project's tests run as root")
	}
	defer goleak.VerifyNone(t)
	name := fmt.Sprintf("cwt%d", os.Getpid()%100000)
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	w, err := OpenWireGuard(name, 0, 1420, key, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			w.Close()
		}
	}()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if l.Attrs().MTU != 1420 || l.Attrs().Index != w.Link() || l.Attrs().Flags&1 == 0 {
		t.Fatalf("device %s: MTU %d, index %d (want %d), flags %v", name, l.Attrs().MTU, l.Attrs().Index, w.Link(), l.Attrs().Flags)
	}
	a := wgPeer(t, "a", "10.0.0.2:7949", "10.88.2.0/24")
	b := wgPeer(t, "b", "10.0.0.3:7949", "10.88.3.0/24")
	if c, r, err := w.Configure([]WireGuardPeer{a, b}); err != nil || c != 2 || r != 0 {
		t.Fatalf("Configure: %d %d %v", c, r, err)
	}
	if c, r, err := w.Configure([]WireGuardPeer{a, b}); err != nil || c+r != 0 {
		t.Fatalf("Configure again: %d %d %v", c, r, err)
	}
	if c, r, err := w.Configure([]WireGuardPeer{b}); err != nil || c != 0 || r != 1 {
		t.Fatalf("Configure without a: %d %d %v", c, r, err)
	}
	conf, err := w.dev.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	bk, _ := ParseKey(b.PublicKey)
	ak, _ := ParseKey(a.PublicKey)
	if !strings.Contains(conf, "public_key="+bk.hex()) || strings.Contains(conf, ak.hex()) ||
		!strings.Contains(conf, "endpoint=10.0.0.3:7949") || !strings.Contains(conf, "allowed_ip=10.88.3.0/24") ||
		!strings.Contains(conf, "private_key="+key.hex()) {
		t.Fatalf("the device holds:\n%s", conf)
	}
	for _, a := range []string{"10.88.1.0/32", "10.88.4.0/32"} {
		if err := w.SetAddress(netip.MustParsePrefix(a)); err != nil {
			t.Fatal(err)
		}
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || addrs[0].IPNet.String() != "10.88.4.0/32" {
		t.Fatalf("addresses of %s: %v %v", name, addrs, err)
	}
	w.Close()
	closed = true
	if _, err := netlink.LinkByName(name); err == nil {
		t.Fatalf("%s still there once closed", name)
	}
	if err := RemoveWireGuard(name); err != nil {
		t.Fatalf("RemoveWireGuard of a device that is gone: %v", err)
	}
}

// A device left behind (here a persistent TUN, as a crashed peer's could
// be) is removed by RemoveWireGuard, which `chorus reset` runs.
func TestRemoveWireGuardLeftover(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("a TUN device needs root; the project's tests run as root")
	}
	name := fmt.Sprintf("cwr%d", os.Getpid()%100000)
	tt := &netlink.Tuntap{LinkAttrs: netlink.LinkAttrs{Name: name}, Mode: netlink.TUNTAP_MODE_TUN}
	if err := netlink.LinkAdd(tt); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netlink.LinkDel(tt) })
	if _, err := netlink.LinkByName(name); err != nil {
		t.Fatal(err)
	}
	if err := RemoveWireGuard(name); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(name); err == nil {
		t.Fatalf("%s still there", name)
	}
}
