package gossip

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// A cluster changes its gossip key with no member ever failed: install the
// new key everywhere, use it everywhere, remove the old one everywhere.
// Afterwards a node with only the old key can neither join nor reach the
// data plane, and a node with the new key joins.
func TestKeyRotationKeepsMembers(t *testing.T) {
	oldKey, newKey := testKey(t), testKey(t)
	a := startNode(t, Config{Name: "a", BindAddr: "127.0.0.182", Key: oldKey})
	b := startNode(t, Config{Name: "b", BindAddr: "127.0.0.183", Key: oldKey, Join: []string{"127.0.0.182"}})
	c := startNode(t, Config{Name: "c", BindAddr: "127.0.0.184", Key: oldKey, Join: []string{"127.0.0.182"}})
	nodes := []*Node{a, b, c}
	waitFor(t, 10*time.Second, "3 members", func() bool {
		return aliveCount(a) == 3 && aliveCount(b) == 3 && aliveCount(c) == 3
	})
	for _, n := range nodes {
		n.HandleSync(echoHandler)
	}
	allAlive := func(step string) {
		t.Helper()
		time.Sleep(1500 * time.Millisecond) // several probe rounds under the new keys
		for _, n := range nodes {
			if got := aliveCount(n); got != 3 {
				t.Fatalf("after %s, %s sees %d alive members: %+v", step, n.Name(), got, n.Members())
			}
		}
	}
	for _, n := range nodes {
		if err := n.InstallKey(newKey); err != nil {
			t.Fatal(err)
		}
	}
	allAlive("install")
	// One member sends under the new key while the others still send
	// under the old one: both are read.
	if err := a.UseKey(newKey); err != nil {
		t.Fatal(err)
	}
	allAlive("a uses the new key")
	for _, n := range nodes[1:] {
		if err := n.UseKey(newKey); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.RemoveKey(newKey); err == nil {
		t.Fatal("removed the primary key")
	}
	for _, n := range nodes {
		if err := n.RemoveKey(oldKey); err != nil {
			t.Fatal(err)
		}
		if ks := n.Keys(); len(ks) != 1 || !bytes.Equal(ks[0], newKey) {
			t.Fatalf("%s keys %x, want only the new key", n.Name(), ks)
		}
	}
	allAlive("retire")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if resp, err := b.Sync(ctx, "c", []byte("q")); err != nil || string(resp) != "b:q" {
		t.Fatalf("sync after the rotation: %q, %v", resp, err)
	}

	// A node with only the old key stays out, on both planes.
	o := startNode(t, Config{Name: "o", BindAddr: "127.0.0.185", Key: oldKey, Join: []string{"127.0.0.182"}})
	o.HandleSync(echoHandler)
	time.Sleep(2500 * time.Millisecond)
	if got := len(o.Members()); got != 1 {
		t.Fatalf("the old key joined: %+v", o.Members())
	}
	if got := aliveCount(a); got != 3 {
		t.Fatalf("a has %d alive members after the old key's join", got)
	}
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
	defer dcancel()
	if err := o.host.Connect(dctx, peer.AddrInfo{ID: a.host.ID(), Addrs: a.host.Addrs()}); err == nil {
		t.Fatal("a node with the old key connected to a's data plane")
	}
	if _, err := o.Sync(ctx, "a", []byte("q")); err == nil {
		t.Fatal("a node with the old key synced with a")
	}
	if err := o.Close(); err != nil {
		t.Logf("close o: %v", err)
	}

	// One with the new key (and the old one accepted too, as a peer
	// restarted during a rotation has) joins.
	time.Sleep(500 * time.Millisecond)
	d := startNode(t, Config{Name: "d", BindAddr: "127.0.0.185", Key: newKey, ExtraKeys: [][]byte{oldKey}, Join: []string{"127.0.0.183"}})
	waitFor(t, 15*time.Second, "d joined", func() bool { return aliveCount(d) == 4 && aliveCount(a) == 4 })
	if ks := d.Keys(); len(ks) != 2 || !bytes.Equal(ks[0], newKey) {
		t.Fatalf("d keys %x, want the new key first and the old one", ks)
	}
}

// A hello frame carries a proof under a key of the ring, bound to both
// peer ids and to its role.
func TestHelloProof(t *testing.T) {
	k1, k2 := testKey(t), testKey(t)
	a := startNode(t, Config{Name: "a", BindAddr: "127.0.0.182", Key: k1})
	b := startNode(t, Config{Name: "b", BindAddr: "127.0.0.183", Key: k2, ExtraKeys: [][]byte{k1}})
	x := startNode(t, Config{Name: "x", BindAddr: "127.0.0.184", Key: k2})
	open := startNode(t, Config{Name: "open", BindAddr: "127.0.0.185"})
	req := a.helloFrame(helloRequest, b.host.ID())
	if addr, err := b.readHelloFrame(req, helloRequest, a.host.ID()); err != nil || addr != a.serfAddr {
		t.Fatalf("b refused a's hello (a's key is b's second key): %q, %v", addr, err)
	}
	for _, c := range []struct {
		what string
		to   *Node
		role string
		from peer.ID
		b    []byte
	}{
		{"a key the receiver does not hold", x, helloRequest, a.host.ID(), a.helloFrame(helloRequest, x.host.ID())},
		{"a proof for another receiver", b, helloRequest, a.host.ID(), a.helloFrame(helloRequest, x.host.ID())},
		{"another sender", b, helloRequest, x.host.ID(), req},
		{"another role", b, helloResponse, a.host.ID(), req},
		{"no proof", b, helloRequest, open.host.ID(), open.helloFrame(helloRequest, b.host.ID())},
		{"a damaged proof", b, helloRequest, a.host.ID(), append(bytes.Clone(req[:len(req)-1]), req[len(req)-1]^1)},
	} {
		if addr, err := c.to.readHelloFrame(c.b, c.role, c.from); err == nil {
			t.Errorf("%s: accepted (%q)", c.what, addr)
		}
	}
	// An open cluster asks for no proof.
	if addr, err := open.readHelloFrame(open.helloFrame(helloRequest, a.host.ID()), helloRequest, a.host.ID()); err != nil || addr != open.serfAddr {
		t.Fatalf("open node: %q, %v", addr, err)
	}
	if err := open.InstallKey(k1); err != ErrNoKeyring {
		t.Fatalf("InstallKey on an open node: %v", err)
	}
}

// With a key and mDNS discovery, the gater lets a stranger connect (it
// may say hello), but it is served nothing: no sync, and a hello without
// a proof of the key is refused without a join or the node's address.
func TestDiscoverStrangerServedNothing(t *testing.T) {
	a := startNode(t, Config{Name: "a", BindAddr: "127.0.0.182", Key: testKey(t), Discover: true})
	a.HandleSync(echoHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o := startNode(t, Config{Name: "o", BindAddr: "127.0.0.183"}) // no key: its own gater is open
	if err := o.host.Connect(ctx, peer.AddrInfo{ID: a.host.ID(), Addrs: a.host.Addrs()}); err != nil {
		t.Fatalf("a, with discovery, refused a connection: %v", err)
	}
	before := a.Stats().StreamsRejected
	if s, err := o.host.NewStream(ctx, a.host.ID(), syncProtocol); err == nil {
		_ = s.SetDeadline(time.Now().Add(5 * time.Second))
		_ = writeFrame(s, frameOK, []byte("q"))
		_ = s.CloseWrite()
		if _, _, err := readFrame(s, MaxMessageSize); err == nil {
			t.Fatal("a stranger was served a sync")
		}
		_ = s.Reset()
	}
	s, err := o.host.NewStream(ctx, a.host.ID(), helloProtocol)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	_ = writeFrame(s, frameOK, []byte(o.serfAddr)) // no proof
	_ = s.CloseWrite()
	// Reset at once: no answer, not even "join failed" (no join tried).
	if kind, payload, err := readFrame(s, maxHelloFrame); err == nil {
		t.Fatalf("a hello without a proof was answered %d %q", kind, payload)
	}
	_ = s.Reset()
	if got := a.Stats().StreamsRejected; got < before+2 {
		t.Fatalf("StreamsRejected %d, want at least %d", got, before+2)
	}
	if len(a.Members()) != 1 || len(o.Members()) != 1 {
		t.Fatalf("a stranger joined: %v / %v", a.Members(), o.Members())
	}
}
