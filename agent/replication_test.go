package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
	"github.com/chorus-sh/chorus/crdt"
	"github.com/chorus-sh/chorus/state"
)

// memTransport connects replicators in memory, for unit tests of the
// replication protocol. Publish is dropped: these tests exercise
// anti-entropy alone.
type memTransport struct {
	peers map[string]*replicator
}

func (m *memTransport) Publish(context.Context, []byte) error { return nil }

func (m *memTransport) Sync(ctx context.Context, member string, req []byte) ([]byte, error) {
	p, ok := m.peers[member]
	if !ok {
		return nil, fmt.Errorf("no peer %s", member)
	}
	return p.handleSync(ctx, "", req)
}

func newTestReplicator(t *testing.T, node string, tr *memTransport) *replicator {
	t.Helper()
	st, err := state.Open(filepath.Join(t.TempDir(), "state.crdt"), node)
	if err != nil {
		t.Fatal(err)
	}
	r := newReplicator(st, tr, slog.New(slog.NewTextHandler(io.Discard, nil)))
	tr.peers[node] = r
	return r
}

func TestAntiEntropyConverges(t *testing.T) {
	tr := &memTransport{peers: map[string]*replicator{}}
	a := newTestReplicator(t, "a", tr)
	b := newTestReplicator(t, "b", tr)
	for i := 0; i < 50; i++ {
		d := deployment(int32(i%5+1), "web:1", "25%", "25%")
		d.Metadata.Name = fmt.Sprintf("web%d", i)
		st := a.store
		if i%2 == 1 {
			st = b.store
		}
		if _, err := st.Apply([]api.Object{d}, time.Now(), false); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.store.Remove([]string{state.Key(api.KindDeployment, "default", "web1")}); err != nil {
		t.Fatal(err)
	}
	n, err := a.round(context.Background(), "b")
	if err != nil || n == 0 {
		t.Fatalf("first round: %d keys, %v", n, err)
	}
	var da, db crdt.Digest
	a.store.Read(func(s *crdt.State) { da = s.Digest() })
	b.store.Read(func(s *crdt.State) { db = s.Digest() })
	if da != db {
		t.Fatal("digests differ after a round")
	}
	if got := len(a.store.List(api.KindDeployment, "")); got != 49 {
		t.Fatalf("a holds %d deployments, want 49", got)
	}
	// Peers that agree transfer nothing but digests.
	before := a.bytesOut.Load()
	if n, err := a.round(context.Background(), "b"); err != nil || n != 0 {
		t.Fatalf("second round: %d keys, %v", n, err)
	}
	if sent := a.bytesOut.Load() - before; sent > 600 {
		t.Fatalf("a round between agreeing peers sent %d bytes", sent)
	}
}

func TestMalformedMessagesAreCounted(t *testing.T) {
	tr := &memTransport{peers: map[string]*replicator{}}
	a := newTestReplicator(t, "a", tr)
	a.receive("x", []byte("garbage"))
	if _, err := a.handleSync(context.Background(), "x", []byte{msgExchange, 0xff, 0xff}); err == nil {
		t.Fatal("malformed exchange accepted")
	}
	if _, err := a.handleSync(context.Background(), "x", nil); err == nil {
		t.Fatal("empty request accepted")
	}
	if got := a.malformed.Load(); got != 3 {
		t.Fatalf("malformed counter %d, want 3", got)
	}
	if len(a.store.List(api.KindDeployment, "")) != 0 {
		t.Fatal("state changed by malformed messages")
	}
}

func FuzzHandleSync(f *testing.F) {
	f.Add([]byte{msgDigest})
	f.Add(append([]byte{msgExchange}, frame([]byte{1}, []byte{1})...))
	f.Add([]byte("X\x05hello"))
	f.Fuzz(func(t *testing.T, req []byte) {
		tr := &memTransport{peers: map[string]*replicator{}}
		a := newTestReplicator(t, "a", tr)
		_, _ = a.handleSync(context.Background(), "x", req)
		a.receive("x", req)
	})
}

func TestStalePeerRebuildsFromOthers(t *testing.T) {
	tr := &memTransport{peers: map[string]*replicator{}}
	a := newTestReplicator(t, "a", tr)
	b := newTestReplicator(t, "b", tr)
	// a holds an object the others deleted and forgot long ago.
	d := deployment(1, "web:1", "25%", "25%")
	if _, err := a.store.Apply([]api.Object{d}, time.Now(), false); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-8 * 24 * time.Hour)
	if err := os.WriteFile(a.store.SyncFile(), []byte(strconv.FormatInt(old.Unix(), 10)), 0o644); err != nil {
		t.Fatal(err)
	}
	if !a.store.CheckStale(time.Now(), crdt.DefaultTombstoneHorizon) {
		t.Fatal("a peer away for 8 days is not stale")
	}
	if _, err := a.round(context.Background(), "b"); err != nil {
		t.Fatal(err)
	}
	if n := len(a.store.List(api.KindDeployment, "")); n != 0 {
		t.Fatalf("the stale peer kept %d objects the others no longer have", n)
	}
	if n := len(b.store.List(api.KindDeployment, "")); n != 0 {
		t.Fatalf("the stale peer resurrected %d objects on b", n)
	}
}
