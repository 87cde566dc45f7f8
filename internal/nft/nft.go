// Package nft holds the few nftables building blocks (google/nftables)
// that chorus' packages writing rules share: replacing a table whole, and
// matching an IPv4 prefix.
package nft

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// Offsets of the IPv4 addresses in the network header, for PrefixMatch.
const (
	Source      = 12
	Destination = 16
)

// DeleteTable queues the deletion of t on c if the table exists (a table
// made before, replaced whole in the same transaction).
func DeleteTable(c *nftables.Conn, t *nftables.Table) error {
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

// PrefixMatch compares the IPv4 address at offset of the network header
// (Source or Destination), masked to p's length, with p (op: equal or not).
func PrefixMatch(offset uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
	a := p.Masked().Addr().As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: net.CIDRMask(p.Bits(), 32), Xor: make([]byte, 4)},
		&expr.Cmp{Op: op, Register: 1, Data: a[:]},
	}
}
