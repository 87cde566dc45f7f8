package agent

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/chorus-sh/chorus/placement/subnet"
	"github.com/chorus-sh/chorus/state"
)

func testSubnetAgent(t *testing.T, name, bind string, join []string) *Agent {
	t.Helper()
	dir := t.TempDir()
	st, err := state.Open(filepath.Join(dir, "state.crdt"), name)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Name: name, Bind: bind, DataDir: dir, Join: join, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := cfg.Defaults(); err != nil {
		t.Fatal(err)
	}
	return &Agent{cfg: cfg, log: cfg.Log, store: st, events: newEvents(name, 10), kick: make(chan struct{}, 1)}
}

func writeClaim(t *testing.T, s *state.Store, c subnet.Claim) {
	t.Helper()
	d := docOfClaim(c)
	sub, _ := json.Marshal(d.Subnet)
	since, _ := json.Marshal(d.Since)
	if err := s.WriteFields(podSubnetKey(c.Peer), map[string]json.RawMessage{"spec.subnet": sub, "spec.since": since}); err != nil {
		t.Fatal(err)
	}
}

// A first peer takes 10.88.<last octet>.0/24 at once; a new peer that
// joins waits to see the claims (provisional); a peer keeps its recorded
// subnet even when its address changed; a record that does not decode is
// ignored.
func TestInitialSubnet(t *testing.T) {
	a := testSubnetAgent(t, "k1", "127.0.250.5", nil)
	c, settled, _, err := a.initialSubnet()
	if err != nil || !settled || c.Subnet.String() != "10.88.5.0/24" {
		t.Fatalf("first peer: %v %v %v", c, settled, err)
	}

	b := testSubnetAgent(t, "k2", "127.0.251.5", []string{"127.0.250.5"})
	writeClaim(t, b.store, subnet.Claim{Peer: "k1", Subnet: netip.MustParsePrefix("10.88.5.0/24"), Since: subnet.Since{Wall: 1}})
	c, settled, _, err = b.initialSubnet()
	if err != nil || settled || c.Subnet.String() == "10.88.5.0/24" {
		t.Fatalf("joining peer: %v %v %v", c, settled, err)
	}

	// Restarted with another address: the record wins over the octet.
	if err := b.writeSubnetRecord(c); err != nil {
		t.Fatal(err)
	}
	b.cfg.Bind = "127.0.0.9"
	again, settled, _, err := b.initialSubnet()
	if err != nil || !settled || again != c {
		t.Fatalf("restarted peer: %v %v %v, want %v", again, settled, err, c)
	}
	var rec Config
	if raw, err := os.ReadFile(filepath.Join(b.cfg.DataDir, peerFile)); err != nil || json.Unmarshal(raw, &rec) != nil {
		t.Fatalf("peer.json: %v", err)
	}

	// Restarted with another --pod-subnet: its former subnet is named, to
	// take its service addresses off lo, unless another peer claims it.
	b.cfg.PodSubnet = "10.77.0.0/24"
	if moved, _, former, err := b.initialSubnet(); err != nil || moved.Subnet.String() != "10.77.0.0/24" || former != c.Subnet {
		t.Fatalf("restarted with --pod-subnet: %v, former %v, %v; want 10.77.0.0/24, former %v", moved, former, err, c.Subnet)
	}
	writeClaim(t, b.store, subnet.Claim{Peer: "k9", Subnet: c.Subnet, Since: subnet.Since{Wall: 3}})
	if _, _, former, err := b.initialSubnet(); err != nil || former.IsValid() {
		t.Fatalf("former %v (%v), want none: peer k9 claims %v now", former, err, c.Subnet)
	}
	b.cfg.PodSubnet = ""

	// Data dir lost, the cluster remembers: the replicated claim is kept.
	lost := testSubnetAgent(t, "k3", "127.0.252.5", []string{"127.0.250.5"})
	mine := subnet.Claim{Peer: "k3", Subnet: netip.MustParsePrefix("10.88.200.0/24"), Since: subnet.Since{Wall: 2}}
	writeClaim(t, lost.store, mine)
	if c, settled, _, _ := lost.initialSubnet(); c != mine || !settled {
		t.Fatalf("remembered claim: %v %v", c, settled)
	}

	// A corrupt record is ignored, not fatal.
	if err := os.WriteFile(filepath.Join(a.cfg.DataDir, subnetRecordFile), []byte("{\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, _, _, err := a.initialSubnet(); err != nil || c.Subnet.String() != "10.88.5.0/24" {
		t.Fatalf("corrupt record: %v %v", c, err)
	}

	// An explicit subnet is validated.
	bad := Config{Name: "x", PodSubnet: "10.88.0.0/30"}
	if err := bad.Defaults(); err == nil {
		t.Fatal("--pod-subnet /30 accepted")
	}
}

func TestStoredClaims(t *testing.T) {
	a := testSubnetAgent(t, "k1", "127.0.0.11", nil)
	want := subnet.Claim{Peer: "k2", Subnet: netip.MustParsePrefix("10.90.3.0/24"), Since: subnet.Since{Wall: 5, Logical: 1}}
	writeClaim(t, a.store, want)
	if err := a.store.WriteFields(podSubnetKey("k3"), map[string]json.RawMessage{"spec.subnet": json.RawMessage(`"junk"`)}); err != nil {
		t.Fatal(err)
	}
	got := storedClaims(a.store)
	if len(got) != 1 || got["k2"] != want {
		t.Fatalf("claims %v", got)
	}
}

// FuzzSubnetClaim: a claim read from another peer or from the disk never
// panics, and what decodes is a usable subnet that encodes back the same.
func FuzzSubnetClaim(f *testing.F) {
	f.Add([]byte(`"10.88.5.0/24"`), []byte(`{"wall":1,"logical":2}`), []byte(`false`))
	f.Add([]byte(`"10.88.5.1/24"`), []byte(`{}`), []byte(`true`))
	f.Add([]byte(`"::/0"`), []byte(`null`), []byte(`1`))
	f.Fuzz(func(t *testing.T, sub, since, explicit []byte) {
		c, err := decodeStoredClaim("p", map[string]json.RawMessage{"spec.subnet": sub, "spec.since": since, "spec.explicit": explicit})
		if err == nil {
			if !c.Valid() {
				t.Fatalf("invalid claim decoded: %v", c)
			}
			b, _ := json.Marshal(docOfClaim(c))
			if c2, err := decodeSubnetRecord("p", b); err != nil || c2 != c {
				t.Fatalf("round trip: %v, %v", c2, err)
			}
		}
		_, _ = decodeSubnetRecord("p", sub)
	})
}
