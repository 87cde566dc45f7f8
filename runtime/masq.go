package runtime

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// masqTable is the nftables table (family ip) that masquerades what the
// pods of the peer with bridge br send out of the cluster.
func masqTable(br string) string { return "chorus_" + br }

// ensureMasquerade makes the peer's pods reach beyond the cluster under
// this machine's address, and the cluster's pods (cluster) under their own:
// traffic from subnet to anything but the prefixes of cluster, multicast
// and the bridge itself is masqueraded, in an nftables table of its own (replaced whole,
// so a changed subnet leaves no stale rule). The CNI bridge plugin's own
// ipMasq would masquerade pod-to-pod traffic between peers too, which
// Kubernetes forbids (a pod sees its peers' real addresses).
func ensureMasquerade(br string, subnet netip.Prefix, cluster []netip.Prefix) error {
	for _, p := range append([]netip.Prefix{subnet}, cluster...) {
		if !p.Addr().Is4() {
			return fmt.Errorf("masquerade: %v is not IPv4", p)
		}
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: masqTable(br)}
	if err := deleteTable(c, t); err != nil {
		return err
	}
	c.AddTable(t)
	ch := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	exprs := prefixMatch(12, subnet.Masked(), expr.CmpOpEq) // ip saddr subnet
	for _, p := range append(cluster, netip.MustParsePrefix("224.0.0.0/4")) {
		exprs = append(exprs, prefixMatch(16, p.Masked(), expr.CmpOpNeq)...) // ip daddr not in the cluster, not multicast
	}
	name := make([]byte, 16)
	copy(name, br)
	exprs = append(exprs,
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: name},
		&expr.Masq{})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables table %s: %w", t.Name, err)
	}
	return nil
}

// removeMasquerade deletes the table ensureMasquerade made, if any.
func removeMasquerade(br string) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	if err := deleteTable(c, &nftables.Table{Family: nftables.TableFamilyIPv4, Name: masqTable(br)}); err != nil {
		return err
	}
	return c.Flush()
}

// deleteTable queues the deletion of t if it exists.
func deleteTable(c *nftables.Conn, t *nftables.Table) error {
	tables, err := c.ListTablesOfFamily(t.Family)
	if err != nil && !errors.Is(err, syscall.ENOENT) {
		return fmt.Errorf("list nftables tables: %w", err)
	}
	for _, have := range tables {
		if have.Name == t.Name {
			c.DelTable(have)
		}
	}
	return nil
}

// prefixMatch compares the IPv4 address at offset of the network header
// (12: source, 16: destination), masked to p's length, with p.
func prefixMatch(offset uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
	m := make([]byte, 4)
	for i := 0; i < p.Bits(); i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	a := p.Masked().Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: m, Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: a[:]},
	}
}
