package proxy

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"

	"github.com/chorus-sh/chorus/internal/nft"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// natMark is the packet mark bit the endpoint chains set on the first
// packet of a translated connection, so that the postrouting chain knows
// which packets are ours to masquerade (as kube-proxy's 0x4000).
const natMark uint32 = 0x00200000

// applyNAT replaces the nftables table (family ip) with the rules of plan,
// in one transaction: a connection sees either the old rules or the new.
// The table:
//
//	chain prerouting { type nat hook prerouting priority dstnat; jump services }
//	chain output     { type nat hook output priority dstnat; ip saddr 127.0.0.0/8 return; jump services }
//	chain services   { ip daddr A meta l4proto P th dport N jump svcI; ... }
//	chain svcI       { ip saddr @affI_J goto epI_J ...;  numgen random mod (n-j) 0 goto epI_J ...; goto epI_last }
//	chain epI_J      { meta mark set mark | natMark; update @affI_J { ip saddr }; dnat to E }
//	chain postrouting { type nat hook postrouting priority srcnat;
//	                    mark natMark, saddr and daddr both in the pod subnet: masquerade  (a pod to a pod of this bridge)
//	                    mark natMark, neither in the pod subnet: masquerade }              (from outside or the host, to another peer)
//
// Endpoints are chosen at random, uniformly (endpoint j with probability
// 1/(n-j) once the ones before were passed over). A connection from a pod
// of this peer to another peer's pod keeps its source address: the answer
// comes back over the pod network to this peer, where connection tracking
// undoes the translation. Connections from the host's loopback addresses
// are left to the user-space proxy (a packet from 127.0.0.0/8 cannot leave
// the machine).
//
// prev is the plan the table holds (empty: none): the ClientIP bindings
// its affinity sets hold are carried over, with the life they have left,
// to the same service address and endpoint in the new table, so that a
// change of any service on this peer does not move a sticky client.
func applyNAT(table string, plan, prev natPlan, opts ...nftables.ConnOption) error {
	c, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: table}
	bound := affinityBindings(c, t, prev)
	if err := nft.DeleteTable(c, t); err != nil {
		return err
	}
	c.AddTable(t)
	services := c.AddChain(&nftables.Chain{Name: "services", Table: t})
	pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	out := c.AddChain(&nftables.Chain{Name: "output", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: []expr.Any{verdict(expr.VerdictJump, "services")}})
	c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: append(
		nft.PrefixMatch(nft.Source, netip.MustParsePrefix("127.0.0.0/8"), expr.CmpOpEq), &expr.Verdict{Kind: expr.VerdictReturn})})
	c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: []expr.Any{verdict(expr.VerdictJump, "services")}})
	for _, op := range []expr.CmpOp{expr.CmpOpEq, expr.CmpOpNeq} {
		e := markIsSet()
		e = append(e, nft.PrefixMatch(nft.Source, plan.PodSubnet, op)...)
		e = append(e, nft.PrefixMatch(nft.Destination, plan.PodSubnet, op)...)
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: append(e, &expr.Masq{})})
	}

	for i, p := range plan.Ports {
		svc := fmt.Sprintf("svc%d", i)
		proto := byte(unix.IPPROTO_TCP)
		if p.Proto == UDP {
			proto = unix.IPPROTO_UDP
		}
		a := p.Addr.Addr().As4()
		match := []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a[:]},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(p.Addr.Port())},
		}
		// A chain must exist before a rule names it, in the same batch.
		sc := c.AddChain(&nftables.Chain{Name: svc, Table: t})
		ecs := make([]*nftables.Chain, len(p.Endpoints))
		for j := range p.Endpoints {
			ecs[j] = c.AddChain(&nftables.Chain{Name: fmt.Sprintf("ep%d_%d", i, j), Table: t})
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: services, Exprs: append(match, verdict(expr.VerdictJump, svc))})

		var sets []*nftables.Set
		if p.Affinity > 0 {
			for j := range p.Endpoints {
				s := &nftables.Set{Table: t, Name: fmt.Sprintf("aff%d_%d", i, j), KeyType: nftables.TypeIPAddr,
					HasTimeout: true, Timeout: p.Affinity, Dynamic: true}
				if err := c.AddSet(s, bound[affinityKey{p.Addr, p.Proto, p.Endpoints[j].Addr}]); err != nil {
					return fmt.Errorf("nftables set %s: %w", s.Name, err)
				}
				sets = append(sets, s)
				c.AddRule(&nftables.Rule{Table: t, Chain: sc, Exprs: []expr.Any{
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
					&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
					verdict(expr.VerdictGoto, fmt.Sprintf("ep%d_%d", i, j)),
				}})
			}
		}
		n := len(p.Endpoints)
		for j, e := range p.Endpoints {
			ep := fmt.Sprintf("ep%d_%d", i, j)
			pick := []expr.Any{verdict(expr.VerdictGoto, ep)}
			if j < n-1 {
				pick = append([]expr.Any{
					&expr.Numgen{Register: 1, Modulus: uint32(n - j), Type: unix.NFT_NG_RANDOM},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: make([]byte, 4)},
				}, pick...)
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: sc, Exprs: pick})

			ec := ecs[j]
			exprs := setMark()
			if sets != nil {
				exprs = append(exprs,
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
					&expr.Dynset{SrcRegKey: 1, SetName: sets[j].Name, SetID: sets[j].ID,
						Operation: uint32(unix.NFT_DYNSET_OP_UPDATE), Timeout: p.Affinity})
			}
			ea := e.Addr.Addr().As4()
			exprs = append(exprs,
				&expr.Immediate{Register: 1, Data: ea[:]},
				&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(e.Addr.Port())},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true})
			c.AddRule(&nftables.Rule{Table: t, Chain: ec, Exprs: exprs})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables table %s: %w", table, err)
	}
	return nil
}

// affinityKey names a ClientIP affinity set across plans: a service
// address and one of its endpoints.
type affinityKey struct {
	addr  netip.AddrPort
	proto string
	ep    netip.AddrPort
}

// affinityBindings reads the clients bound in the affinity sets of table t
// as plan made it, each with the life it has left (at most its port's
// timeout). A set that cannot be read (no table yet) binds nobody.
func affinityBindings(c *nftables.Conn, t *nftables.Table, plan natPlan) map[affinityKey][]nftables.SetElement {
	out := map[affinityKey][]nftables.SetElement{}
	for i, p := range plan.Ports {
		if p.Affinity <= 0 {
			continue
		}
		for j, e := range p.Endpoints {
			elems, err := c.GetSetElements(&nftables.Set{Table: t, Name: fmt.Sprintf("aff%d_%d", i, j), KeyType: nftables.TypeIPAddr})
			if err != nil {
				continue
			}
			var keep []nftables.SetElement
			for _, el := range elems {
				left := min(el.Expires, p.Affinity)
				if len(el.Key) != 4 || left < time.Second {
					continue
				}
				keep = append(keep, nftables.SetElement{Key: el.Key, Timeout: left.Truncate(time.Millisecond)})
			}
			if len(keep) > 0 {
				out[affinityKey{p.Addr, p.Proto, e.Addr}] = keep
			}
		}
	}
	return out
}

// RemoveKernelRules deletes the nftables table of a proxy's kernel rules
// (KernelConfig.Table), if it exists: what a peer that was killed left.
func RemoveKernelRules(table string) error { return removeNAT(table) }

// removeNAT deletes the table, if it exists.
func removeNAT(table string) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if err := nft.DeleteTable(c, &nftables.Table{Family: nftables.TableFamilyIPv4, Name: table}); err != nil {
		return err
	}
	return c.Flush()
}

// forgetConnections deletes the connection-tracking entries of connections
// translated to endpoint k (their answers come from it, though they were
// sent elsewhere). The next packet of such a connection is translated
// anew, and reaches an endpoint that does not know it: a TCP client gets a
// reset at once instead of waiting on a pod that is gone, and a UDP flow
// moves to a live endpoint.
func forgetConnections(k natKey) (uint, error) {
	proto := uint8(unix.IPPROTO_TCP)
	if k.Proto == UDP {
		proto = unix.IPPROTO_UDP
	}
	n, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, translatedTo{k.Addr, proto})
	if err != nil {
		return n, fmt.Errorf("conntrack: delete connections to %v/%s: %w", k.Addr, k.Proto, err)
	}
	return n, nil
}

// translatedTo matches connections whose destination was translated to
// addr.
type translatedTo struct {
	addr  netip.AddrPort
	proto uint8
}

func (f translatedTo) MatchConntrackFlow(flow *netlink.ConntrackFlow) bool {
	if flow.Forward.Protocol != f.proto || flow.Reverse.SrcPort != f.addr.Port() {
		return false
	}
	src, ok := netip.AddrFromSlice(flow.Reverse.SrcIP)
	if !ok || src.Unmap() != f.addr.Addr() {
		return false
	}
	dst, _ := netip.AddrFromSlice(flow.Forward.DstIP)
	return dst.Unmap() != f.addr.Addr() || flow.Forward.DstPort != f.addr.Port()
}

var _ netlink.CustomConntrackFilter = translatedTo{}

func verdict(kind expr.VerdictKind, chain string) *expr.Verdict {
	return &expr.Verdict{Kind: kind, Chain: chain}
}

// setMark is "meta mark set meta mark | natMark".
func setMark() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native(^natMark), Xor: native(natMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}
}

// markIsSet is "meta mark & natMark != 0".
func markIsSet() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: native(natMark), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

// native is v in host byte order, as the kernel keeps the mark.
func native(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}
