package nft

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/google/nftables/expr"
)

func TestPrefixMatch(t *testing.T) {
	e := PrefixMatch(Destination, netip.MustParsePrefix("10.88.7.9/24"), expr.CmpOpNeq)
	if len(e) != 3 {
		t.Fatalf("%d expressions", len(e))
	}
	if p := e[0].(*expr.Payload); p.Offset != 16 || p.Len != 4 {
		t.Fatalf("payload %+v", p)
	}
	if b := e[1].(*expr.Bitwise); !bytes.Equal(b.Mask, []byte{255, 255, 255, 0}) {
		t.Fatalf("mask %v", b.Mask)
	}
	if c := e[2].(*expr.Cmp); c.Op != expr.CmpOpNeq || !bytes.Equal(c.Data, []byte{10, 88, 7, 0}) {
		t.Fatalf("compare %+v", c)
	}
}
