package runtime

import (
	"fmt"
	"net/netip"

	"github.com/chorus-sh/chorus/internal/nft"
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
	if err := nft.DeleteTable(c, t); err != nil {
		return err
	}
	c.AddTable(t)
	ch := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	exprs := nft.PrefixMatch(nft.Source, subnet.Masked(), expr.CmpOpEq) // ip saddr subnet
	for _, p := range append(cluster, netip.MustParsePrefix("224.0.0.0/4")) {
		exprs = append(exprs, nft.PrefixMatch(nft.Destination, p.Masked(), expr.CmpOpNeq)...) // ip daddr not in the cluster, not multicast
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
	if err := nft.DeleteTable(c, &nftables.Table{Family: nftables.TableFamilyIPv4, Name: masqTable(br)}); err != nil {
		return err
	}
	return c.Flush()
}
