package subnet

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"

	"go.uber.org/goleak"
	"pgregory.net/rapid"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPoolLayout(t *testing.T) {
	seen := map[netip.Prefix]bool{}
	for i := range PoolSize {
		p := PodSubnet(i)
		if j, ok := Index(p); !ok || j != i {
			t.Fatalf("Index(PodSubnet(%d)=%s) = %d, %v", i, p, j, ok)
		}
		s := ServiceNet(p)
		if _, ok := Index(s); ok {
			t.Fatalf("service net %s of %s is a pod subnet", s, p)
		}
		if seen[p] || seen[s] {
			t.Fatalf("%s or %s given twice", p, s)
		}
		seen[p], seen[s] = true, true
	}
	// Before claims: 10.88.<octet>.0/24 and 10.89.<octet>.0/24.
	if got := PodSubnet(Preferred(netip.MustParseAddr("127.0.0.12"), 0)); got.String() != "10.88.12.0/24" {
		t.Errorf("first candidate of 127.0.0.12 = %s", got)
	}
	if got := ServiceNet(netip.MustParsePrefix("10.88.12.0/24")); got.String() != "10.89.12.0/24" {
		t.Errorf("service net of 10.88.12.0/24 = %s", got)
	}
	if got := ServiceNet(netip.MustParsePrefix("192.168.7.0/24")); got.String() != "10.89.7.0/24" {
		t.Errorf("service net of 192.168.7.0/24 = %s", got)
	}
	if _, ok := Index(netip.MustParsePrefix("10.120.0.0/24")); ok {
		t.Error("10.120.0.0/24 is past the pool")
	}
}

func TestDecideExamples(t *testing.T) {
	p := netip.MustParsePrefix
	a := Claim{Peer: "a", Subnet: p("10.88.5.0/24"), Since: Since{Wall: 10}}
	// A newcomer with the same last octet gets another subnet.
	d, err := Decide(Request{Self: "b", Preferred: 5, Claims: []Claim{a}, Now: Since{Wall: 20}})
	if err != nil || d.Claim.Subnet == a.Subnet {
		t.Fatalf("b got %v, %v", d.Claim.Subnet, err)
	}
	// A restarted peer keeps its own subnet, even if its octet changed.
	d, err = Decide(Request{Self: "a", Preferred: 9, Own: a, Claims: []Claim{a}, Now: Since{Wall: 30}})
	if err != nil || d.Claim != a || d.Reason != "" {
		t.Fatalf("a got %+v, %v", d, err)
	}
	// Concurrent claims: the earlier keeps it, the later moves and says why.
	b := Claim{Peer: "b", Subnet: a.Subnet, Since: Since{Wall: 11}}
	d, _ = Decide(Request{Self: "b", Preferred: 5, Own: b, Claims: []Claim{a}, Now: Since{Wall: 40}})
	if d.Claim.Subnet == a.Subnet || d.Reason == "" || d.Claim.Since != (Since{Wall: 40}) {
		t.Fatalf("b, loser, got %+v", d)
	}
	d, _ = Decide(Request{Self: "a", Preferred: 5, Own: a, Claims: []Claim{b}, Now: Since{Wall: 40}})
	if d.Claim != a {
		t.Fatalf("a, winner, got %+v", d)
	}
	// An explicit subnet beats an automatic claim; two explicit ones clash.
	x := Claim{Peer: "x", Subnet: p("10.88.0.0/16"), Explicit: true, Since: Since{Wall: 50}}
	d, _ = Decide(Request{Self: "a", Preferred: 5, Own: a, Claims: []Claim{x}, Now: Since{Wall: 60}})
	if d.Claim.Subnet.Overlaps(x.Subnet) || d.Reason == "" {
		t.Fatalf("a against explicit x got %+v", d)
	}
	d, _ = Decide(Request{Self: "y", Explicit: p("10.88.9.0/24"), Claims: []Claim{x, a}, Now: Since{Wall: 60}})
	if d.Claim.Subnet != p("10.88.9.0/24") || !d.Claim.Explicit || !slices.Equal(d.Clashes, []string{"x"}) {
		t.Fatalf("explicit y got %+v", d)
	}
	// A network the machine has already is avoided by a new claim, not
	// taken from a peer that holds it.
	d, _ = Decide(Request{Self: "c", Preferred: 5, InUse: []netip.Prefix{p("10.88.5.1/24")}, Now: Since{Wall: 70}})
	if d.Claim.Subnet == a.Subnet {
		t.Fatalf("c took %s, in use on the machine", d.Claim.Subnet)
	}
	d, _ = Decide(Request{Self: "c", Preferred: 5, InUse: []netip.Prefix{p("10.89.5.1/32")}, Now: Since{Wall: 70}})
	if d.Claim.Subnet == a.Subnet {
		t.Fatalf("c took %s, whose service network is in use on the machine", d.Claim.Subnet)
	}
	d, _ = Decide(Request{Self: "a", Preferred: 5, Own: a, InUse: []netip.Prefix{p("10.88.5.1/24")}, Now: Since{Wall: 70}})
	if d.Claim != a {
		t.Fatalf("a gave up its own subnet for a network in use: %+v", d)
	}
	// Full pool.
	if _, err := Decide(Request{Self: "z", Claims: []Claim{a, {Peer: "q", Subnet: p("10.88.0.0/24")}}, PoolSize: 1}); err == nil {
		t.Fatal("full pool: no error")
	}
}

// TestSettles simulates peers that decide concurrently from snapshots of
// each other's claims, many of them preferring the same subnet (the same
// last octet), some coming back with a claim they recorded: once no peer
// changes its claim, no two hold overlapping subnets; a peer whose own
// claim no earlier claim overlapped kept it; and Decide does not depend on
// the order of the claims.
func TestSettles(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 12).Draw(t, "peers")
		pool := rapid.IntRange(n, n+4).Draw(t, "pool")
		claims := make([]Claim, n)
		pref := make([]int, n)
		for i := range n {
			pref[i] = rapid.IntRange(0, 3).Draw(t, fmt.Sprintf("pref%d", i))
			claims[i].Peer = fmt.Sprintf("p%02d", i)
			if rapid.Bool().Draw(t, fmt.Sprintf("recorded%d", i)) {
				claims[i].Subnet = PodSubnet(rapid.IntRange(0, pool-1).Draw(t, fmt.Sprintf("rec%d", i)))
				claims[i].Since = Since{Wall: int64(rapid.IntRange(0, 3).Draw(t, fmt.Sprintf("since%d", i)))}
			}
		}
		initial := slices.Clone(claims)
		for round := 1; ; round++ {
			if round > 4*n+4 {
				t.Fatalf("not settled after %d rounds: %v", round, claims)
			}
			snapshot := slices.Clone(claims)
			// Some peers decide this round, from the same snapshot; all do
			// from the fifth round on.
			changed := false
			for i := range n {
				if round < 5 && !rapid.Bool().Draw(t, fmt.Sprintf("r%d-%d", round, i)) {
					continue
				}
				req := Request{Self: claims[i].Peer, Preferred: pref[i], Own: snapshot[i], Claims: snapshot,
					Now: Since{Wall: int64(10 + round)}, PoolSize: pool}
				d, err := Decide(req)
				if err != nil {
					t.Fatalf("round %d, %s: %v", round, claims[i].Peer, err)
				}
				// Determinism: the order of the claims changes nothing.
				rev := slices.Clone(req.Claims)
				slices.Reverse(rev)
				req.Claims = rev
				if d2, _ := Decide(req); d2.Claim != d.Claim || d2.Reason != d.Reason {
					t.Fatalf("order of claims changed the decision: %+v, %+v", d, d2)
				}
				if d.Claim != claims[i] {
					claims[i] = d.Claim
					changed = true
				}
			}
			if !changed && round >= 5 {
				break
			}
		}
		for i := range n {
			for j := i + 1; j < n; j++ {
				if claims[i].Subnet.Overlaps(claims[j].Subnet) {
					t.Fatalf("%s and %s both hold %s", claims[i].Peer, claims[j].Peer, claims[i].Subnet)
				}
			}
		}
		for i, c := range initial {
			if !c.Valid() {
				continue
			}
			beaten := slices.ContainsFunc(initial, func(o Claim) bool {
				return o.Peer != c.Peer && o.Valid() && o.Subnet.Overlaps(c.Subnet) && o.Beats(c)
			})
			if !beaten && claims[i] != c {
				t.Fatalf("%s lost its own %s to nobody: now %s", c.Peer, c.Subnet, claims[i].Subnet)
			}
		}
	})
}

func TestCandidatesVisitEveryIndexOnce(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		pool := rapid.IntRange(1, 600).Draw(t, "pool")
		pref := rapid.IntRange(-1, pool).Draw(t, "preferred")
		seen := map[int]bool{}
		first := true
		for i := range Candidates(rapid.String().Draw(t, "peer"), pref, pool) {
			if first && pref >= 0 && pref < pool && i != pref {
				t.Fatalf("first candidate %d, want %d", i, pref)
			}
			first = false
			if seen[i] || i < 0 || i >= pool {
				t.Fatalf("candidate %d twice or out of the pool", i)
			}
			seen[i] = true
		}
		if len(seen) != pool {
			t.Fatalf("%d candidates of %d", len(seen), pool)
		}
	})
}
