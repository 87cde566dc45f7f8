// Package lab builds test machines on one host: each machine is a network
// namespace with one interface, eth0, joined to the others by a bridge on
// the host, as machines on one switch. The host holds the first address of
// the lab's subnet on the bridge, so it reaches every machine; a machine's
// link can be given latency, jitter, loss and a rate limit (netem), in both
// directions. `chorus cluster create` runs a peer in each machine, and the
// multi-peer tests use the same code.
//
// Processes enter a machine with nsenter --net= and the namespace's file
// ([Machine.Command]), not with `ip netns exec`, which also remounts /sys:
// runc then finds no cgroups.
package lab

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/chorus-sh/chorus/internal/nft"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nsDir is where named network namespaces are (as `ip netns` keeps them).
const nsDir = "/run/netns"

// Lab names a set of machines and their subnet.
type Lab struct {
	Name   string       // letters, digits and '-'; names the namespaces
	Subnet netip.Prefix // the machines' IPv4 subnet (at most /24 wide); the host holds its first address
}

// Machine is one network namespace of a lab.
type Machine struct {
	Name     string     // "<lab>-<i>", i from 1
	NetNS    string     // the namespace's file, for nsenter --net=
	Addr     netip.Addr // eth0's address
	HostVeth string     // the host end of its link, on the bridge
}

// DefaultSubnet is the subnet of a lab named name when none is given: a /24
// of 10.213.0.0/16 chosen by a hash of the name.
func DefaultSubnet(name string) netip.Prefix {
	h := fnv.New32a()
	h.Write([]byte(name))
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 213, byte(h.Sum32()), 0}), 24)
}

// Check says what is wrong with l, if anything.
func (l Lab) Check() error {
	if l.Name == "" || len(l.Name) > 40 || strings.Trim(l.Name, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
		return fmt.Errorf("lab name %q: use 1 to 40 lower-case letters, digits and '-'", l.Name)
	}
	if !l.Subnet.IsValid() || !l.Subnet.Addr().Is4() || l.Subnet.Bits() < 16 || l.Subnet.Bits() > 28 {
		return fmt.Errorf("lab subnet %v: want an IPv4 prefix from /16 to /28", l.Subnet)
	}
	return nil
}

// Bridge is the name of the lab's bridge on the host (interface names are
// at most 15 bytes, so it is made from a hash of the lab's name).
func (l Lab) Bridge() string { return "chl" + l.hash() }

func (l Lab) hash() string {
	h := fnv.New32a()
	h.Write([]byte(l.Name))
	return strconv.FormatUint(uint64(h.Sum32()), 36)
}

// HostAddr is the host's address on the bridge.
func (l Lab) HostAddr() netip.Addr { return l.Subnet.Masked().Addr().Next() }

// Machine returns machine i (from 1) of the lab; its address is the
// subnet's (10+i)th, so machine 1 of 10.213.7.0/24 is 10.213.7.11.
func (l Lab) Machine(i int) (Machine, error) {
	a := l.Subnet.Masked().Addr()
	for range 10 + i {
		a = a.Next()
	}
	if !l.Subnet.Contains(a) || !l.Subnet.Contains(a.Next()) {
		return Machine{}, fmt.Errorf("lab %s: subnet %v has no room for machine %d", l.Name, l.Subnet, i)
	}
	name := fmt.Sprintf("%s-%d", l.Name, i)
	return Machine{Name: name, NetNS: filepath.Join(nsDir, "chorus-"+name), Addr: a,
		HostVeth: fmt.Sprintf("chv%s%d", l.hash(), i)}, nil
}

// Create makes the bridge (if missing) and machines 1 to n (those missing),
// and returns them. It fails if the subnet is in use on the host by
// something else than this lab.
func (l Lab) Create(n int) ([]Machine, error) {
	if err := l.Check(); err != nil {
		return nil, err
	}
	br, err := l.ensureBridge()
	if err != nil {
		return nil, err
	}
	var ms []Machine
	for i := 1; i <= n; i++ {
		m, err := l.Machine(i)
		if err != nil {
			return nil, err
		}
		if err := l.ensureMachine(br, m); err != nil {
			return nil, fmt.Errorf("machine %s: %w", m.Name, err)
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// Machines returns the machines of the lab that exist.
func (l Lab) Machines() []Machine {
	var ms []Machine
	for i := 1; ; i++ {
		m, err := l.Machine(i)
		if err != nil {
			return ms
		}
		if _, err := os.Stat(m.NetNS); err != nil {
			return ms
		}
		ms = append(ms, m)
	}
}

// Delete removes the lab's machines and bridge; what is already gone is
// no error. Processes still running in a machine keep its namespace alive
// (without a link): stop them first.
func (l Lab) Delete() error {
	if err := l.Check(); err != nil {
		return err
	}
	var errs []error
	for i := 1; ; i++ {
		m, err := l.Machine(i)
		if err != nil {
			break
		}
		if link, err := netlink.LinkByName(m.HostVeth); err == nil {
			if err := netlink.LinkDel(link); err != nil {
				errs = append(errs, fmt.Errorf("delete %s: %w", m.HostVeth, err))
			}
		}
		if _, err := os.Stat(m.NetNS); err != nil {
			if i > 64 {
				break
			}
			continue
		}
		if err := netns.DeleteNamed(filepath.Base(m.NetNS)); err != nil {
			errs = append(errs, fmt.Errorf("delete namespace of %s: %w", m.Name, err))
		}
	}
	if link, err := netlink.LinkByName(l.Bridge()); err == nil {
		if err := netlink.LinkDel(link); err != nil {
			errs = append(errs, fmt.Errorf("delete bridge %s: %w", l.Bridge(), err))
		}
	}
	if c, err := nftables.New(); err == nil {
		if err := nft.DeleteTable(c, &nftables.Table{Family: nftables.TableFamilyIPv4, Name: l.hostTable()}); err == nil {
			err = c.Flush()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("delete nftables table %s: %w", l.hostTable(), err))
		}
	}
	return errors.Join(errs...)
}

// ensureBridge makes the host's bridge, with the host's address, up.
func (l Lab) ensureBridge() (netlink.Link, error) {
	name := l.Bridge()
	host := netlink.NewIPNet(net.IP(l.HostAddr().AsSlice()))
	host.Mask = net.CIDRMask(l.Subnet.Bits(), 32)
	br, err := netlink.LinkByName(name)
	if err != nil {
		if err := l.checkFree(); err != nil {
			return nil, err
		}
		la := netlink.NewLinkAttrs()
		la.Name = name
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil {
			return nil, fmt.Errorf("create bridge %s: %w", name, err)
		}
		if br, err = netlink.LinkByName(name); err != nil {
			return nil, err
		}
	}
	if err := l.noHostFirewall(); err != nil {
		return nil, err
	}
	if err := netlink.AddrReplace(br, &netlink.Addr{IPNet: host}); err != nil {
		return nil, fmt.Errorf("address %v on %s: %w", host, name, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return nil, fmt.Errorf("bring %s up: %w", name, err)
	}
	return br, nil
}

// noHostFirewall keeps the host's connection tracking, and so its NAT
// rules, out of what crosses the bridge between machines: with
// br_netfilter loaded (net.bridge.bridge-nf-call-iptables=1, which a
// bridge's own nf_call_iptables 0 cannot override), bridged packets go
// through the host's iptables, and a masquerade rule of the host's own pods
// would rewrite the machines' pod traffic. A table of the lab's marks the
// bridge's packets untracked.
func (l Lab) noHostFirewall() error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: l.hostTable()}
	if err := nft.DeleteTable(c, t); err != nil {
		return err
	}
	c.AddTable(t)
	ch := c.AddChain(&nftables.Chain{Name: "pre", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(l.Bridge())},
		&expr.Notrack{},
	}})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables table %s: %w", t.Name, err)
	}
	return nil
}

// hostTable is the lab's nftables table on the host.
func (l Lab) hostTable() string { return "chorus_lab_" + l.hash() }

// checkFree fails if a route of the host already covers the lab's subnet.
func (l Lab) checkFree() error {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			continue
		}
		p, ok := netip.AddrFromSlice(r.Dst.IP.To4())
		if !ok {
			continue
		}
		ones, _ := r.Dst.Mask.Size()
		theirs := netip.PrefixFrom(p, ones)
		if theirs.Overlaps(l.Subnet) {
			link, _ := netlink.LinkByIndex(r.LinkIndex)
			dev := "?"
			if link != nil {
				dev = link.Attrs().Name
			}
			return fmt.Errorf("lab subnet %v overlaps %v on %s, already on this host: choose another subnet", l.Subnet, theirs, dev)
		}
	}
	return nil
}

// ensureMachine makes machine m's namespace and its link to br, if missing.
func (l Lab) ensureMachine(br netlink.Link, m Machine) error {
	if _, err := os.Stat(m.NetNS); err == nil {
		if _, err := netlink.LinkByName(m.HostVeth); err == nil {
			return nil // made before
		}
		return fmt.Errorf("namespace %s exists without its link %s: delete the lab first", m.NetNS, m.HostVeth)
	}
	ns, err := newNamedNS(filepath.Base(m.NetNS))
	if err != nil {
		return fmt.Errorf("create namespace: %w", err)
	}
	defer ns.Close()
	la := netlink.NewLinkAttrs()
	la.Name = m.HostVeth
	la.MasterIndex = br.Attrs().Index
	peerName := m.HostVeth + "p"
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: peerName}); err != nil {
		return fmt.Errorf("create link %s: %w", m.HostVeth, err)
	}
	host, err := netlink.LinkByName(m.HostVeth)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("bring %s up: %w", m.HostVeth, err)
	}
	inner, err := netlink.LinkByName(peerName)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetNsFd(inner, int(ns)); err != nil {
		return fmt.Errorf("move %s into the namespace: %w", peerName, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("enter the namespace: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	if inner, err = h.LinkByName(peerName); err != nil {
		return err
	}
	if err := h.LinkSetName(inner, "eth0"); err != nil {
		return fmt.Errorf("name eth0: %w", err)
	}
	addr := netlink.NewIPNet(net.IP(m.Addr.AsSlice()))
	addr.Mask = net.CIDRMask(l.Subnet.Bits(), 32)
	if err := h.AddrAdd(inner, &netlink.Addr{IPNet: addr}); err != nil {
		return fmt.Errorf("address %v: %w", addr, err)
	}
	if err := h.LinkSetUp(inner); err != nil {
		return fmt.Errorf("bring eth0 up: %w", err)
	}
	gw := net.IP(l.HostAddr().AsSlice())
	if err := h.RouteAdd(&netlink.Route{LinkIndex: inner.Attrs().Index, Gw: gw}); err != nil {
		return fmt.Errorf("default route via %v: %w", gw, err)
	}
	return nil
}

// newNamedNS creates a named network namespace without moving the caller
// into it: NewNamed switches the calling thread, so it runs on a locked
// thread that is put back, or thrown away if it cannot be.
func newNamedNS(name string) (netns.NsHandle, error) {
	type result struct {
		ns  netns.NsHandle
		err error
	}
	done := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			goruntime.UnlockOSThread()
			done <- result{err: err}
			return
		}
		defer orig.Close()
		ns, err := netns.NewNamed(name)
		if err != nil {
			done <- result{err: err}
			return // the thread may have changed namespace: it ends with the goroutine
		}
		if err := netns.Set(orig); err != nil {
			done <- result{ns: ns}
			return // left locked: the thread ends with the goroutine
		}
		goruntime.UnlockOSThread()
		done <- result{ns: ns}
	}()
	r := <-done
	return r.ns, r.err
}

// Link is how a machine's link to the bridge behaves.
type Link struct {
	Loss  float64 // percent of the packets the machine sends that are lost, 0 to 100 (steps of 0.01)
	Rate  uint64  // bits per second; 0 is unlimited
	Delay time.Duration
}

// Shape gives m's link l; l's zero value restores a plain link. Loss is
// dropped by an nftables table in the machine (packets out of eth0: the
// loss between two machines is the sender's), the rate limited by a token
// bucket (tbf) at both ends of the link. Delay needs the kernel's netem, which some kernels
// lack (this project's machines among them: CONFIG_NET_SCH_NETEM is not
// set); Shape then fails saying so.
func (l Lab) Shape(m Machine, link Link) error {
	if link.Loss < 0 || link.Loss > 100 {
		return fmt.Errorf("loss %v%%: want 0 to 100", link.Loss)
	}
	host, err := netlink.LinkByName(m.HostVeth)
	if err != nil {
		return fmt.Errorf("link of %s: %w", m.Name, err)
	}
	ns, err := netns.GetFromPath(m.NetNS)
	if err != nil {
		return fmt.Errorf("namespace of %s: %w", m.Name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	inner, err := h.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("eth0 of %s: %w", m.Name, err)
	}
	if err := rootQdisc(netlink.QdiscReplace, netlink.QdiscDel, host, link); err != nil {
		return fmt.Errorf("shape %s: %w", m.HostVeth, err)
	}
	if err := rootQdisc(h.QdiscReplace, h.QdiscDel, inner, link); err != nil {
		return fmt.Errorf("shape eth0 of %s: %w", m.Name, err)
	}
	if err := dropRandomly(ns, link.Loss); err != nil {
		return fmt.Errorf("loss on %s: %w", m.Name, err)
	}
	return nil
}

// rootQdisc sets the root qdisc of dev for link (netem for a delay, tbf
// for a rate alone, the default for neither), with replace and del of the
// device's namespace.
func rootQdisc(replace, del func(netlink.Qdisc) error, dev netlink.Link, link Link) error {
	attrs := netlink.QdiscAttrs{LinkIndex: dev.Attrs().Index, Handle: netlink.MakeHandle(1, 0), Parent: netlink.HANDLE_ROOT}
	switch {
	case link.Delay > 0:
		err := replace(netlink.NewNetem(attrs, netlink.NetemQdiscAttrs{
			Latency: uint32(link.Delay.Microseconds()),
			Rate64:  link.Rate / 8, // netem's rate is in bytes per second
		}))
		if errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("a delay needs the kernel's netem qdisc, which this kernel lacks (CONFIG_NET_SCH_NETEM): %w", err)
		}
		return err
	case link.Rate > 0:
		rate := link.Rate / 8
		// A burst of 10 ms of traffic (at least 16 KiB), a queue of 50 ms.
		buffer := max(uint32(rate/100), 16<<10)
		// The kernel takes the burst as the time to send it at rate.
		return replace(&netlink.Tbf{QdiscAttrs: attrs, Rate: rate, Buffer: netlink.Xmittime(rate, buffer), Limit: uint32(rate/20) + buffer})
	}
	// Back to the default: there may be nothing to remove (ENOENT, or
	// EINVAL for the default qdisc).
	err := del(&netlink.GenericQdisc{QdiscAttrs: attrs, QdiscType: "tbf"})
	if err != nil && !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// labTable is the nftables table Shape keeps in a machine.
const labTable = "chorus_lab"

// dropRandomly makes the nftables table of the machine whose namespace is
// ns drop loss percent of the packets out of eth0 (none: no table).
func dropRandomly(ns netns.NsHandle, loss float64) error {
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	if err := nft.DeleteTable(c, &nftables.Table{Family: nftables.TableFamilyINet, Name: labTable}); err != nil {
		return err
	}
	if per10k := uint32(loss*100 + 0.5); per10k > 0 {
		t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: labTable})
		// Postrouting: what the machine sends, its own packets and those it
		// forwards (its pods').
		ch := c.AddChain(&nftables.Chain{Name: "out", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityFilter})
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname("eth0")},
			// A random number below 10,000, in network order so that the
			// comparison (bytewise) orders it as a number.
			&expr.Numgen{Register: 1, Modulus: 10000, Type: unix.NFT_NG_RANDOM},
			&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
			&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: binary.BigEndian.AppendUint32(nil, per10k)},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	return c.Flush()
}

// ifname is an interface name as nftables compares it (16 bytes, NUL padded).
func ifname(n string) []byte {
	b := make([]byte, 16)
	copy(b, n)
	return b
}

// Command returns a command that runs name with args in machine m (through
// nsenter, which enters its network namespace only).
func (m Machine) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + m.NetNS, "--", name}, args...)...)
}
