package gossip

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	pb "github.com/libp2p/go-libp2p-pubsub/pb"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"go.uber.org/goleak"
)

// TestMain fails the package if any goroutine outlives the tests. It is
// goleak.VerifyTestMain with a longer grace: memberlist does not wait, on
// Shutdown, for a probe in flight, whose goroutine ends by itself within
// ProbeInterval (times the awareness multiplier, a few seconds at most).
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		err := goleak.Find()
		for deadline := time.Now().Add(10 * time.Second); err != nil && time.Now().Before(deadline); {
			time.Sleep(200 * time.Millisecond)
			err = goleak.Find()
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: errors on successful test run: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// Each test uses its own loopback IPs with the default ports: 127.0.0.51-53,
// 127.0.0.150-163, 127.0.0.170, 127.0.0.180-185 (other packages' tests use other addresses).

func testKey(t *testing.T) []byte {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("GOSSIP_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func startNode(t *testing.T, cfg Config) *Node {
	t.Helper()
	if cfg.Profile == "" {
		cfg.Profile = ProfileLocal
	}
	if cfg.Log == nil {
		cfg.Log = testLogger(t)
	}
	n, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start %s: %v", cfg.Name, err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Logf("close %s: %v", cfg.Name, err)
		}
	})
	return n
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		if cond() {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func statusOf(n *Node, name string) Status {
	for _, m := range n.Members() {
		if m.Name == name {
			return m.Status
		}
	}
	return ""
}

func aliveCount(n *Node) int {
	c := 0
	for _, m := range n.Members() {
		if m.Status == StatusAlive {
			c++
		}
	}
	return c
}

func TestMembershipJoinFailLeave(t *testing.T) {
	key := testKey(t)
	a := startNode(t, Config{Name: "a", BindAddr: "127.0.0.51", Key: key, DataDir: t.TempDir(),
		Tags: map[string]string{"role": "seed"}})
	b := startNode(t, Config{Name: "b", BindAddr: "127.0.0.52", Key: key, Join: []string{"127.0.0.51"}})
	c := startNode(t, Config{Name: "c", BindAddr: "127.0.0.53", Key: key, Join: []string{"127.0.0.51:7946"}})
	nodes := []*Node{a, b, c}
	d := waitFor(t, 10*time.Second, "3 alive members everywhere", func() bool {
		return aliveCount(a) == 3 && aliveCount(b) == 3 && aliveCount(c) == 3
	})
	t.Logf("cluster of 3 formed in %v", d)

	ms := b.Members()
	if ms[0].Name != "a" || ms[1].Name != "b" || ms[2].Name != "c" {
		t.Fatalf("members not sorted: %+v", ms)
	}
	if ms[0].Addr != "127.0.0.51:7946" || ms[0].Tags["role"] != "seed" ||
		ms[0].Tags[TagPeerID] != a.PeerID() || ms[0].Tags[TagP2PAddr] != "/ip4/127.0.0.51/tcp/7947" {
		t.Fatalf("member a as seen by b: %+v", ms[0])
	}
	if ms[0].Since.IsZero() || time.Since(ms[0].Since) > time.Minute {
		t.Fatalf("bad Since: %v", ms[0].Since)
	}
	// Data planes connect through the tags.
	d = waitFor(t, 10*time.Second, "data planes connected", func() bool {
		for _, n := range nodes {
			if len(n.host.Network().Peers()) < 2 {
				return false
			}
		}
		return true
	})
	t.Logf("data planes connected in %v", d)

	// Tag updates reach the others as update events, and count as a
	// change of the membership.
	evA, unsubA := a.Subscribe()
	defer unsubA()
	before := a.Changes()
	if err := c.SetTags(map[string]string{"zone": "z1"}); err != nil {
		t.Fatal(err)
	}
	if err := c.SetTags(map[string]string{TagPeerID: "x"}); err == nil {
		t.Fatal("SetTags accepted a reserved tag")
	}
	waitEvent(t, evA, 5*time.Second, EventUpdate, "c", func(m Member) bool {
		return m.Tags["zone"] == "z1" && m.Tags[TagPeerID] == c.PeerID()
	})
	if a.Changes() <= before {
		t.Fatalf("a tag update left Changes at %d", a.Changes())
	}

	// Failure: close c without leaving; a and b must see it Dead.
	evB, unsubB := b.Subscribe()
	defer unsubB()
	killed := time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		name string
		ch   <-chan MemberEvent
	}{{"a", evA}, {"b", evB}} {
		ev := waitEvent(t, w.ch, 8*time.Second, EventFailed, "c", nil)
		t.Logf("profile local: %s saw c failed after %v", w.name, time.Since(killed).Round(time.Millisecond))
		if ev.Member.Status != StatusDead {
			t.Fatalf("failed event with status %q", ev.Member.Status)
		}
	}
	if st := statusOf(a, "c"); st != StatusDead {
		t.Fatalf("a sees c as %q, want Dead", st)
	}
	for _, m := range a.Members() {
		if m.Name == "c" && m.Since.Before(killed) {
			t.Fatalf("Since of c not updated: %v", m.Since)
		}
	}

	// Graceful leave: b leaves then closes; a sees Left, not Dead. (a may
	// briefly see b failed if the memberlist leave overtakes serf's leave
	// intent, and if the memberlist leave is lost a's probes of the closed b
	// complete it: either way b ends Left.)
	leaving := time.Now()
	if err := b.Leave(); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, evA, 5*time.Second, EventLeave, "b", func(m Member) bool { return m.Status == StatusLeft })
	t.Logf("a saw b left %v after Leave began", time.Since(leaving).Round(time.Millisecond))
	if st := statusOf(a, "b"); st != StatusLeft {
		t.Fatalf("a sees b as %q, want Left", st)
	}
	for range evB { // closed by Close
	}
	if err := b.Leave(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Leave after Close: %v", err)
	}
}

// waitEvent waits for an event of typ about member (and matching ok).
func waitEvent(t *testing.T, ch <-chan MemberEvent, timeout time.Duration, typ EventType, member string, ok func(Member) bool) MemberEvent {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case ev, open := <-ch:
			if !open {
				t.Fatalf("event channel closed while waiting for %s %s", typ, member)
			}
			if ev.Type == typ && ev.Member.Name == member && (ok == nil || ok(ev.Member)) {
				return ev
			}
		case <-timer.C:
			t.Fatalf("no %s event for %s within %v", typ, member, timeout)
		}
	}
}

// waitTopicPeers waits until every node sees the others in the deltas topic.
func waitTopicPeers(t *testing.T, nodes ...*Node) {
	t.Helper()
	waitFor(t, 10*time.Second, "pubsub topic peers", func() bool {
		for _, n := range nodes {
			if len(n.ps.ListPeers(deltasTopic)) < len(nodes)-1 {
				return false
			}
		}
		return true
	})
}

func recvDelta(t *testing.T, n *Node, timeout time.Duration) Message {
	t.Helper()
	select {
	case m := <-n.Deltas():
		return m
	case <-time.After(timeout):
		t.Fatalf("%s received no delta within %v (stats %+v)", n.Name(), timeout, n.Stats())
		return Message{}
	}
}

func echoHandler(ctx context.Context, from string, req []byte) ([]byte, error) {
	if string(req) == "fail" {
		return nil, errors.New("handler says no")
	}
	if string(req) == "huge" {
		return make([]byte, MaxMessageSize+1), nil
	}
	if len(req) > 1024 {
		return []byte(fmt.Sprintf("%s sent %d bytes", from, len(req))), nil
	}
	return append([]byte(from+":"), req...), nil
}

func TestPublishAndSync(t *testing.T) {
	key := testKey(t)
	a := startNode(t, Config{Name: "a", BindAddr: "127.0.0.154", Key: key})
	b := startNode(t, Config{Name: "b", BindAddr: "127.0.0.155", Key: key, Join: []string{"127.0.0.154"}})
	c := startNode(t, Config{Name: "c", BindAddr: "127.0.0.156", Key: key, Join: []string{"127.0.0.154"}})
	waitFor(t, 10*time.Second, "3 alive", func() bool {
		return aliveCount(a) == 3 && aliveCount(b) == 3 && aliveCount(c) == 3
	})
	waitTopicPeers(t, a, b, c)

	sent := time.Now()
	if err := a.Publish(context.Background(), []byte("delta-1")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*Node{b, c} {
		m := recvDelta(t, n, 5*time.Second)
		if m.From != "a" || string(m.Data) != "delta-1" {
			t.Fatalf("%s got %+v", n.Name(), m)
		}
		t.Logf("%s received the delta after %v", n.Name(), time.Since(sent).Round(time.Millisecond))
	}
	select {
	case m := <-a.Deltas():
		t.Fatalf("publisher received its own delta %+v", m)
	case <-time.After(200 * time.Millisecond):
	}
	if err := a.Publish(context.Background(), make([]byte, MaxMessageSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized publish: %v", err)
	}

	// Sync round trip.
	a.HandleSync(echoHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := b.Sync(ctx, "a", []byte("hello"))
	if err != nil || string(resp) != "b:hello" {
		t.Fatalf("sync: %q, %v", resp, err)
	}
	// The largest request allowed goes through.
	resp, err = c.Sync(ctx, "a", make([]byte, MaxMessageSize))
	if err != nil || string(resp) != fmt.Sprintf("c sent %d bytes", MaxMessageSize) {
		t.Fatalf("max-size sync: %q, %v", resp, err)
	}
	// Handler errors and oversized responses come back as RemoteError.
	var re *RemoteError
	if _, err := b.Sync(ctx, "a", []byte("fail")); !errors.As(err, &re) || re.Msg != "handler says no" {
		t.Fatalf("handler error: %v", err)
	}
	if _, err := b.Sync(ctx, "a", []byte("huge")); !errors.As(err, &re) || !strings.Contains(re.Msg, "too large") {
		t.Fatalf("oversized response: %v", err)
	}
	// An oversized request is refused before anything is sent.
	if _, err := b.Sync(ctx, "a", make([]byte, MaxMessageSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized request: %v", err)
	}
	// A peer that announces an oversized frame anyway gets its stream reset.
	before := a.Stats().StreamsRejected
	s, err := b.host.NewStream(ctx, a.host.ID(), syncProtocol)
	if err != nil {
		t.Fatal(err)
	}
	var hdr [frameHeaderLen]byte
	hdr[1], hdr[2], hdr[3], hdr[4] = 0x00, 0x80, 0x00, 0x01 // 8 MiB + 1
	_, _ = s.Write(hdr[:])
	_ = s.CloseWrite()
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := readFrame(s, MaxMessageSize); err == nil {
		t.Fatal("oversized frame got a response")
	}
	_ = s.Reset()
	if got := a.Stats().StreamsRejected; got != before+1 {
		t.Fatalf("StreamsRejected %d, want %d", got, before+1)
	}
	// Node a still serves.
	if resp, err := c.Sync(ctx, "a", []byte("again")); err != nil || string(resp) != "c:again" {
		t.Fatalf("sync after refusal: %q, %v", resp, err)
	}
	// Unknown and self members.
	if _, err := b.Sync(ctx, "nobody", nil); err == nil {
		t.Fatal("sync with unknown member succeeded")
	}
	if _, err := b.Sync(ctx, "b", nil); err == nil {
		t.Fatal("sync with self succeeded")
	}
	// A member without a handler refuses.
	if _, err := a.Sync(ctx, "c", []byte("x")); err == nil {
		t.Fatal("sync with a node without handler succeeded")
	}
	// A cancelled context aborts a slow sync.
	c.HandleSync(func(ctx context.Context, _ string, _ []byte) ([]byte, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	short, cancelShort := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancelShort()
	start := time.Now()
	if _, err := a.Sync(short, "c", []byte("slow")); err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("slow sync: %v after %v", err, time.Since(start))
	}
}

func TestWrongKeyRefused(t *testing.T) {
	key := testKey(t)
	a := startNode(t, Config{Name: "a", BindAddr: "127.0.0.150", Key: key})
	b := startNode(t, Config{Name: "b", BindAddr: "127.0.0.151", Key: key, Join: []string{"127.0.0.150"}})
	x := startNode(t, Config{Name: "x", BindAddr: "127.0.0.152", Key: testKey(t), Join: []string{"127.0.0.150", "127.0.0.151"}})
	y := startNode(t, Config{Name: "y", BindAddr: "127.0.0.153", Join: []string{"127.0.0.150"}}) // no key
	waitFor(t, 10*time.Second, "a and b joined", func() bool { return aliveCount(a) == 2 && aliveCount(b) == 2 })
	for _, n := range []*Node{a, b} {
		n.HandleSync(echoHandler)
	}
	x.HandleSync(echoHandler)
	y.HandleSync(echoHandler)
	waitFor(t, 10*time.Second, "refused joins counted", func() bool {
		return a.Stats().GossipRejected > 0
	})
	time.Sleep(2500 * time.Millisecond) // let x and y retry their joins
	for _, n := range []*Node{a, b} {
		if ms := n.Members(); len(ms) != 2 {
			t.Fatalf("%s has members %+v", n.Name(), ms)
		}
	}
	for _, n := range []*Node{x, y} {
		if ms := n.Members(); len(ms) != 1 {
			t.Fatalf("%s learned members %+v", n.Name(), ms)
		}
	}
	t.Logf("a rejected %d gossip messages", a.Stats().GossipRejected)

	// Deltas reach b but not x or y.
	waitTopicPeers(t, a, b)
	if err := a.Publish(context.Background(), []byte("secret")); err != nil {
		t.Fatal(err)
	}
	if m := recvDelta(t, b, 5*time.Second); string(m.Data) != "secret" {
		t.Fatalf("b got %+v", m)
	}
	for _, n := range []*Node{x, y} {
		select {
		case m := <-n.Deltas():
			t.Fatalf("%s received %+v", n.Name(), m)
		case <-time.After(500 * time.Millisecond):
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Through the API, neither side knows the other.
	if _, err := a.Sync(ctx, "x", []byte("q")); err == nil {
		t.Fatal("a synced with x")
	}
	if _, err := x.Sync(ctx, "a", []byte("q")); err == nil {
		t.Fatal("x synced with a")
	}
	// Directly on the data plane: the connection gater refuses the connection.
	dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
	defer dcancel()
	for _, n := range []*Node{x, y} {
		// The dialer may see its side of the handshake complete (y, with
		// no key, lets anyone in) before a refuses the connection, but no
		// stream gets through and a keeps no connection.
		ai := peer.AddrInfo{ID: a.host.ID(), Addrs: a.host.Addrs()}
		if err := n.host.Connect(dctx, ai); err == nil {
			if s, err := n.host.NewStream(dctx, a.host.ID(), syncProtocol); err == nil {
				_ = s.SetDeadline(time.Now().Add(2 * time.Second))
				_ = writeFrame(s, frameOK, []byte("q"))
				_ = s.CloseWrite()
				if _, _, err := readFrame(s, MaxMessageSize); err == nil {
					t.Fatalf("%s synced through a's data plane", n.Name())
				}
				_ = s.Reset()
			}
		}
		if cs := a.host.Network().ConnsToPeer(n.host.ID()); len(cs) > 0 {
			t.Fatalf("a keeps %d connections of %s", len(cs), n.Name())
		}
		ai = peer.AddrInfo{ID: n.host.ID(), Addrs: n.host.Addrs()}
		if err := a.host.Connect(dctx, ai); err == nil {
			t.Fatalf("a connected to %s's data plane", n.Name())
		}
	}
}

// Without a key the cluster is open, but the data plane still serves only
// alive members.
func TestDataPlaneServesOnlyMembers(t *testing.T) {
	a := startNode(t, Config{Name: "a", BindAddr: "127.0.0.157"})
	o := startNode(t, Config{Name: "o", BindAddr: "127.0.0.158"}) // not joined
	a.HandleSync(echoHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := o.host.Connect(ctx, peer.AddrInfo{ID: a.host.ID(), Addrs: a.host.Addrs()}); err != nil {
		t.Fatal(err)
	}
	// a resets the stream of a non-member: before the protocol is
	// negotiated (NewStream fails) or after (the read fails), depending
	// on timing; either way nothing is served.
	s, err := o.host.NewStream(ctx, a.host.ID(), syncProtocol)
	if err == nil {
		_ = s.SetDeadline(time.Now().Add(5 * time.Second))
		_ = writeFrame(s, frameOK, []byte("q"))
		_ = s.CloseWrite()
		if _, _, err := readFrame(s, MaxMessageSize); err == nil {
			t.Fatal("non-member served by sync")
		}
		_ = s.Reset()
	} else if !strings.Contains(err.Error(), "reset") {
		t.Fatalf("sync stream of a non-member: %v (want a reset)", err)
	}

	// Hello from a non-member asking a to join an address on another IP:
	// refused, and a does not reveal its serf address.
	s, err = o.host.NewStream(ctx, a.host.ID(), helloProtocol)
	if err != nil {
		t.Fatal(err)
	}
	_ = s.SetDeadline(time.Now().Add(5 * time.Second))
	_ = writeFrame(s, frameOK, []byte("192.0.2.1:7946"))
	_ = s.CloseWrite()
	kind, payload, err := readFrame(s, maxErrorText)
	if err == nil && kind == frameOK {
		t.Fatalf("hello served %q to a non-member", payload)
	}
	_ = s.Reset()
	if got := a.Stats().StreamsRejected; got < 2 {
		t.Fatalf("StreamsRejected %d, want 2", got)
	}

	// Deltas: a knows o subscribes to the topic but sends it nothing (had it
	// sent, o's validator would have counted the delta from a non-member).
	waitTopicPeers(t, a, o)
	if err := a.Publish(ctx, []byte("members only")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond) // three heartbeats: mesh, IHAVE
	if got := o.Stats().PubsubRejected; got != 0 {
		t.Fatalf("a sent %d deltas to a non-member", got)
	}

	// Pubsub validator: deltas authored or forwarded by non-members, and
	// oversized ones, are rejected.
	before := a.Stats().PubsubRejected
	for _, m := range []*pubsub.Message{
		{Message: &pb.Message{Data: []byte("x"), From: []byte(o.host.ID())}, ReceivedFrom: o.host.ID()},
		{Message: &pb.Message{Data: []byte("x"), From: []byte(a.host.ID())}, ReceivedFrom: o.host.ID()},
		{Message: &pb.Message{Data: make([]byte, MaxMessageSize+1), From: []byte(a.host.ID())}, ReceivedFrom: a.host.ID()},
	} {
		if r := a.validateDelta(ctx, m.ReceivedFrom, m); r != pubsub.ValidationReject {
			t.Fatalf("validator accepted %v", r)
		}
	}
	if got := a.Stats().PubsubRejected; got != before+3 {
		t.Fatalf("PubsubRejected %d, want %d", got, before+3)
	}
	own := &pubsub.Message{Message: &pb.Message{Data: []byte("x"), From: []byte(a.host.ID())}, ReceivedFrom: a.host.ID()}
	if r := a.validateDelta(ctx, a.host.ID(), own); r != pubsub.ValidationAccept {
		t.Fatalf("validator rejected own message: %v", r)
	}

	// Once o joins, it is served.
	if _, err := o.serf.Join([]string{"127.0.0.157:7946"}, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "a and o members of each other", func() bool {
		_, ok1 := a.isAliveMember(o.host.ID())
		_, ok2 := o.isAliveMember(a.host.ID())
		return ok1 && ok2
	})
	if resp, err := o.Sync(ctx, "a", []byte("q")); err != nil || string(resp) != "o:q" {
		t.Fatalf("member sync: %q, %v", resp, err)
	}
	if err := a.Publish(ctx, []byte("welcome")); err != nil {
		t.Fatal(err)
	}
	if m := recvDelta(t, o, 5*time.Second); m.From != "a" || string(m.Data) != "welcome" {
		t.Fatalf("o got %+v (stats %+v)", m, o.Stats())
	}
}

func TestRestartKeepsIdentityAndRejoins(t *testing.T) {
	key := testKey(t)
	dirB := t.TempDir()
	a := startNode(t, Config{Name: "a", BindAddr: "127.0.0.159", Key: key, DataDir: t.TempDir()})
	cfgB := Config{Name: "b", BindAddr: "127.0.0.160", Key: key, DataDir: dirB, Join: []string{"127.0.0.159"}, Profile: ProfileLocal}
	b, err := Start(context.Background(), cfgB)
	if err != nil {
		t.Fatal(err)
	}
	id := b.PeerID()
	waitFor(t, 10*time.Second, "b joined", func() bool { return aliveCount(a) == 2 && aliveCount(b) == 2 })
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "b dead", func() bool { return statusOf(a, "b") == StatusDead })

	// Restart without seeds: the serf snapshot rejoins a.
	cfgB.Join = nil
	b2 := startNode(t, cfgB)
	if b2.PeerID() != id {
		t.Fatalf("peer id changed across restart: %s -> %s", id, b2.PeerID())
	}
	d := waitFor(t, 15*time.Second, "restarted b alive again", func() bool {
		return statusOf(a, "b") == StatusAlive && aliveCount(b2) == 2
	})
	t.Logf("restarted node rejoined from its snapshot in %v", d)
	for _, m := range a.Members() {
		if m.Name == "b" && m.Tags[TagPeerID] != id {
			t.Fatalf("a sees b with peer id %s", m.Tags[TagPeerID])
		}
	}
	// A corrupt identity is an error, not a new identity.
	if err := os.WriteFile(dirB+"/"+identityFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadIdentity(dirB); err == nil {
		t.Fatal("corrupt identity accepted")
	}
}

// enableLoopbackMulticast turns multicast on for lo (off by default), which
// mDNS needs to reach peers on other 127.0.0.x addresses.
func enableLoopbackMulticast(t *testing.T) {
	t.Helper()
	out, err := exec.Command("ip", "link", "show", "lo").CombinedOutput()
	if err != nil {
		t.Fatalf("cannot inspect lo (is iproute2 installed?): %v: %s", err, out)
	}
	if strings.Contains(string(out), "MULTICAST") {
		t.Log("multicast already enabled on lo")
		return
	}
	t.Log("enabling multicast on the loopback interface: ip link set lo multicast on (left on)")
	if out, err := exec.Command("ip", "link", "set", "lo", "multicast", "on").CombinedOutput(); err != nil {
		t.Fatalf("cannot enable multicast on lo (needs root/CAP_NET_ADMIN): %v: %s", err, out)
	}
	out, err = exec.Command("ip", "link", "show", "lo").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "MULTICAST") {
		t.Fatalf("multicast still off on lo: %v: %s", err, out)
	}
}

func TestMDNSDiscovery(t *testing.T) {
	enableLoopbackMulticast(t)
	key := testKey(t) // strangers discovered on lo (other tests) cannot join
	a := startNode(t, Config{Name: "a", BindAddr: "127.0.0.161", Key: key, Discover: true})
	b := startNode(t, Config{Name: "b", BindAddr: "127.0.0.162", Key: key, Discover: true})
	d := waitFor(t, 30*time.Second, "mdns cluster of 2", func() bool {
		return aliveCount(a) == 2 && aliveCount(b) == 2
	})
	t.Logf("mDNS nodes formed one cluster in %v", d)
	waitFor(t, 10*time.Second, "data planes connected", func() bool {
		_, ok := a.isAliveMember(b.host.ID())
		return ok && a.host.Network().Connectedness(b.host.ID()) == network.Connected
	})
	// A late peer is found by, and finds, both.
	c := startNode(t, Config{Name: "c", BindAddr: "127.0.0.163", Key: key, Discover: true})
	d = waitFor(t, 30*time.Second, "mdns cluster of 3", func() bool {
		return aliveCount(a) == 3 && aliveCount(b) == 3 && aliveCount(c) == 3
	})
	t.Logf("a late mDNS node joined in %v", d)
}

func TestHelloDue(t *testing.T) {
	now := time.Now()
	small, large := peer.ID("a"), peer.ID("b")
	fresh := &mdnsPeer{info: peer.AddrInfo{ID: large}, seen: now}
	if !helloDue(small, fresh, now) {
		t.Fatal("the smaller peer id must say hello at once")
	}
	fresh.info.ID = small
	if helloDue(large, fresh, now) {
		t.Fatal("the larger peer id must wait before its first hello")
	}
	if !helloDue(large, fresh, now.Add(helloDefer)) {
		t.Fatal("the larger peer id must say hello after helloDefer")
	}
	failed := &mdnsPeer{info: peer.AddrInfo{ID: large}, seen: now, tried: now, fails: 1}
	if helloDue(small, failed, now.Add(helloRetry)) || !helloDue(small, failed, now.Add(2*helloRetry)) {
		t.Fatal("retries must back off from helloRetry")
	}
	failed.fails = 50
	if !helloDue(small, failed, now.Add(helloBackoff)) {
		t.Fatal("the retry back-off must stop growing at helloBackoff")
	}
}

// The "lan" profile's documented target: a dead peer among 5 is declared
// failed in about 2-4 s.
func TestLANProfileDetection(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	var nodes []*Node
	for i := range 5 {
		cfg := Config{Name: fmt.Sprintf("n%d", i), BindAddr: fmt.Sprintf("127.0.0.%d", 170+i), Profile: ProfileLAN}
		if i > 0 {
			cfg.Join = []string{"127.0.0.170"}
		}
		nodes = append(nodes, startNode(t, cfg))
	}
	waitFor(t, 15*time.Second, "5 alive", func() bool {
		for _, n := range nodes {
			if aliveCount(n) != 5 {
				return false
			}
		}
		return true
	})
	victim := nodes[4]
	var chans []<-chan MemberEvent
	for _, n := range nodes[:4] {
		ch, unsub := n.Subscribe()
		defer unsub()
		chans = append(chans, ch)
	}
	killed := time.Now()
	if err := victim.Close(); err != nil {
		t.Fatal(err)
	}
	var worst time.Duration
	for i, ch := range chans {
		waitEvent(t, ch, 10*time.Second, EventFailed, victim.Name(), nil)
		d := time.Since(killed)
		worst = max(worst, d)
		t.Logf("profile lan: %s saw %s failed after %v", nodes[i].Name(), victim.Name(), d.Round(time.Millisecond))
	}
	if worst > 8*time.Second {
		t.Fatalf("lan detection took %v, target 2-4 s", worst)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []Config{
		{Name: "k", BindAddr: "127.0.0.180", Key: []byte("short")},
		{Name: "p", BindAddr: "127.0.0.180", Profile: "fast"},
		{Name: "i", BindAddr: "not-an-ip"},
		{Name: "t", BindAddr: "127.0.0.180", Tags: map[string]string{TagPeerID: "x"}},
	} {
		if n, err := Start(context.Background(), cfg); err == nil {
			n.Close()
			t.Fatalf("config %+v accepted", cfg)
		}
	}
	// Ports in use: Start fails cleanly (and leaks nothing, see TestMain).
	a := startNode(t, Config{Name: "a", BindAddr: "127.0.0.181"})
	if n, err := Start(context.Background(), Config{Name: "b", BindAddr: "127.0.0.181"}); err == nil {
		n.Close()
		t.Fatal("second node on the same ports started")
	}
	_ = a
	if got := withDefaultPort("10.0.0.1", 7946); got != "10.0.0.1:7946" {
		t.Fatal(got)
	}
	if got := withDefaultPort("[::1]", 7946); got != "[::1]:7946" {
		t.Fatal(got)
	}
	if got := withDefaultPort("h:1", 7946); got != "h:1" {
		t.Fatal(got)
	}
}

func TestLogBridge(t *testing.T) {
	var buf bytes.Buffer
	var n atomic.Uint64
	b := &logBridge{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), rejected: &n}
	for _, l := range []string{
		"[DEBUG] memberlist: Stream connection from=1.2.3.4:5",
		"[ERR] memberlist: failed to receive: No installed keys could decrypt the message from=1.2.3.4:5",
		"[ERR] memberlist: Decrypt packet failed: x",
		"[WARN] memberlist: Got invalid checksum for UDP packet: 1, 2",
		"[ERR] memberlist: Failed to send gossip to x",
		"[INFO] serf: EventMemberJoin: a 127.0.0.1",
	} {
		fmt.Fprintln(b, l)
	}
	if n.Load() != 3 {
		t.Fatalf("counted %d rejections, want 3", n.Load())
	}
	if !strings.Contains(buf.String(), "level=ERROR") || !strings.Contains(buf.String(), "level=DEBUG") {
		t.Fatalf("levels not mapped: %s", buf.String())
	}
}
