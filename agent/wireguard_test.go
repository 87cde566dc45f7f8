package agent

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/chorus-sh/chorus/podnet"
)

func TestWireGuardKeyKept(t *testing.T) {
	dir := t.TempDir()
	k, err := loadWireGuardKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, wireGuardKeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st, err)
	}
	again, err := loadWireGuardKey(dir)
	if err != nil || again != k {
		t.Fatalf("the key changed across loads: %v %v", again, err)
	}
	if err := os.WriteFile(filepath.Join(dir, wireGuardKeyFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadWireGuardKey(dir); err == nil {
		t.Fatal("a garbled key file was taken")
	}
}

func TestWireGuardTag(t *testing.T) {
	k, err := podnet.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	tag := wireGuardTag(7949, k.Public())
	if len(tagWireGuard)+len(tag) > 52 {
		t.Fatalf("tag %q takes %d bytes of serf's 512", tag, len(tagWireGuard)+len(tag))
	}
	port, key, ok := parseWireGuardTag(tag)
	if !ok || port != 7949 || key != k.Public().String() {
		t.Fatalf("parse %q: %d %q %v", tag, port, key, ok)
	}
	for _, bad := range []string{"", "7949", "0/" + key, "70000/" + key, "x/" + key, "7949/short"} {
		if _, _, ok := parseWireGuardTag(bad); ok {
			t.Errorf("parseWireGuardTag(%q) accepted", bad)
		}
	}
	if n := wireGuardName("chorusabcdef"); len(n) > 15 || n == wireGuardName("chorusabcdee") {
		t.Errorf("device names %q", n)
	}
	if !wireGuardOn(Config{WireGuardPort: 7949}, true) || wireGuardOn(Config{WireGuardPort: 7949}, false) || wireGuardOn(Config{}, true) {
		t.Error("wireGuardOn: on only when secured with a port")
	}
}

func TestOverlayAddr(t *testing.T) {
	if got := overlayAddr(netip.MustParsePrefix("10.88.7.0/24")); got != netip.MustParsePrefix("10.88.7.0/32") {
		t.Fatalf("overlayAddr = %v", got)
	}
}

// A peer whose device could not be made leaves its WireGuard peers out
// (not routable), keeping its host-gw routes.
func TestWithoutWireGuard(t *testing.T) {
	d := podnet.Decision{
		Routes: []podnet.Route{
			{Dst: netip.MustParsePrefix("10.88.2.0/24"), Peer: "b", WireGuard: true},
			{Dst: netip.MustParsePrefix("10.88.3.0/24"), Via: netip.MustParseAddr("10.0.0.3"), Peer: "c"},
		},
		WireGuard: []podnet.WireGuardPeer{{Peer: "b"}},
		Skipped:   []podnet.Skipped{{Peer: "d", Reason: "far"}},
	}
	out := withoutWireGuard(d, errors.New("port in use"))
	if len(out.Routes) != 1 || out.Routes[0].Peer != "c" || len(out.WireGuard) != 0 || len(out.Skipped) != 2 || out.Skipped[1].Peer != "b" {
		t.Fatalf("withoutWireGuard = %+v", out)
	}
	m := *routedPeers([]podnet.Peer{{Name: "b"}, {Name: "c"}, {Name: "d"}}, out.Skipped)
	if m["b"] || !m["c"] || m["d"] {
		t.Fatalf("routable: %v", m)
	}
}
