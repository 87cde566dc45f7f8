package gossip

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"github.com/hashicorp/memberlist"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Gossip keys and the data plane.
//
// Membership messages are encrypted with the keys of a memberlist keyring:
// they are sent under the primary key and accepted under any key of the
// ring, so a cluster changes its key without a pause: every member installs
// the new key (InstallKey), then makes it primary (UseKey), then removes the
// old one (RemoveKey), each step once every member has done the previous.
//
// The data plane (libp2p) is not keyed by a pre-shared key (a libp2p private
// network accepts exactly one, so it could not change without a pause).
// Instead, when the cluster has a key, a connection gater lets in only the
// peer ids that alive members advertise in their serf tags: as serf's
// messages are keyed, a peer id is advertised only by a holder of a gossip
// key. With Config.Discover the gater also lets in strangers, so that an
// mDNS discovery can say hello; a hello then carries a proof (an HMAC of
// both peer ids and the address, under a gossip key of the ring), the only
// stream a non-member is served, and the connection of a non-member is
// closed after a grace period. Without a key the data plane is open, and
// every stream but hello is served only to alive members.

// ErrNoKeyring is returned by the key operations of a node of an open
// cluster (no gossip key).
var ErrNoKeyring = errors.New("gossip: the cluster has no gossip key (open cluster): no keys to change")

func checkKey(key []byte) error {
	switch len(key) {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("gossip: key must be 16, 24 or 32 bytes, not %d", len(key))
}

// InstallKey adds key to the node's keyring: membership messages under it
// are accepted from now on; the node still sends under its primary key.
// Installing a key already there does nothing.
func (n *Node) InstallKey(key []byte) error {
	if n.keyring == nil {
		return ErrNoKeyring
	}
	if err := checkKey(key); err != nil {
		return err
	}
	if n.hasKey(key) {
		return nil
	}
	if err := n.keyring.AddKey(key); err != nil {
		return fmt.Errorf("gossip: install key: %w", err)
	}
	return nil
}

// UseKey makes key, installed first if it is not yet, the primary key: the
// node sends membership messages under it.
func (n *Node) UseKey(key []byte) error {
	if err := n.InstallKey(key); err != nil {
		return err
	}
	if err := n.keyring.UseKey(key); err != nil {
		return fmt.Errorf("gossip: use key: %w", err)
	}
	return nil
}

// RemoveKey removes key from the keyring: membership messages under it are
// refused from now on. The primary key cannot be removed; removing a key
// that is not there does nothing.
func (n *Node) RemoveKey(key []byte) error {
	if n.keyring == nil {
		return ErrNoKeyring
	}
	if !n.hasKey(key) {
		return nil
	}
	if err := n.keyring.RemoveKey(key); err != nil {
		return fmt.Errorf("gossip: remove key: %w", err)
	}
	return nil
}

// Keys returns the keys of the node's keyring, the primary key first; nil
// for an open cluster.
func (n *Node) Keys() [][]byte {
	if n.keyring == nil {
		return nil
	}
	// A copy: memberlist's RemoveKey shifts its slice in place, under a
	// caller ranging over it.
	return slices.Clone(n.keyring.GetKeys())
}

func (n *Node) hasKey(key []byte) bool {
	for _, k := range n.keyring.GetKeys() {
		if bytes.Equal(k, key) {
			return true
		}
	}
	return false
}

// newKeyring returns the keyring of a node: cfg.Key primary, cfg.ExtraKeys
// accepted too; nil without a key.
func newKeyring(cfg Config) (*memberlist.Keyring, error) {
	if cfg.Key == nil {
		return nil, nil
	}
	kr, err := memberlist.NewKeyring(cfg.ExtraKeys, cfg.Key)
	if err != nil {
		return nil, fmt.Errorf("gossip: keyring: %w", err)
	}
	return kr, nil
}

// helloMAC proves that the sender of a hello frame holds key: an HMAC of
// the direction, both peer ids and the serf address sent. The peer ids are
// those the Noise handshake authenticated, so a proof cannot be replayed by
// another peer or towards another peer.
func helloMAC(key []byte, role string, from, to peer.ID, addr string) []byte {
	m := hmac.New(sha256.New, key)
	for _, s := range []string{"chorus hello/2", role, string(from), string(to), addr} {
		m.Write([]byte(s))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

// Roles of a hello frame, in its MAC.
const (
	helloRequest  = "request"
	helloResponse = "response"
)

// helloFrame returns the payload of a hello frame: the serf address, and
// with a keyring a zero byte and the MAC under the primary key.
func (n *Node) helloFrame(role string, to peer.ID) []byte {
	b := []byte(n.serfAddr)
	if n.keyring != nil {
		b = append(b, 0)
		b = append(b, helloMAC(n.keyring.GetPrimaryKey(), role, n.host.ID(), to, n.serfAddr)...)
	}
	return b
}

// readHelloFrame returns the serf address of a hello frame from peer from,
// checking its MAC against every key of the ring when the node has one.
func (n *Node) readHelloFrame(b []byte, role string, from peer.ID) (string, error) {
	return checkHelloFrame(b, n.Keys(), role, from, n.host.ID())
}

// checkHelloFrame returns the serf address of a hello frame sent by from
// to to: with keys, only if its proof is a MAC under one of them.
func checkHelloFrame(b []byte, keys [][]byte, role string, from, to peer.ID) (string, error) {
	addrBytes, mac, keyed := bytes.Cut(b, []byte{0})
	addr, err := decodeHelloAddr(addrBytes)
	if err != nil {
		return "", err
	}
	if len(keys) == 0 {
		return addr, nil
	}
	if !keyed || len(mac) != sha256.Size {
		return "", errors.New("gossip: hello without a proof of the cluster's key")
	}
	for _, k := range keys {
		if hmac.Equal(mac, helloMAC(k, role, from, to, string(addrBytes))) {
			return addr, nil
		}
	}
	return "", errors.New("gossip: hello with a proof under no key of the cluster")
}

// gater lets into the data plane only the alive members of a keyed cluster
// (and, with mDNS discovery, strangers that may say hello). See the top of
// this file.
type gater struct{ n *Node }

func (g gater) allowed(p peer.ID) bool {
	n := g.n
	if n.cfg.Key == nil || n.cfg.Discover {
		return true
	}
	if _, ok := n.isAliveMember(p); ok {
		return true
	}
	if !n.serfReady.Load() {
		return false
	}
	return n.isMemberPeer(p)
}

func (g gater) InterceptPeerDial(p peer.ID) bool                                { return g.allowed(p) }
func (g gater) InterceptAddrDial(peer.ID, ma.Multiaddr) bool                    { return true }
func (g gater) InterceptAccept(network.ConnMultiaddrs) bool                     { return true }
func (g gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

func (g gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	if g.allowed(p) {
		return true
	}
	g.n.streamsRejected.Add(1)
	g.n.log.Debug("data plane connection refused: not an alive member", "peer", p.String())
	return false
}
