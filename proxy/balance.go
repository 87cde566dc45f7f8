package proxy

import (
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// pool is the endpoint set of one service port. Its backends are swapped
// atomically by Update; a backend whose endpoint stays keeps its
// connection count across updates, and a removed backend lives on (and is
// counted down) as long as connections use it.
type pool struct {
	key      poolKey
	backends atomic.Pointer[[]*backend]
	rr       atomic.Uint64 // rotates the scan start: ties go round-robin
	aff      atomic.Pointer[affinity]
}

// maxAffinityClients bounds the clients a pool remembers for session
// affinity; beyond, a new client is balanced as without affinity until
// entries expire.
const maxAffinityClients = 65536

// affinity is ClientIP session affinity: each client address is sent to
// the endpoint it last used, for timeout after its last connection (as
// kube-proxy's iptables "recent" match does).
type affinity struct {
	timeout time.Duration
	mu      sync.Mutex
	m       map[netip.Addr]affinityEntry
	sweepAt time.Time
}

type affinityEntry struct {
	ep    Endpoint
	until time.Time
}

// lookup returns the endpoint client is bound to, if the binding holds.
func (a *affinity) lookup(client netip.Addr, now time.Time) (Endpoint, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.m[client]
	if !ok || now.After(e.until) {
		return Endpoint{}, false
	}
	return e.ep, true
}

// bind records that client uses ep from now on, for timeout.
func (a *affinity) bind(client netip.Addr, ep Endpoint, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if now.After(a.sweepAt) {
		for k, e := range a.m {
			if now.After(e.until) {
				delete(a.m, k)
			}
		}
		a.sweepAt = now.Add(min(a.timeout, 10*time.Second))
	}
	if _, ok := a.m[client]; !ok && len(a.m) >= maxAffinityClients {
		return
	}
	a.m[client] = affinityEntry{ep: ep, until: now.Add(a.timeout)}
}

// setAffinity turns ClientIP affinity on with timeout (keeping the
// bindings when the timeout does not change), or off with 0.
func (pl *pool) setAffinity(timeout time.Duration) {
	cur := pl.aff.Load()
	switch {
	case timeout <= 0:
		pl.aff.Store(nil)
	case cur == nil || cur.timeout != timeout:
		pl.aff.Store(&affinity{timeout: timeout, m: map[netip.Addr]affinityEntry{}})
	}
}

// pickFor is pick for a client: with affinity, the client's endpoint while
// it is in the pool, untried and not cooling down after a failed dial.
func (pl *pool) pickFor(client netip.Addr, tried []*backend, now time.Time) *backend {
	if a := pl.aff.Load(); a != nil && client.IsValid() {
		if ep, ok := a.lookup(client, now); ok {
			cutoff := now.Add(-coolDown).UnixNano()
			for _, b := range *pl.backends.Load() {
				if b.ep == ep && !contains(tried, b) && b.failedAt.Load() <= cutoff {
					b.active.Add(1)
					return b
				}
			}
		}
	}
	return pl.pick(tried, now)
}

// chosen records, with affinity, that client was served by b.
func (pl *pool) chosen(client netip.Addr, b *backend, now time.Time) {
	if a := pl.aff.Load(); a != nil && client.IsValid() {
		a.bind(client, b.ep, now)
	}
}

// backend is one endpoint with its load as seen from this peer.
type backend struct {
	ep       Endpoint
	active   atomic.Int64 // connections (and dials) in flight
	failedAt atomic.Int64 // unix nanoseconds of the last failed dial; 0 = none
}

func (b *backend) release() { b.active.Add(-1) }

func newPool(key poolKey) *pool {
	pl := &pool{key: key}
	pl.backends.Store(&[]*backend{})
	return pl
}

func (pl *pool) empty() bool { return len(*pl.backends.Load()) == 0 }

// setEndpoints swaps in eps (duplicates dropped). It allocates nothing when
// eps is the current list in the same order.
func (pl *pool) setEndpoints(eps []Endpoint) {
	cur := *pl.backends.Load()
	if len(cur) == len(eps) {
		same := true
		for i := range eps {
			if cur[i].ep != eps[i] {
				same = false
				break
			}
		}
		if same {
			return
		}
	}
	old := make(map[Endpoint]*backend, len(cur))
	for _, b := range cur {
		old[b.ep] = b
	}
	next := make([]*backend, 0, len(eps))
	seen := make(map[Endpoint]bool, len(eps))
	for _, ep := range eps {
		if seen[ep] {
			continue
		}
		seen[ep] = true
		b := old[ep]
		if b == nil {
			b = &backend{ep: ep}
		}
		next = append(next, b)
	}
	pl.backends.Store(&next)
}

// pick chooses the endpoint with the fewest connections in flight among
// those not in tried, preferring endpoints whose last dial did not fail
// within coolDown. Ties go to the first in a scan whose start rotates at
// every pick, which is round-robin when loads are equal. The chosen
// backend is acquired (its count incremented); nil means none is left.
//
// Two concurrent picks can choose the same backend: the load is a hint,
// not a reservation, and it corrects itself at the next pick.
func (pl *pool) pick(tried []*backend, now time.Time) *backend {
	bs := *pl.backends.Load()
	n := len(bs)
	if n == 0 {
		return nil
	}
	start := int(pl.rr.Add(1) % uint64(n))
	cutoff := now.Add(-coolDown).UnixNano()
	var best *backend
	bestLoad, bestCool := int64(math.MaxInt64), true
	for i := range n {
		b := bs[(start+i)%n]
		if contains(tried, b) {
			continue
		}
		cool := b.failedAt.Load() > cutoff
		load := b.active.Load()
		if best == nil || (bestCool && !cool) || (cool == bestCool && load < bestLoad) {
			best, bestLoad, bestCool = b, load, cool
		}
	}
	if best != nil {
		best.active.Add(1)
	}
	return best
}

func contains(bs []*backend, b *backend) bool {
	for _, x := range bs {
		if x == b {
			return true
		}
	}
	return false
}
