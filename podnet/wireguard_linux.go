package podnet

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

// keepalive is the persistent keepalive of every WireGuard peer, in
// seconds: it keeps a NAT's or stateful firewall's mapping open between
// peers behind routers (wg-quick's usual 25).
const keepalive = 25

// WireGuard is this peer's WireGuard device: wireguard-go (in this
// process) over a TUN device, listening on a UDP port of every address.
// The device goes away with the process (the TUN is not persistent).
type WireGuard struct {
	name string
	dev  *device.Device
	link int
	log  *slog.Logger
	have map[string]WireGuardPeer // by public key: what the device holds
	addr netip.Prefix
}

// OpenWireGuard creates the TUN device name with mtu, runs WireGuard on
// it with key, listening on UDP port, and brings it up.
func OpenWireGuard(name string, port, mtu int, key Key, log *slog.Logger) (*WireGuard, error) {
	t, err := tun.CreateTUN(name, mtu)
	if err != nil {
		return nil, fmt.Errorf("WireGuard: create TUN device %s: %w", name, err)
	}
	logger := &device.Logger{
		Verbosef: device.DiscardLogf,
		Errorf:   func(format string, args ...any) { log.Debug("wireguard: " + fmt.Sprintf(format, args...)) },
	}
	dev := device.NewDevice(t, conn.NewStdNetBind(), logger) // owns t from here
	w := &WireGuard{name: name, dev: dev, log: log, have: map[string]WireGuardPeer{}}
	if err := dev.IpcSet(fmt.Sprintf("private_key=%s\nlisten_port=%d\n", key.hex(), port)); err != nil {
		dev.Close()
		return nil, fmt.Errorf("WireGuard: configure %s (port %d): %w", name, port, err)
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		return nil, fmt.Errorf("WireGuard: start %s: %w", name, err)
	}
	l, err := netlink.LinkByName(name)
	if err == nil {
		err = netlink.LinkSetUp(l)
	}
	if err != nil {
		dev.Close()
		return nil, fmt.Errorf("WireGuard: bring %s up: %w", name, err)
	}
	w.link = l.Attrs().Index
	return w, nil
}

// Name is the device's name.
func (w *WireGuard) Name() string { return w.name }

// Link is the device's interface index, for routes.
func (w *WireGuard) Link() int { return w.link }

// SetAddress makes a the device's only address (this peer's address on
// the overlay: the source of what the machine itself sends to other
// peers' pods, which their devices accept as it is in this peer's pod
// subnet).
func (w *WireGuard) SetAddress(a netip.Prefix) error {
	if a == w.addr {
		return nil
	}
	l, err := netlink.LinkByIndex(w.link)
	if err != nil {
		return fmt.Errorf("WireGuard device %s: %w", w.name, err)
	}
	have, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("WireGuard device %s: addresses: %w", w.name, err)
	}
	for _, h := range have {
		if h.IPNet.String() != a.String() {
			if err := netlink.AddrDel(l, &h); err != nil {
				return fmt.Errorf("WireGuard device %s: remove address %v: %w", w.name, h.IPNet, err)
			}
		}
	}
	ipn := &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), a.Addr().BitLen())}
	if err := netlink.AddrReplace(l, &netlink.Addr{IPNet: ipn}); err != nil {
		return fmt.Errorf("WireGuard device %s: address %v: %w", w.name, a, err)
	}
	w.addr = a
	return nil
}

// Configure makes the device's peers exactly peers, changing only those
// that differ from what it holds. It returns how many it added or changed
// and removed.
func (w *WireGuard) Configure(peers []WireGuardPeer) (changed, removed int, err error) {
	cmds, want := wireGuardChanges(w.have, peers)
	if len(cmds) == 0 {
		return 0, 0, nil
	}
	var b strings.Builder
	for _, c := range cmds {
		b.WriteString(c.text)
		if c.remove {
			removed++
		} else {
			changed++
		}
	}
	if err := w.dev.IpcSet(b.String()); err != nil {
		// What the device holds is now unknown: the next call sets all.
		w.have = map[string]WireGuardPeer{}
		return 0, 0, fmt.Errorf("WireGuard device %s: configure peers: %w", w.name, err)
	}
	w.have = want
	return changed, removed, nil
}

// wgCommand is one peer's part of wireguard-go's configuration protocol.
type wgCommand struct {
	text   string
	remove bool
}

// wireGuardChanges returns the configuration that turns the peers have
// (by public key) into peers, sorted by public key, and what the device
// then holds.
func wireGuardChanges(have map[string]WireGuardPeer, peers []WireGuardPeer) ([]wgCommand, map[string]WireGuardPeer) {
	want := map[string]WireGuardPeer{}
	for _, p := range peers {
		if k, err := ParseKey(p.PublicKey); err == nil && p.Endpoint.IsValid() && p.Allowed.IsValid() {
			want[k.String()] = p
		}
	}
	var cmds []wgCommand
	for key := range have {
		if _, ok := want[key]; !ok {
			k, _ := ParseKey(key)
			cmds = append(cmds, wgCommand{text: "public_key=" + k.hex() + "\nremove=true\n", remove: true})
		}
	}
	for key, p := range want {
		if h, ok := have[key]; ok && h.Endpoint == p.Endpoint && h.Allowed == p.Allowed {
			continue
		}
		k, _ := ParseKey(key)
		cmds = append(cmds, wgCommand{text: fmt.Sprintf("public_key=%s\nendpoint=%s\npersistent_keepalive_interval=%d\nreplace_allowed_ips=true\nallowed_ip=%s\n",
			k.hex(), p.Endpoint, keepalive, p.Allowed.Masked())})
	}
	slices.SortFunc(cmds, func(a, b wgCommand) int { return strings.Compare(a.text, b.text) })
	return cmds, want
}

// Close stops the device and removes it (with its routes).
func (w *WireGuard) Close() {
	w.dev.Close()
}

// RemoveWireGuard removes the device name if a peer that was killed left
// it (a TUN goes with its process; this is for safety).
func RemoveWireGuard(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return fmt.Errorf("find WireGuard device %s: %w", name, err)
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("remove WireGuard device %s: %w", name, err)
	}
	return nil
}

// LinkMTU returns the MTU of the interface holding the address a, and
// whether that interface is a loopback (a loopback address: no MTU).
func LinkMTU(a netip.Addr) (mtu int, loopback bool, err error) {
	if a.IsLoopback() {
		return 0, true, nil
	}
	links, err := netlink.LinkList()
	if err != nil {
		return 0, false, fmt.Errorf("list interfaces: %w", err)
	}
	for _, l := range links {
		addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			if x, ok := netip.AddrFromSlice(ad.IP); ok && x.Unmap() == a {
				return l.Attrs().MTU, l.Attrs().Flags&net.FlagLoopback != 0, nil
			}
		}
	}
	return 0, false, fmt.Errorf("no interface holds %v", a)
}
