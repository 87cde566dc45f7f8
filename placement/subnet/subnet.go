// Package subnet decides which pod subnet each peer uses. There is no
// allocator: every peer claims a subnet in the replicated state (a claim
// only it writes), and [Decide] is a pure function of that peer's own
// claim, the claims of the others and its candidates, so every peer that
// sees the same claims reaches the same verdict on who keeps a contested
// subnet.
//
// # Pool
//
// The pool holds [PoolSize] /24 subnets, index i in [0, PoolSize): block
// b = i/256 and c = i%256 give the pod subnet 10.(88+2b).c.0/24 and the
// peer's service network 10.(89+2b).c.0/24, so that index c < 256 is
// exactly the 10.88.c.0/24 (and 10.89.c.0/24) of chorus before claims.
// 4,096 subnets cover the few thousand peers chorus aims at with room for
// peers that died and may come back (they keep their claim); the pool spans
// 10.88.0.0 to 10.119.255.255, pod and service blocks interleaved, so no
// service address ever shadows another peer's pod subnet.
//
// # Claims and who wins
//
// A claim is (peer, subnet, explicit, since): since is the hybrid logical
// clock stamp at which the peer first claimed that subnet, kept across
// restarts. Of two claims whose subnets overlap, an explicit one
// (--pod-subnet) beats an automatic one; otherwise the earlier since wins,
// then the smaller peer name. A new claim is stamped after the peer has
// synced its state, so it is later than every claim it saw: an
// established peer never loses its subnet to a newcomer.
package subnet

import (
	"cmp"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"slices"
)

// PoolSize is how many /24 subnets the pool holds.
const PoolSize = 4096

// Since orders claims: a hybrid logical clock stamp.
type Since struct {
	Wall    int64  `json:"wall"`
	Logical uint32 `json:"logical"`
}

func (s Since) compare(o Since) int {
	if c := cmp.Compare(s.Wall, o.Wall); c != 0 {
		return c
	}
	return cmp.Compare(s.Logical, o.Logical)
}

// Claim is a peer's claim on a pod subnet.
type Claim struct {
	Peer     string
	Subnet   netip.Prefix
	Explicit bool // set by the operator (--pod-subnet)
	Since    Since
}

// Valid reports whether c claims a usable subnet: an IPv4 prefix of /28
// or larger.
func (c Claim) Valid() bool { return Usable(c.Subnet) }

// Usable reports whether p can be a pod subnet: IPv4, /28 or larger, masked.
func Usable(p netip.Prefix) bool {
	return p.IsValid() && p.Addr().Is4() && p.Bits() >= 8 && p.Bits() <= 28 && p == p.Masked()
}

// Beats reports whether claim a wins over claim b when their subnets
// overlap: explicit over automatic, then the earlier since, then the
// smaller peer name.
func (a Claim) Beats(b Claim) bool {
	if a.Explicit != b.Explicit {
		return a.Explicit
	}
	if c := a.Since.compare(b.Since); c != 0 {
		return c < 0
	}
	return a.Peer < b.Peer
}

// Pool returns prefixes that together cover every address of the pool,
// pod subnets and service networks (10.88.0.0 to 10.119.255.255).
func Pool() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("10.88.0.0/13"),
		netip.MustParsePrefix("10.96.0.0/12"),
		netip.MustParsePrefix("10.112.0.0/13"),
	}
}

// PodSubnet returns the pod subnet of pool index i.
func PodSubnet(i int) netip.Prefix {
	b, c := i/256, i%256
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(88 + 2*b), byte(c), 0}), 24)
}

// Index returns the pool index of p, if p is a subnet of the pool.
func Index(p netip.Prefix) (int, bool) {
	if !p.IsValid() || !p.Addr().Is4() || p.Bits() != 24 || p != p.Masked() {
		return 0, false
	}
	a := p.Addr().As4()
	if a[0] != 10 || a[1] < 88 || a[1]%2 != 0 {
		return 0, false
	}
	b := int(a[1]-88) / 2
	if b >= PoolSize/256 {
		return 0, false
	}
	return b*256 + int(a[2]), true
}

// ServiceNet returns the service network that goes with pod subnet p: the
// odd block next to it for a subnet of the pool (10.89.c.0/24 for
// 10.88.c.0/24), and 10.89.<third octet of p>.0/24 for any other subnet
// (what chorus did before claims; such a peer was placed by hand).
func ServiceNet(p netip.Prefix) netip.Prefix {
	a := p.Addr().As4()
	if i, ok := Index(p); ok {
		b, c := i/256, i%256
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(89 + 2*b), byte(c), 0}), 24)
	}
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 89, a[2], 0}), 24)
}

// Preferred is a peer's first candidate: the last octet of its address
// (10.88.<last octet>.0/24, as before claims), or, with no IPv4 address to
// go by, 20 to 219 from a hash of its name. sum3 is that hash byte.
func Preferred(bind netip.Addr, sum3 byte) int {
	if bind.Is4() && !bind.IsUnspecified() {
		return int(bind.As4()[3])
	}
	return int(sum3)%200 + 20
}

// Candidates returns the order in which peer tries the pool: preferred
// first, then every index from a hash of the peer's name onward, so that
// peers that lost the same subnet try different ones next.
func Candidates(peer string, preferred, poolSize int) func(yield func(int) bool) {
	return func(yield func(int) bool) {
		if preferred >= 0 && preferred < poolSize && !yield(preferred) {
			return
		}
		h := fnv.New32a()
		h.Write([]byte(peer))
		start := int(h.Sum32() % uint32(poolSize))
		for k := range poolSize {
			i := (start + k) % poolSize
			if i == preferred {
				continue
			}
			if !yield(i) {
				return
			}
		}
	}
}

// Request is what a peer knows when it decides its subnet.
type Request struct {
	Self      string
	Preferred int          // first candidate (see Preferred)
	Explicit  netip.Prefix // --pod-subnet; invalid when not given
	// Own is this peer's current claim: from the record in its data dir,
	// or else from the replicated state. Zero: none.
	Own Claim
	// Claims are the other peers' claims (this peer's own are ignored).
	Claims []Claim
	// InUse are networks this machine already has (addresses of its
	// interfaces: other peers' bridges and service addresses, a VPN, the
	// LAN): a new claim avoids a subnet whose pod or service network
	// overlaps them; a claim held already is not given up for them.
	InUse []netip.Prefix
	// Now stamps a new claim; it must be later than every claim seen.
	Now      Since
	PoolSize int // 0: PoolSize
}

// Decision is the subnet a peer uses and claims.
type Decision struct {
	Claim Claim
	// Reason says why Claim is not Own ("" when it is).
	Reason string
	// Clashes lists the peers whose explicit claims overlap an explicit
	// subnet of this peer: both keep them, and the operator has to choose.
	Clashes []string
}

// ErrPoolExhausted is returned when every subnet of the pool is claimed.
var ErrPoolExhausted = errors.New("every pod subnet of the pool is claimed")

// Decide chooses this peer's subnet:
//  1. an explicit subnet is used as given (and claimed);
//  2. else the peer keeps its own claim unless an overlapping claim of
//     another peer beats it;
//  3. else it takes the first candidate that overlaps no other peer's
//     claim and no network in use on the machine, stamped Now.
func Decide(r Request) (Decision, error) {
	pool := r.PoolSize
	if pool <= 0 || pool > PoolSize {
		pool = PoolSize
	}
	others := make([]Claim, 0, len(r.Claims))
	for _, c := range r.Claims {
		if c.Peer != r.Self && c.Valid() {
			others = append(others, c)
		}
	}
	// Sorted so that reasons and clashes do not depend on input order.
	slices.SortFunc(others, func(a, b Claim) int {
		if a.Peer != b.Peer {
			return cmp.Compare(a.Peer, b.Peer)
		}
		return cmp.Compare(a.Subnet.String(), b.Subnet.String())
	})
	own := r.Own
	own.Peer = r.Self
	if r.Explicit.IsValid() {
		c := Claim{Peer: r.Self, Subnet: r.Explicit.Masked(), Explicit: true, Since: r.Now}
		if own.Valid() && own.Explicit && own.Subnet == c.Subnet {
			c.Since = own.Since
		}
		d := Decision{Claim: c}
		for _, o := range others {
			if o.Explicit && o.Subnet.Overlaps(c.Subnet) && !slices.Contains(d.Clashes, o.Peer) {
				d.Clashes = append(d.Clashes, o.Peer)
			}
		}
		if own.Valid() && (own.Subnet != c.Subnet || !own.Explicit) {
			d.Reason = fmt.Sprintf("--pod-subnet %s given (was %s)", c.Subnet, own.Subnet)
		}
		return d, nil
	}
	reason := ""
	if own.Valid() {
		own.Explicit = false // no longer given: kept as any other claim
		var winner *Claim
		for i, o := range others {
			if o.Subnet.Overlaps(own.Subnet) && o.Beats(own) {
				winner = &others[i]
				break
			}
		}
		if winner == nil {
			return Decision{Claim: own}, nil
		}
		how := "claimed earlier"
		if winner.Explicit {
			how = "given by --pod-subnet"
		} else if winner.Since == own.Since {
			how = "claimed at the same time, and its name sorts first"
		}
		reason = fmt.Sprintf("%s is also claimed by peer %s (%s)", own.Subnet, winner.Peer, how)
	}
	for i := range Candidates(r.Self, r.Preferred, pool) {
		p := PodSubnet(i)
		if slices.ContainsFunc(others, func(o Claim) bool { return o.Subnet.Overlaps(p) }) ||
			slices.ContainsFunc(r.InUse, func(u netip.Prefix) bool { return u.IsValid() && (u.Overlaps(p) || u.Overlaps(ServiceNet(p))) }) {
			continue
		}
		return Decision{Claim: Claim{Peer: r.Self, Subnet: p, Since: r.Now}, Reason: reason}, nil
	}
	return Decision{}, fmt.Errorf("%w (%d subnets; peers that left for good keep theirs)", ErrPoolExhausted, pool)
}
