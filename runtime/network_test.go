package runtime

import (
	"context"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chorus-sh/chorus/api"
)

func TestParseIPAddrJSON(t *testing.T) {
	out := `[{"ifindex":9,"ifname":"chorus1","addr_info":[{"family":"inet","local":"10.88.5.1","prefixlen":24},` +
		`{"family":"inet","local":"10.77.0.1","prefixlen":16}]},{"addr_info":[{}]}]`
	got, err := ParseIPAddrJSON([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.88.5.1/24"), netip.MustParsePrefix("10.77.0.1/16")}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v", got)
	}
	for _, bad := range []string{`{`, `[{"addr_info":[{"local":"x","prefixlen":1}]}]`, `[{"addr_info":[{"local":"10.0.0.1","prefixlen":33}]}]`} {
		if _, err := ParseIPAddrJSON([]byte(bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestBridgeRepair(t *testing.T) {
	p := netip.MustParsePrefix
	gw := p("10.88.5.1/24")
	for _, c := range []struct {
		have []netip.Prefix
		del  []netip.Prefix
		add  bool
	}{
		{nil, nil, true},
		{[]netip.Prefix{gw}, nil, false},
		{[]netip.Prefix{p("10.88.9.1/24")}, []netip.Prefix{p("10.88.9.1/24")}, true},
		{[]netip.Prefix{p("10.88.5.1/16"), gw, p("fe80::1/64")}, []netip.Prefix{p("10.88.5.1/16")}, false},
	} {
		del, add := BridgeRepair(c.have, gw)
		if !slices.Equal(del, c.del) || add != c.add {
			t.Errorf("BridgeRepair(%v) = %v, %v; want %v, %v", c.have, del, add, c.del, c.add)
		}
	}
}

func FuzzParseIPAddrJSON(f *testing.F) {
	f.Add([]byte(`[{"addr_info":[{"family":"inet","local":"10.88.5.1","prefixlen":24}]}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"addr_info":[{"local":"::1","prefixlen":128}]}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ps, err := ParseIPAddrJSON(b)
		if err != nil {
			return
		}
		for _, p := range ps {
			if !p.IsValid() {
				t.Fatalf("invalid prefix %v from %q", p, b)
			}
		}
		del, _ := BridgeRepair(ps, netip.MustParsePrefix("10.88.5.1/24"))
		if len(del) > len(ps) {
			t.Fatal("more to delete than there is")
		}
	})
}

// subnetRuntime hands out addresses in the subnet it is set to.
type subnetRuntime struct {
	*fakeRuntime
	subnet atomic.Pointer[netip.Prefix]
	n      atomic.Int32
}

func (s *subnetRuntime) SetupNetwork(context.Context, string) (PodNetwork, error) {
	a := s.subnet.Load().Addr().As4()
	a[3] = byte(2 + s.n.Add(1))
	return PodNetwork{NetNSPath: "/fake", IP: netip.AddrFrom4(a).String()}, nil
}

// Pods attached before the subnet changed are replaced, and come back
// with an address in the new one.
func TestReplaceOutside(t *testing.T) {
	rt := &subnetRuntime{fakeRuntime: newFakeRuntime(func(string) (int32, time.Duration, bool) { return 0, 0, false })}
	old, cur := netip.MustParsePrefix("10.88.5.0/24"), netip.MustParsePrefix("10.88.77.0/24")
	rt.subnet.Store(&old)
	m := startManager(t, rt, Options{})
	pod := func(n string) api.Pod {
		return api.Pod{Metadata: api.ObjectMeta{Name: n, Namespace: "default"},
			Spec: api.PodSpec{Containers: []api.Container{{Name: "app", Image: "i:1"}}}}
	}
	want := []api.Pod{pod("a"), pod("b")}
	m.Sync(want)
	inSubnet := func(p netip.Prefix) bool {
		ps := m.Pods()
		if len(ps) != 2 {
			return false
		}
		for _, x := range ps {
			ip, err := netip.ParseAddr(x.Status.PodIP)
			if err != nil || !p.Contains(ip) || x.Status.Phase != api.PodRunning {
				return false
			}
		}
		return true
	}
	waitUntil(t, "pods run in "+old.String(), func() bool { return inSubnet(old) })
	if got := m.ReplaceOutside(old); len(got) != 0 {
		t.Fatalf("replaced %v, all in the subnet", got)
	}
	rt.subnet.Store(&cur)
	if got := m.ReplaceOutside(cur); !slices.Equal(got, []string{"default/a", "default/b"}) {
		t.Fatalf("replaced %v", got)
	}
	waitUntil(t, "pods run again in "+cur.String(), func() bool {
		m.Sync(want)
		return inSubnet(cur)
	})
}
