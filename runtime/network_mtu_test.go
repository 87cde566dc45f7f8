package runtime

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
)

// The pods' MTU reaches the bridge plugin only when set: an encrypted pod
// network sets the overlay's, otherwise the plugin keeps its default.
func TestCNIConfListMTU(t *testing.T) {
	pfx := netip.MustParsePrefix("10.88.3.0/24")
	for _, c := range []struct {
		mtu  int
		want string
	}{{0, ""}, {1420, `"mtu":1420`}} {
		b, err := json.Marshal(cniConfList(NetworkConfig{Name: "n", Bridge: "br", MTU: c.mtu}, pfx, "/ipam"))
		if err != nil {
			t.Fatal(err)
		}
		if has := strings.Contains(string(b), `"mtu"`); has != (c.want != "") || c.want != "" && !strings.Contains(string(b), c.want) {
			t.Errorf("MTU %d: %s", c.mtu, b)
		}
		if !strings.Contains(string(b), `"subnet":"10.88.3.0/24"`) || !strings.Contains(string(b), `"bridge":"br"`) {
			t.Errorf("configuration: %s", b)
		}
	}
}
